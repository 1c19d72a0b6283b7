# Synthetic receiver functions (AK135, IASP91, PREM, with and without X): the pretraining set
# and a separately seeded, never-trained-on test set.


rule simulate_synthetics:
    output:
        nc=results("synthetic", "{split}.nc"),
    params:
        settings=synthetic_settings,
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        results("logs", "simulate_synthetics", "{split}.log"),
    benchmark:
        results("benchmarks", "simulate_synthetics", "{split}.tsv")
    shell:
        "xdisc synth --settings {params.settings:q} --jobs {threads} --out {output.nc} 2> {log}"


rule plot_synthetic_examples:
    input:
        nc=expand(rules.simulate_synthetics.output.nc, split="pretrain"),
    output:
        png=report(results("figures", "synthetic_examples.png"), caption="../report/synthetic_examples.rst",
                   category="Synthetics"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        results("logs", "plot_synthetic_examples.log"),
    shell:
        "xdisc plot synthetic-examples {input.nc} --out {output.png} 2> {log}"
