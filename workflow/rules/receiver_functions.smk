# P receiver functions per station.


rule compute_receiver_functions:
    input:
        settings=settings("receiver_functions"),
        manifest=rules.download_waveforms.output.manifest,
        events=rules.download_events.output.xml,
        stations=rules.select_stations.output.csv,
        inventory=rules.select_stations.output.xml,
    output:
        nc=results("rf", "{network}.{station}.nc"),
    log:
        log_file("compute_receiver_functions", "network", "station"),
    benchmark:
        benchmark_file("compute_receiver_functions", "network", "station")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "xdisc rf --settings-file {input.settings} --station {wildcards.network}.{wildcards.station}"
        " --events {input.events} --stations {input.stations} --inventory {input.inventory}"
        " --manifest {input.manifest} --out {output.nc} 2> {log}"
