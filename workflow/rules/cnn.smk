# CNN detector: station images, pretraining on synthetics, fine-tuning on labelled real images,
# per-station predictions and their comparison with the stacking verdicts.


rule build_station_images:
    input:
        rf=rules.compute_receiver_functions.output.nc,
    output:
        nc=results("images", "{network}.{station}.nc"),
    params:
        settings=settings_json("earth_model", "images", "stacking"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        results("logs", "build_station_images", "{network}.{station}.log"),
    shell:
        "xdisc images --settings {params.settings:q} --rf {input.rf} --out {output.nc} 2> {log}"


rule pretrain_cnn:
    input:
        train=expand(rules.simulate_synthetics.output.nc, split="pretrain"),
        test=expand(rules.simulate_synthetics.output.nc, split="test"),
    output:
        ckpt=results("cnn", "pretrain.ckpt"),
        metrics=results("metrics", "pretrain.json"),
        curves=results("cnn", "logs", "pretrain", "metrics.csv"),
        figures=report(directory(results("figures", "cnn", "pretrain")), patterns=["{name}.png"],
                       caption="../report/pretrain.rst", category="CNN"),
    params:
        settings=cnn_settings("earth_model", "images", "synthetics", "receiver_function",
                              leave_out=("finetune", "verdict", "labels")),
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
    log:
        results("logs", "pretrain_cnn.log"),
    benchmark:
        results("benchmarks", "pretrain_cnn.tsv")
    shell:
        "xdisc train pretrain --settings {params.settings:q} --synthetics {input.train} --test {input.test}"
        " --out {output.ckpt} --metrics {output.metrics} --figures {output.figures} --threads {threads}"
        " --workers auto 2> {log}"


rule finetune_cnn:
    input:
        pretrained=rules.pretrain_cnn.output.ckpt,
        synthetics=rules.pretrain_cnn.input.train,
        images=all_station_images,
        labels=label_files(),
    output:
        ckpt=results("cnn", "finetune.ckpt"),
        metrics=results("metrics", "finetune.json"),
    params:
        settings=cnn_settings("earth_model", "images", "synthetics", "receiver_function", leave_out=("verdict",)),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        results("logs", "finetune_cnn.log"),
    benchmark:
        results("benchmarks", "finetune_cnn.tsv")
    shell:
        "xdisc train finetune --settings {params.settings:q} --pretrained {input.pretrained}"
        " --synthetics {input.synthetics} --images {input.images} --labels {input.labels}"
        " --out {output.ckpt} --metrics {output.metrics} --threads {threads} 2> {log}"


rule predict_stations:
    input:
        model=rules.finetune_cnn.output.ckpt,
        images=all_station_images,
    output:
        csv=results("verdicts", "cnn.csv"),
    params:
        settings=cnn_settings(leave_out=("pretrain", "finetune", "labels")),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    log:
        results("logs", "predict_stations.log"),
    shell:
        "xdisc predict {input.images} --settings {params.settings:q} --model {input.model} --out {output.csv} 2> {log}"


rule compare_verdicts:
    input:
        cnn=rules.predict_stations.output.csv,
        stacking=rules.collect_stacking_verdicts.output.csv,
    output:
        csv=results("verdicts", "stations.csv"),
        summary=results("metrics", "agreement.json"),
        figure=report(results("figures", "agreement.png"), caption="../report/agreement.rst", category="Verdicts"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        results("logs", "compare_verdicts.log"),
    shell:
        "xdisc compare --cnn {input.cnn} --stacking {input.stacking} --out {output.csv} --summary {output.summary}"
        " --figure {output.figure} 2> {log}"


rule plot_training_curves:
    input:
        pretrain=rules.pretrain_cnn.output.metrics,
        finetune=rules.finetune_cnn.output.metrics,
    output:
        png=report(results("figures", "cnn", "training_curves.png"), caption="../report/training_curves.rst",
                   category="CNN"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        results("logs", "plot_training_curves.log"),
    shell:
        "xdisc plot training-curves {input.pretrain} {input.finetune} --out {output.png} 2> {log}"


rule evaluate_methods:
    input:
        model=rules.pretrain_cnn.output.ckpt,
        test=rules.pretrain_cnn.input.test,
    output:
        json=results("metrics", "evaluation.json"),
        figures=report(directory(results("figures", "cnn", "evaluation")), patterns=["{name}.png"],
                       caption="../report/evaluation.rst", category="CNN"),
    params:
        settings=cnn_settings("earth_model", "images", "synthetics", "stacking", leave_out=("verdict", "labels")),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        results("logs", "evaluate_methods.log"),
    benchmark:
        results("benchmarks", "evaluate_methods.tsv")
    shell:
        "xdisc evaluate --settings {params.settings:q} --model {input.model} --test {input.test}"
        " --out {output.json} --figures {output.figures} 2> {log}"
