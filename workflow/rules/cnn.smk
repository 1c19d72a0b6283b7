# CNN detector: pretraining on synthetics, adaptation to the run's stations (their own noise pools,
# written per station by rule process_station; no labels), fine-tuning on labelled real images,
# per-station thresholds from own-noise stations, predictions and their comparison with stacking.


rule pretrain_cnn:
    input:
        settings=settings("pretrain"),
        lineage=lineage("pretrain"),
        train=expand(rules.simulate_synthetics.output.nc, split="pretrain"),
        test=expand(rules.simulate_synthetics.output.nc, split="test"),
    output:
        ckpt=results("cnn", "pretrain.ckpt"),
        metrics=results("metrics", "pretrain.json"),
        figures=report(
            directory(results("figures", "cnn", "pretrain")),
            patterns=["{name}.png"],
            caption="../report/pretrain.rst",
            category="CNN",
        ),
    log:
        log_file("pretrain_cnn"),
    benchmark:
        benchmark_file("pretrain_cnn")
    conda:
        XDISC_ENV
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        # cnn.pretrained: 'shipped' copies the network that ships with xdisc and scores it on the test set
        stage="shipped" if config["cnn"]["pretrained"] == "shipped" else "pretrain",
    shell:
        "xdisc train {params.stage} --settings-file {input.settings} --synthetics {input.train} --test {input.test}"
        " --out {output.ckpt} --metrics {output.metrics} --figures {output.figures} --threads {threads}"
        " --workers auto 2> {log}"


rule adapt_cnn:
    input:
        settings=settings("adapt"),
        lineage=lineage("adapt"),
        pretrained=rules.pretrain_cnn.output.ckpt,
        train=rules.pretrain_cnn.input.train,
        test=rules.pretrain_cnn.input.test,
        noise=all_station_noise,
    output:
        ckpt=results("cnn", "adapted.ckpt"),
        metrics=results("metrics", "adapt.json"),
    log:
        log_file("adapt_cnn"),
    benchmark:
        benchmark_file("adapt_cnn")
    # one thread: the adaptation (about a minute) runs beside the calibration draws, which it does not
    # need, instead of after them; started first, as the longest single job of this stage
    priority: 1
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "xdisc adapt {input.noise} --settings-file {input.settings} --pretrained {input.pretrained}"
        " --synthetics {input.train} --test {input.test} --out {output.ckpt} --metrics {output.metrics}"
        " --threads {threads} 2> {log}"


rule finetune_cnn:
    input:
        settings=settings("finetune"),
        lineage=lineage("finetune"),
        pretrained=rules.adapt_cnn.output.ckpt,
        synthetics=rules.pretrain_cnn.input.train,
        images=all_station_images,
        labels=label_files(),
        # weak labels from confident stacking verdicts (cnn.finetune.weak_labels, off by default)
        stacking=(
            rules.collect_stacking_verdicts.output.csv if config["cnn"]["finetune"]["weak_labels"]["enabled"] else []
        ),
    output:
        ckpt=results("cnn", "finetune.ckpt"),
        metrics=results("metrics", "finetune.json"),
        summary=report(
            results("metrics", "finetune.html"),
            caption="../report/finetune.rst",
            category="CNN",
        ),
    log:
        log_file("finetune_cnn"),
    benchmark:
        benchmark_file("finetune_cnn")
    conda:
        XDISC_ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "xdisc train finetune --settings-file {input.settings} --pretrained {input.pretrained}"
        " --synthetics {input.synthetics} --images {input.images} --labels {input.labels} --stacking {input.stacking}"
        " --out {output.ckpt} --metrics {output.metrics} --summary {output.summary} --threads {threads} 2> {log};"
        # the warnings (labels matching no station, nothing fine-tuned) also on the terminal, not only in the log
        " sed -n 's/^.* WARNING xdisc.cnn.train: finetune: /WARNING (finetune_cnn): /p' {log} >&2"


rule draw_calibration:
    input:
        settings=settings("calibration_draws"),
        lineage=lineage("calibration_draws"),
        test=rules.pretrain_cnn.input.test,
        noise=calibration_batch_noise,
    output:
        folder=directory(results("calibration", "{batch}")),
    log:
        log_file("draw_calibration", "batch"),
    benchmark:
        benchmark_file("draw_calibration", "batch")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "xdisc calibration-draws {input.noise} --settings-file {input.settings} --test {input.test}"
        " --out {output.folder} 2> {log}"


# cnn.refine (off by default): X and training draws per batch of stations, deconvolved as each station's
# data; one network per fold of stations, fine-tuned on the other folds' draws
rule draw_refinement:
    input:
        settings=settings("refine_draws"),
        lineage=lineage("refine_draws"),
        test=rules.pretrain_cnn.input.test,
        synthetics=rules.pretrain_cnn.input.train,
        noise=calibration_batch_noise,
    output:
        folder=directory(results("refine", "draws", "{batch}")),
    log:
        log_file("draw_refinement", "batch"),
    benchmark:
        benchmark_file("draw_refinement", "batch")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    shell:
        "xdisc refine-draws {input.noise} --settings-file {input.settings} --test {input.test}"
        " --synthetics {input.synthetics} --out {output.folder} 2> {log}"


