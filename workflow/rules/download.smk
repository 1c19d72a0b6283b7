# Events, stations and per-station waveform windows (FDSN, local archive or the embedded example data).


rule download_events:
    output:
        xml=raw("events.xml"),
    params:
        settings=settings_json("data", "earth_model"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    log:
        results("logs", "download_events.log"),
    shell:
        "xdisc download events --settings {params.settings:q} --out {output.xml} 2> {log}"


checkpoint select_stations:
    output:
        xml=raw("stations.xml"),
        csv=raw("stations.csv"),
        providers=raw("providers.csv"),
    params:
        settings=settings_json("data", "earth_model"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    log:
        results("logs", "select_stations.log"),
    shell:
        "xdisc download stations --settings {params.settings:q} --out {output.xml} --out-csv {output.csv}"
        " --out-providers {output.providers} 2> {log}"


rule download_waveforms:
    input:
        events=rules.download_events.output.xml,
        stations=rules.select_stations.output.csv,
    output:
        manifest=raw("waveforms", "{network}.{station}.csv"),
    params:
        settings=settings_json("data", "earth_model"),
        folder=lambda wc: raw("waveforms", f"{wc.network}.{wc.station}"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    log:
        results("logs", "download_waveforms", "{network}.{station}.log"),
    shell:
        "xdisc download waveforms --settings {params.settings:q} --station {wildcards.network}.{wildcards.station}"
        " --events {input.events} --stations {input.stations} --out-dir {params.folder}"
        " --manifest {output.manifest} 2> {log}"
