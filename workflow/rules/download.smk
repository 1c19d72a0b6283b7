# Events, stations and per-station waveform windows (FDSN, local archive or the embedded example data).
# The windows of a station go to the folder next to its manifest (data/raw/waveforms/{network}.{station}/),
# which the CLI derives from the manifest path; the folder is no output: a rerun resumes from it.


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
    output:
        manifest=raw("waveforms", "{network}.{station}.csv"),
    log:
        log_file("download_waveforms", "network", "station"),
    benchmark:
        benchmark_file("download_waveforms", "network", "station")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    shell:
        "xdisc download waveforms --settings-file {input.settings} --station {wildcards.network}.{wildcards.station}"
        " --events {input.events} --stations {input.stations} --manifest {output.manifest} 2> {log}"