rule refine_cnn:
    input:
        settings=settings("refine"),
        lineage=lineage("refine"),
        model=rules.finetune_cnn.output.ckpt,
        draws=all_calibration_draws,
        refine_draws=all_refine_draws,
    output:
        folder=directory(results("cnn", "refined")),
        metrics=results("metrics", "refine.json"),
    log:
        log_file("refine_cnn"),
    benchmark:
        benchmark_file("refine_cnn")
    conda:
        XDISC_ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "xdisc refine --settings-file {input.settings} --model {input.model} --draws {input.draws}"
        " --refine-draws {input.refine_draws} --out {output.folder} --metrics {output.metrics}"
        " --threads {threads} 2> {log}"


rule calibrate_stations:
    input:
        unpack(lambda wildcards: refined_networks()),
        settings=settings("calibrate"),
        lineage=lineage("calibrate"),
        model=rules.finetune_cnn.output.ckpt,
        test=rules.pretrain_cnn.input.test,
        noise=all_station_noise,
        draws=all_calibration_draws,
        refine_draws=all_refine_draws,
    output:
        csv=results("cnn", "station_thresholds.csv"),
        metrics=results("metrics", "calibrate.json"),
    log:
        log_file("calibrate_stations"),
    benchmark:
        benchmark_file("calibrate_stations")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        refined=refined_arguments,
    shell:
        "xdisc calibrate {input.noise} --settings-file {input.settings} --model {input.model} --test {input.test}"
        " --out {output.csv} --metrics {output.metrics} --draws {input.draws} {params.refined} 2> {log}"


rule predict_stations:
    input:
        unpack(lambda wildcards: refined_networks()),
        settings=settings("predict"),
        lineage=lineage("predict"),
        model=rules.finetune_cnn.output.ckpt,
        calibration=rules.calibrate_stations.output.csv,
        images=all_station_images,
    output:
        csv=results("verdicts", "cnn.csv"),
    log:
        log_file("predict_stations"),
    benchmark:
        benchmark_file("predict_stations")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        refined=refined_arguments,
    shell:
        "xdisc predict {input.images} --settings-file {input.settings} --model {input.model}"
        " --calibration {input.calibration} {params.refined} --out {output.csv} 2> {log}"


rule compare_verdicts:
    input:
        unpack(detectability_table),
        lineage=lineage("verdicts"),
        cnn=rules.predict_stations.output.csv,
        stacking=rules.collect_stacking_verdicts.output.csv,
    output:
        csv=results("verdicts", "stations.csv"),
        summary=results("metrics", "agreement.json"),
        figure=report(
            results("figures", "agreement.png"),
            caption="../report/agreement.rst",
            category="Verdicts",
        ),
    log:
        log_file("compare_verdicts"),
    benchmark:
        benchmark_file("compare_verdicts")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        detectability=detectability_arguments,
    shell:
        "xdisc compare --cnn {input.cnn} --stacking {input.stacking} --out {output.csv} --summary {output.summary}"
        " --figure {output.figure} {params.detectability} 2> {log}"


rule plot_training_curves:
    input:
        pretrain=rules.pretrain_cnn.output.metrics,
        finetune=rules.finetune_cnn.output.metrics,
    output:
        png=report(
            results("figures", "cnn", "training_curves.png"),
            caption="../report/training_curves.rst",
            category="CNN",
        ),
    log:
        log_file("plot_training_curves"),
    benchmark:
        benchmark_file("plot_training_curves")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "xdisc plot training-curves {input.pretrain} {input.finetune} --out {output.png} 2> {log}"


rule evaluate_methods:
    input:
        settings=settings("evaluate"),
        lineage=lineage("evaluate"),
        model=rules.pretrain_cnn.output.ckpt,
        test=rules.pretrain_cnn.input.test,
    output:
        json=results("metrics", "evaluation.json"),
        figures=report(
            directory(results("figures", "cnn", "evaluation")),
            patterns=["{name}.png"],
            caption="../report/evaluation.rst",
            category="CNN",
        ),
    log:
        log_file("evaluate_methods"),
    benchmark:
        benchmark_file("evaluate_methods")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "xdisc evaluate --settings-file {input.settings} --model {input.model} --test {input.test}"
        " --out {output.json} --figures {output.figures} 2> {log}"


# Maintainers: make the network that ships with xdisc (cnn.pretrained: shipped) from a pretraining here:
#   snakemake --cores 2 ship_pretrained_cnn --configfile config/config.yaml config/shipped.yaml
# (config/shipped.yaml sets cnn.pretrained: train and the full-size training), then commit
# workflow/src/xdisc/cnn/shipped/. Not part of the default target.
rule ship_pretrained_cnn:
    input:
        settings=settings("pretrain"),
        ckpt=rules.pretrain_cnn.output.ckpt,
        metrics=rules.pretrain_cnn.output.metrics,
    output:
        ckpt=str(SHIPPED_DIR / "xnet.ckpt"),
        provenance=str(SHIPPED_DIR / "xnet.json"),
    log:
        log_file("ship_pretrained_cnn"),
    benchmark:
        benchmark_file("ship_pretrained_cnn")
    localrule: True
    conda:
        XDISC_ENV
    shell:
        "xdisc ship --settings-file {input.settings} --checkpoint {input.ckpt} --metrics {input.metrics}"
        " --out-dir $(dirname {output.ckpt}) 2> {log}"
