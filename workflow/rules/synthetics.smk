# Synthetic receiver functions for pretraining (AK135, IASP91, PREM, with and without X).


rule simulate_synthetics:
    output:
        nc=results("synthetic", "pretrain.nc"),
    params:
        settings=settings_json("synthetics", "receiver_function", "layering"),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        results("logs", "simulate_synthetics.log"),
    benchmark:
        results("benchmarks", "simulate_synthetics.tsv")
    shell:
        "xdisc synth --settings {params.settings:q} --jobs {threads} --out {output.nc} 2> {log}"
