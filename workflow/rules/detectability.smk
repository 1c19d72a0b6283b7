# Per station: which X each method could have seen. The earth model's X conversions (once per run) are
# added to each station's receiver functions and judged by both methods as the pipeline judges them
# (xdisc detectability; detectability.batch_stations stations per job, each station's curves in
# results/detectability/{batch}/{network}.{station}.nc); compare_verdicts turns an 'absent' that X of
# detectability.target_dvs would not have changed into 'not detectable'.


rule compute_x_kernels:
    input:
        settings=settings("detectability_kernels"),
    output:
        nc=results("detectability", "kernels.nc"),
    log:
        log_file("compute_x_kernels"),
    benchmark:
        benchmark_file("compute_x_kernels")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "xdisc detectability kernels --settings-file {input.settings} --out {output.nc} 2> {log}"


rule assess_detectability:
    input:
        unpack(lambda wildcards: refined_networks()),
        settings=settings("detectability"),
        lineage=lineage("detectability"),
        rf=detectability_batch_rf,
        kernels=rules.compute_x_kernels.output.nc,
        model=rules.finetune_cnn.output.ckpt,
        calibration=rules.calibrate_stations.output.csv,
        test=rules.pretrain_cnn.input.test,
    output:
        folder=directory(results("detectability", "{batch}")),
    log:
        log_file("assess_detectability", "batch"),
    benchmark:
        benchmark_file("assess_detectability", "batch")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        refined=refined_arguments,
    shell:
        "xdisc detectability station --settings-file {input.settings} --rf {input.rf} --kernels {input.kernels}"
        " --model {input.model} --calibration {input.calibration} {params.refined} --test {input.test}"
        " --out {output.folder} 2> {log}"


rule collect_detectability:
    input:
        settings=settings("detectability_kernels"),
        lineage=lineage("detectability_table"),
        files=all_station_detectability,
    output:
        csv=results("verdicts", "detectability.csv"),
        figure=report(
            results("figures", "detectability.png"),
            caption="../report/detectability.rst",
            category="Verdicts",
        ),
    log:
        log_file("collect_detectability"),
    benchmark:
        benchmark_file("collect_detectability")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "xdisc detectability table {input.files} --settings-file {input.settings} --out {output.csv}"
        " --figure {output.figure} 2> {log}"
