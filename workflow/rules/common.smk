# Shared helpers of the workflow: configuration validation, paths, settings for the CLI.
import csv
import functools
import json
import os
from pathlib import Path

from snakemake.utils import validate

import xdisc.config
import xdisc.data.codes
import xdisc.data.examples

# xdisc's checks first (nested defaults, schema, relations between keys: one message naming every
# key and value), then Snakemake's schema validation, then the input files of data.source 'local'
config.update(xdisc.config.validate(config))
validate(config, schema=str(xdisc.config.schema_path()))
xdisc.config.check_inputs(config)

RESULTS = config["results_dir"]
RAW = config["data"]["raw_dir"]
# data.source 'demo': rule make_demo_network writes the archive that the download rules then read
DEMO = config["data"]["source"] == "demo"
DEMO_PATHS = {k: str(v) for k, v in xdisc.data.examples.demo_paths(config["data"]["demo"]["folder"]).items()}
DEMO_INPUT = {"demo": DEMO_PATHS["info"]} if DEMO else {}
# the software of all rules (conda paths are relative to workflow/rules/)
XDISC_ENV = "../../envs/xdisc.yaml"
# where the pretrained network that ships with xdisc lives (rule ship_pretrained_cnn writes it)
SHIPPED_DIR = Path(workflow.basedir) / "workflow" / "src" / "xdisc" / "cnn" / "shipped"


def results(*parts):
    """Path under the results folder (every output goes there)."""
    return "/".join([RESULTS, *parts])


def raw(*parts):
    """Path under the raw-data folder (downloads, extracted archive windows)."""
    return "/".join([RAW, *parts])


def benchmark_file(rule, *wildcards):
    """Benchmark file of a rule: results/benchmarks/<rule>.tsv, or <rule>/<wildcards>.tsv per job."""
    if not wildcards:
        return results("benchmarks", f"{rule}.tsv")
    return results("benchmarks", rule, ".".join(f"{{{w}}}" for w in wildcards) + ".tsv")


def log_file(rule, *wildcards):
    """Log file of a rule: results/logs/<rule>.log, or <rule>/<wildcards>.log per job."""
    if not wildcards:
        return results("logs", f"{rule}.log")
    return results("logs", rule, ".".join(f"{{{w}}}" for w in wildcards) + ".log")


def _sections(*sections):
    return {section: _data() if section == "data" else config[section] for section in sections}


def _data():
    """The data section without the sub-sections of other sources (data.fdsn for a local archive, ...): a
    setting of a source not in use changes no settings file, so it reruns nothing. The CLI fills them
    back in with their defaults."""
    other = {"demo", "fdsn", "local"} - {config["data"]["source"]}
    return {k: v for k, v in config["data"].items() if k not in other}


def _cnn(*sections, leave_out=()):
    """The config sections plus the cnn section without the keys in ``leave_out`` (so that, e.g., a
    verdict threshold does not retrain the network)."""
    data = _sections(*sections)
    data["cnn"] = {k: v for k, v in config["cnn"].items() if k not in leave_out}
    return data


def _synthetics(split):
    """Settings of a synthetic set: the test set has its own seed (seed + 1) and size."""
    syn = dict(config["synthetics"])
    if split == "test":
        syn.update(seed=syn["seed"] + 1, n_samples=syn["n_test_samples"])
    return {"synthetics": syn, **_sections("receiver_function", "layering")}


# The validated config sections each CLI call needs. Rule write_settings writes each set once to
# results/settings/<name>.json (a rerun when its content changes, params trigger); the rules take that
# file as input, so a changed setting reruns exactly the rules that read it (mtime trigger) and a job
# carries no long parameter string (10^4 stations make 2 x 10^4 jobs).
SETTINGS = {
    name: json.dumps(value, sort_keys=True)
    for name, value in {
        "download": _sections("data", "earth_model"),
        "demo": _sections("data", "earth_model", "layering", "synthetics"),
        "station": _sections("data", "earth_model", "receiver_function", "rf_processing", "images", "stacking"),
        "synthetics_pretrain": _synthetics("pretrain"),
        "synthetics_test": _synthetics("test"),
        "pretrain": _cnn(
            "earth_model", "images", "synthetics", "receiver_function", leave_out=("finetune", "verdict", "labels")
        ),
        "finetune": _cnn("earth_model", "images", "synthetics", "receiver_function", leave_out=("verdict",)),
        "adapt": _cnn("earth_model", "images", leave_out=("finetune", "labels", "evaluation")),
        "calibrate": _cnn("earth_model", "images", leave_out=("pretrain", "finetune", "labels", "evaluation")),
        "predict": _cnn(leave_out=("pretrain", "finetune", "labels", "adapt")),
        "evaluate": _cnn("earth_model", "images", "synthetics", "stacking", leave_out=("verdict", "labels")),
        "detectability_kernels": _sections("detectability", "earth_model", "receiver_function", "layering"),
        "detectability": _cnn(
            "detectability",
            "earth_model",
            "receiver_function",
            "layering",
            "stacking",
            "images",
            leave_out=("pretrain", "finetune", "labels", "adapt", "evaluation"),
        ),
    }.items()
}


