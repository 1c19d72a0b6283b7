# Per station, one job: P receiver functions (rotation, deconvolution, QC), the conventional verdict
# (depth and slowness stacks with bootstrap bounds, figure), the CNN's input images (stacks per
# slowness bin) and the station's noise pool (transverse receiver functions: what the CNN adapts to),
# each written as its own file. One job, not three: Snakemake plans ~1 ms per job. Its input is the
# table of the station's download batch; the manifest is the station's own, written by that batch.


rule process_station:
    input:
        settings=settings("station"),
        download=station_download,
        events=rules.download_events.output.xml,
        stations=rules.select_stations.output.csv,
        inventory=rules.select_stations.output.xml,
    output:
        rf=results("rf", "{network}.{station}.nc"),
        stack=results("stack", "{network}.{station}.nc"),
        png=report(
            results("figures", "stack", "{network}.{station}.png"),
            caption="../report/stack.rst",
            category="Stacking",
        ),
        images=results("images", "{network}.{station}.nc"),
        noise=results("noise", "{network}.{station}.nc"),
    log:
        log_file("process_station", "network", "station"),
    benchmark:
        benchmark_file("process_station", "network", "station")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        manifest=raw("waveforms", "{network}.{station}.csv"),
    shell:
        "xdisc station --settings-file {input.settings} --station {wildcards.network}.{wildcards.station}"
        " --events {input.events} --stations {input.stations} --inventory {input.inventory}"
        " --manifest {params.manifest} --rf {output.rf} --stack {output.stack} --figure {output.png}"
        " --images {output.images} --noise {output.noise} 2> {log}"
