# P receiver functions per station.


rule compute_receiver_functions:
    input:
        manifest=rules.download_waveforms.output.manifest,
        events=rules.download_events.output.xml,
        stations=rules.select_stations.output.csv,
        inventory=rules.select_stations.output.xml,
    output:
        nc=results("rf", "{network}.{station}.nc"),
    params:
        settings=settings_json("data", "earth_model", "receiver_function", "rf_processing"),
        folder=lambda wc: raw("waveforms", f"{wc.network}.{wc.station}"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        results("logs", "compute_receiver_functions", "{network}.{station}.log"),
    benchmark:
        results("benchmarks", "compute_receiver_functions", "{network}.{station}.tsv")
    shell:
        "xdisc rf --settings {params.settings:q} --station {wildcards.network}.{wildcards.station}"
        " --events {input.events} --stations {input.stations} --inventory {input.inventory}"
        " --manifest {input.manifest} --waveforms {params.folder} --out {output.nc} 2> {log}"