def settings(name):
    """The settings file of ``name`` (a key of SETTINGS, or a pattern such as 'synthetics_{split}')."""
    return results("settings", f"{name}.json")


def _fix_group_components():
    """Work around a Snakemake 9 bug (seen in 9.27) that --group-components triggers in every run whose
    checkpoint output exists at start: the DAG is post-processed twice, the job-group factory hands
    back its cached groups *after* they were merged, and the second pass merges those again (10^4
    stations, 50 per group: 200 group jobs, then 4 of 2,500 stations each). A cached group is reused
    only while it still holds the jobs it was made of. No effect without groups."""
    try:
        from snakemake.jobs import GroupJob, GroupJobFactory
    except ImportError:  # a Snakemake whose internals moved: run without the fix
        return
    if not hasattr(GroupJobFactory, "new") or getattr(GroupJobFactory.new, "_xdisc_fixed", False):
        return

    def new(self, id, jobs, resources):
        jobs = frozenset(jobs)
        obj = self.cache.get((id, jobs))
        if obj is None or obj.jobs != jobs:
            obj = self.cache[(id, jobs)] = GroupJob(id, jobs, resources)
        return obj

    new._xdisc_fixed = True
    GroupJobFactory.new = new


_fix_group_components()


wildcard_constraints:
    network=xdisc.data.codes.CODE_PATTERNS["network"],
    station=xdisc.data.codes.CODE_PATTERNS["station"],
    split="pretrain|test",


@functools.lru_cache(maxsize=4)
def _read_station_table(path, mtime_ns):
    with open(path, newline="") as f:
        rows = xdisc.data.codes.selected(list(csv.DictReader(f)))
    return tuple(f"{row['network']}.{row['station']}" for row in rows)


def selected_stations():
    """NET.STA codes of the stations selected in the table written by checkpoint select_stations
    (stations skipped there, e.g. for an invalid code, are listed with their reason, never run).
    The table is read once per version (several input functions ask for it)."""
    table = checkpoints.select_stations.get().output.csv
    return _read_station_table(table, os.stat(table).st_mtime_ns)


def all_receiver_functions(wildcards):
    return [results("rf", f"{code}.nc") for code in selected_stations()]


def all_station_stacks(wildcards):
    return [results("stack", f"{code}.nc") for code in selected_stations()]


def all_station_images(wildcards):
    return [results("images", f"{code}.nc") for code in selected_stations()]


def all_station_noise(wildcards):
    return [results("noise", f"{code}.nc") for code in selected_stations()]


def all_station_detectability(wildcards):
    return [results("detectability", f"{code}.nc") for code in selected_stations()]


def detectability_table(wildcards):
    """The per-station dvs90 table where detectability.enabled (input of compare_verdicts)."""
    if not config["detectability"]["enabled"]:
        return {}
    return {"detectability": results("verdicts", "detectability.csv")}


def detectability_arguments(wildcards, input):
    if not config["detectability"]["enabled"]:
        return ""
    return f"--detectability {input.detectability} --target-dvs {config['detectability']['target_dvs']}"


def label_files():
    """cnn.labels with relative paths taken from the working folder, else from the repository
    (where the demo labels of the embedded data live)."""
    out = []
    for name in config["cnn"]["labels"]:
        path = Path(name)
        if not path.is_absolute() and not path.exists() and (Path(workflow.basedir) / path).exists():
            path = Path(workflow.basedir) / path
        out.append(str(path))
    return out
