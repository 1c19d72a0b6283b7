# Synthetic receiver functions (AK135, IASP91, PREM, with and without X): the pretraining set
# and a separately seeded, never-trained-on test set.


rule simulate_synthetics:
    input:
        settings=settings("synthetics_{split}"),
    output:
        nc=results("synthetic", "{split}.nc"),
    log:
        log_file("simulate_synthetics", "split"),
    benchmark:
        benchmark_file("simulate_synthetics", "split")
    conda:
        XDISC_ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "xdisc synth --settings-file {input.settings} --jobs {threads} --out {output.nc} 2> {log}"


rule plot_synthetic_examples:
    input:
        nc=expand(rules.simulate_synthetics.output.nc, split="pretrain"),
    output:
        png=report(
            results("figures", "synthetic_examples.png"),
            caption="../report/synthetic_examples.rst",
            category="Synthetics",
        ),
    log:
        log_file("plot_synthetic_examples"),
    benchmark:
        benchmark_file("plot_synthetic_examples")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "xdisc plot synthetic-examples {input.nc} --out {output.png} 2> {log}"
