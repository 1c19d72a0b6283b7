# xdisc: map the mantle X-discontinuity from teleseismic P receiver functions.
# Run:  snakemake --cores 2            (see README.md)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/settings.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/station.smk"
include: "workflow/rules/stacking.smk"
include: "workflow/rules/synthetics.smk"
include: "workflow/rules/cnn.smk"
include: "workflow/rules/detectability.smk"
include: "workflow/rules/demo.smk"


rule all:
    default_target: True
    input:
        all_receiver_functions,
        rules.collect_stacking_verdicts.output,
        rules.compare_verdicts.output,
        rules.plot_training_curves.output,
        rules.evaluate_methods.output,
        rules.plot_synthetic_examples.output,
        rules.score_demo.output if DEMO else [],
