# Shared helpers of the workflow: configuration validation, paths, settings for the CLI.
import json

from snakemake.utils import validate

import xdisc.config
import xdisc.data.codes

# xdisc's checks first (nested defaults, schema, relations between keys: one message naming every
# key and value), then Snakemake's schema validation, then the input files of data.source 'local'
config.update(xdisc.config.validate(config))
validate(config, schema=str(xdisc.config.schema_path()))
xdisc.config.check_inputs(config)

RESULTS = config["results_dir"]


def results(*parts):
    """Path under the results folder (every output goes there)."""
    return "/".join([RESULTS, *parts])


def settings_json(*sections):
    """The validated config sections a CLI call needs, as one JSON argument (a change re-runs the rule)."""
    return json.dumps({section: config[section] for section in sections}, sort_keys=True)


def cnn_settings(*sections, leave_out=()):
    """Like settings_json, plus the cnn section without the keys in ``leave_out`` (so that, e.g., a
    verdict threshold does not retrain the network)."""
    data = {section: config[section] for section in sections}
    data["cnn"] = {k: v for k, v in config["cnn"].items() if k not in leave_out}
    return json.dumps(data, sort_keys=True)


RAW = config["data"]["raw_dir"]


def raw(*parts):
    """Path under the raw-data folder (downloads, extracted archive windows)."""
    return "/".join([RAW, *parts])


wildcard_constraints:
    network=xdisc.data.codes.CODE_PATTERNS["network"],
    station=xdisc.data.codes.CODE_PATTERNS["station"],
    split="pretrain|test",


def synthetic_settings(wildcards):
    """Settings of a synthetic set: the test set has its own seed (seed + 1) and size."""
    syn = dict(config["synthetics"])
    if wildcards.split == "test":
        syn.update(seed=syn["seed"] + 1, n_samples=syn["n_test_samples"])
    return json.dumps({"synthetics": syn, "receiver_function": config["receiver_function"],
                       "layering": config["layering"]}, sort_keys=True)


def selected_stations():
    """NET.STA codes of the stations selected in the table written by checkpoint select_stations
    (stations skipped there, e.g. for an invalid code, are listed with their reason, never run)."""
    import csv

    table = checkpoints.select_stations.get().output.csv
    with open(table, newline="") as f:
        rows = xdisc.data.codes.selected(list(csv.DictReader(f)))
    return [f"{row['network']}.{row['station']}" for row in rows]


def all_receiver_functions(wildcards):
    return [results("rf", f"{code}.nc") for code in selected_stations()]


def all_station_stacks(wildcards):
    return [results("stack", f"{code}.nc") for code in selected_stations()]


def label_files():
    """cnn.labels with relative paths taken from the working folder, else from the repository
    (where the demo labels of the embedded data live)."""
    from pathlib import Path

    out = []
    for name in config["cnn"]["labels"]:
        path = Path(name)
        if not path.is_absolute() and not path.exists() and (Path(workflow.basedir) / path).exists():
            path = Path(workflow.basedir) / path
        out.append(str(path))
    return out


def all_station_images(wildcards):
    return [results("images", f"{code}.nc") for code in selected_stations()]
