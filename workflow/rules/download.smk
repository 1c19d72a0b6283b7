# Events, stations and per-station waveform windows (FDSN, local archive or the embedded example data).
# The waveforms are downloaded per batch of data.batch_stations stations (one job, one table
# data/raw/waveforms/batches/{batch}.csv written once every station of the batch has finished). Each
# station keeps its manifest data/raw/waveforms/{network}.{station}.csv and its windows in the folder
# beside it; neither is a declared output: an interrupted batch resumes from them.


rule download_events:
    input:
        **DEMO_INPUT,
        settings=settings("download"),
    output:
        xml=raw("events.xml"),
    log:
        log_file("download_events"),
    benchmark:
        benchmark_file("download_events")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "xdisc download events --settings-file {input.settings} --out {output.xml} 2> {log}"


checkpoint select_stations:
    input:
        **DEMO_INPUT,
        settings=settings("download"),
    output:
        xml=raw("stations.xml"),
        csv=raw("stations.csv"),
        providers=raw("providers.csv"),
    log:
        log_file("select_stations"),
    benchmark:
        benchmark_file("select_stations")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "xdisc download stations --settings-file {input.settings} --out {output.xml} --out-csv {output.csv}"
        " --out-providers {output.providers} 2> {log}"


rule download_waveforms:
    input:
        **DEMO_INPUT,
        settings=settings("download"),
        events=rules.download_events.output.xml,
        stations=rules.select_stations.output.csv,
        # not read: a parameter that depends on the checkpoint needs its first output among the inputs
        # (Snakemake evaluates params in the job's own process on a cluster before the checkpoint is known)
        inventory=rules.select_stations.output.xml,
    output:
        table=raw("waveforms", "batches", "{batch}.csv"),
    log:
        log_file("download_waveforms", "batch"),
    benchmark:
        benchmark_file("download_waveforms", "batch")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        stations=download_batch_stations,
        manifests=manifest_folder,
    shell:
        "xdisc download waveforms --settings-file {input.settings} --station {params.stations}"
        " --events {input.events} --stations {input.stations} --manifest-dir {params.manifests}"
        " --out {output.table} 2> {log}"
