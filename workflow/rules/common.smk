# Shared helpers of the workflow: configuration validation, paths, settings for the CLI.
import csv
import functools
import json
import os
from pathlib import Path

from snakemake.utils import validate

import xdisc.config
import xdisc.data.batches
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


# keys that only shape the plan (how many stations one job holds), never a result: left out of the
# settings files, so that a new batch size reruns nothing that is done
PLAN_ONLY = {"data": {"batch_stations"}, "detectability": {"batch_stations"}}
PLAN_ONLY_CNN = {"adapt": {"batch_stations"}}  # sub-section keys of cnn that shape the plan only


def _sections(*sections):
    return {section: _data() if section == "data" else _science(section) for section in sections}


def _science(section):
    if section not in PLAN_ONLY:
        return config[section]
    return {k: v for k, v in config[section].items() if k not in PLAN_ONLY[section]}


def _data():
    """The data section without the sub-sections of other sources (data.fdsn for a local archive, ...): a
    setting of a source not in use changes no settings file, so it reruns nothing. The CLI fills them
    back in with their defaults."""
    other = {"demo", "fdsn", "local"} - {config["data"]["source"]}
    return {k: v for k, v in _science("data").items() if k not in other}


def _cnn(*sections, leave_out=(), leave_out_keys=None):
    """The config sections plus the cnn section without the keys in ``leave_out`` (so that, e.g., a
    verdict threshold does not retrain the network) and, per sub-section, without the keys of
    ``leave_out_keys`` and of PLAN_ONLY_CNN."""
    data = _sections(*sections)
    drop = {k: set(PLAN_ONLY_CNN.get(k, ())) | set((leave_out_keys or {}).get(k, ())) for k in config["cnn"]}
    data["cnn"] = {
        k: ({kk: vv for kk, vv in v.items() if kk not in drop[k]} if drop[k] else v)
        for k, v in config["cnn"].items()
        if k not in leave_out
    }
    return data


def _synthetics(split):
    """Settings of a synthetic set: the test set has its own seed (seed + 1) and size."""
    syn = dict(config["synthetics"])
    if split == "test":
        syn = xdisc.config.held_out_synthetics(syn)
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
            "earth_model",
            "images",
            "synthetics",
            "receiver_function",
            leave_out=("finetune", "verdict", "labels", "adapt", "refine"),
        ),
        "finetune": _cnn(
            "earth_model", "images", "synthetics", "receiver_function", leave_out=("verdict", "adapt", "refine")
        ),
        "adapt": _cnn(
            "earth_model",
            "images",
            leave_out=("finetune", "labels", "evaluation", "refine"),
            leave_out_keys={"adapt": xdisc.config.CNN_THRESHOLD_KEYS + xdisc.config.CALIBRATION_DRAW_KEYS},
        ),
        "calibrate": _cnn("earth_model", "images", leave_out=("pretrain", "finetune", "labels", "evaluation")),
        "calibration_draws": _cnn(
            "earth_model",
            "images",
            "receiver_function",
            "rf_processing",
            "layering",
            "synthetics",
            leave_out=("pretrain", "finetune", "labels", "evaluation", "refine"),
            leave_out_keys={"adapt": xdisc.config.CNN_THRESHOLD_KEYS},
        ),
        # cnn.refine: the draws read only its training_stations, the fine-tuning every key but the thresholds'
        "refine_draws": _cnn(
            "earth_model",
            "images",
            "receiver_function",
            "rf_processing",
            "layering",
            "synthetics",
            leave_out=("pretrain", "finetune", "labels", "evaluation"),
            leave_out_keys={
                "adapt": xdisc.config.CNN_THRESHOLD_KEYS + xdisc.config.CALIBRATION_DRAW_KEYS,
                "refine": xdisc.config.REFINE_FIT_KEYS,
            },
        ),
        "refine": _cnn(
            leave_out=("pretrain", "finetune", "labels", "evaluation", "verdict"),
            leave_out_keys={"adapt": xdisc.config.CNN_THRESHOLD_KEYS},
        ),
        "predict": _cnn(leave_out=("pretrain", "finetune", "labels", "adapt")),
        "evaluate": _cnn("earth_model", "images", "synthetics", "stacking", leave_out=("verdict", "labels", "refine")),
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


# The stages each stage's results are made from, by settings name ("detectability_table", "verdicts" and
# "demo_score": collect_detectability, compare_verdicts and score_demo). A rule of the single-job chain
# synthetics -> CNN -> verdicts takes the settings files of every stage upstream of it as inputs too
# (``lineage``). Why: when a job fails after a setting changed, Snakemake deletes its outputs, and on the next
# run it does not make a missing file again whose downstream files exist and are newer than their own inputs
# (Snakemake 9). Without the lineage the verdicts of the old settings would stay (the next run made only what
# else had changed); with it they are older than the changed settings file, and the chain runs again from the
# failed job.
SETTINGS_PARENTS = {
    "pretrain": ("synthetics_pretrain", "synthetics_test"),
    "adapt": ("pretrain", "station"),
    "finetune": ("adapt",),
    "calibration_draws": ("synthetics_test", "station"),
    "refine_draws": ("synthetics_pretrain", "synthetics_test", "station"),
    "refine": ("finetune", "calibration_draws", "refine_draws"),
    "calibrate": ("finetune", "calibration_draws", "refine"),
    "predict": ("calibrate",),
    "evaluate": ("pretrain",),
    "detectability": ("detectability_kernels", "calibrate"),
    "detectability_table": ("detectability",),
    "verdicts": ("predict", "station") + (("detectability_table",) if config["detectability"]["enabled"] else ()),
    "demo_score": ("verdicts",),
}


def lineage(name):
    """The settings files of every stage upstream of stage ``name`` (a key of SETTINGS_PARENTS), not its own
    (stages without a settings file of their own, such as "verdicts", only pass on their parents')."""
    seen, todo = set(), list(SETTINGS_PARENTS.get(name, ()))
    while todo:
        stage = todo.pop()
        if stage not in seen:
            seen.add(stage)
            todo.extend(SETTINGS_PARENTS.get(stage, ()))
    return [settings(stage) for stage in sorted(seen) if stage in SETTINGS]


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


def _fast_group_checks():
    """Snakemake (9.27) checks that no path of jobs leaves a group and enters it again by searching the
    upstream DAG once per job of a group, and again once per *job* for every group (DAG._check_groups
    iterates over the job-to-group map): quadratic in the number of stations where a grouped rule sits
    below the whole run (assess_detectability needs the calibration of every station). 10^4 stations
    with the SLURM profile: over 5 min of planning. Here each group is searched once, upstream from its
    jobs' outside dependencies together, and only through jobs deep enough in the DAG to have one of
    the group's jobs upstream (a job's level: the longest path to it from a job without
    dependencies, computed once per group update). Only where that search finds a path back into the
    group does Snakemake's own check run, for its error message: same verdict, same errors. No effect
    without groups."""
    try:
        from snakemake.dag import DAG
    except ImportError:  # a Snakemake whose internals moved: run with its own checks
        return
    if not all(hasattr(DAG, name) for name in ("validate_group", "_check_groups", "update_groups")):
        return
    if getattr(DAG._check_groups, "_xdisc_fast", False):
        return
    validate_group, check_groups, update_groups = DAG.validate_group, DAG._check_groups, DAG.update_groups
    current = {}  # id(dag) -> levels, while its groups are updated

    def levels(dag):
        deps = dag._dependencies
        level = {}
        for start in list(deps):
            stack = [(start, False)]
            while stack:
                job, expanded = stack.pop()
                if job in level:
                    continue
                upstream = deps.get(job, ())
                if expanded:
                    level[job] = 1 + max((level[d] for d in upstream), default=-1)
                else:
                    stack.append((job, True))
                    stack.extend((d, False) for d in upstream if d not in level)
        return level

    def reenters(dag, group):
        level = current.get(id(dag)) or levels(dag)
        members = set(group.jobs)
        if any(job not in level for job in members):
            level = levels(dag)
        floor = min(level[job] for job in members)  # only deeper jobs can have a member upstream
        deps = dag._dependencies
        todo = [d for job in members for d in deps.get(job, ()) if d not in members and level.get(d, floor + 1) > floor]
        seen = set(todo)
        while todo:
            for dep in deps.get(todo.pop(), ()):
                if dep in members:
                    return True
                if dep not in seen and level.get(dep, floor + 1) > floor:
                    seen.add(dep)
                    todo.append(dep)
        return False

    def fast_update_groups(self):
        current[id(self)] = levels(self)
        try:
            update_groups(self)
        finally:
            current.pop(id(self), None)

    def fast_validate_group(self, group):
        if reenters(self, group):
            validate_group(self, group)

    def fast_check_groups(self):
        if any(reenters(self, group) for group in set(self._group.values())):
            check_groups(self)

    fast_check_groups._xdisc_fast = True
    DAG.validate_group, DAG._check_groups = fast_validate_group, fast_check_groups
    DAG.update_groups = fast_update_groups


_fast_group_checks()


wildcard_constraints:
    network=xdisc.data.codes.CODE_PATTERNS["network"],
    station=xdisc.data.codes.CODE_PATTERNS["station"],
    split="pretrain|test",
    batch=xdisc.data.batches.PATTERN,


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


@functools.lru_cache(maxsize=8)
def _batches(path, mtime_ns, size):
    # keyed on the table's path and version, not on the tuple of codes (hashing 10^4 codes per job
    # costs more than the plan)
    batches = xdisc.data.batches.station_batches(_read_station_table(path, mtime_ns), size)
    return batches, xdisc.data.batches.batch_of(batches)


def station_batches(size):
    """({batch: its NET.STA codes}, {NET.STA: its batch}) of the selected stations in batches of ``size``."""
    table = checkpoints.select_stations.get().output.csv
    return _batches(table, os.stat(table).st_mtime_ns, size)


def download_batch_stations(wildcards):
    """The NET.STA codes of a download batch (params of download_waveforms)."""
    return " ".join(station_batches(config["data"]["batch_stations"])[0][wildcards.batch])


def manifest_folder(wildcards, output):
    """Where a download batch writes its stations' manifests: data/raw/waveforms/ (its table lies in
    data/raw/waveforms/batches/)."""
    return str(Path(output.table).parents[1])


def station_download(wildcards):
    """The table of the download batch that holds the station (input of process_station)."""
    batch = station_batches(config["data"]["batch_stations"])[1][f"{wildcards.network}.{wildcards.station}"]
    return raw("waveforms", "batches", f"{batch}.csv")


def detectability_batch_rf(wildcards):
    """The receiver functions of the stations of a detectability batch (input of assess_detectability)."""
    codes = station_batches(config["detectability"]["batch_stations"])[0][wildcards.batch]
    return [results("rf", f"{code}.nc") for code in codes]


def all_receiver_functions(wildcards):
    return [results("rf", f"{code}.nc") for code in selected_stations()]


def all_station_stacks(wildcards):
    return [results("stack", f"{code}.nc") for code in selected_stations()]


def all_station_images(wildcards):
    return [results("images", f"{code}.nc") for code in selected_stations()]


def all_station_noise(wildcards):
    return [results("noise", f"{code}.nc") for code in selected_stations()]


def calibration_batch_noise(wildcards):
    """The noise pools of the stations of a calibration batch (input of draw_calibration)."""
    codes = station_batches(config["cnn"]["adapt"]["batch_stations"])[0][wildcards.batch]
    return [results("noise", f"{code}.nc") for code in codes]


def all_calibration_draws(wildcards):
    """The folders of the redeconvolved no-X draws (input of calibrate_stations), where
    cnn.adapt.calibration_noise is 'redeconvolved' and the adaptation is on."""
    adapt = config["cnn"]["adapt"]
    if adapt["calibration_noise"] != "redeconvolved" or not adapt["enabled"]:
        return []
    return [results("calibration", batch) for batch in station_batches(adapt["batch_stations"])[0]]


def all_refine_draws(wildcards):
    """The folders of the X and training draws of cnn.refine (input of refine_cnn and calibrate_stations; none
    where it is off)."""
    if not config["cnn"]["refine"]["enabled"]:
        return []
    return [results("refine", "draws", batch) for batch in station_batches(config["cnn"]["adapt"]["batch_stations"])[0]]


def refined_networks():
    """The folder of rule refine_cnn where cnn.refine is on (input of calibrate_stations, predict_stations and
    assess_detectability), else none."""
    return {"refined": results("cnn", "refined")} if config["cnn"]["refine"]["enabled"] else {}


def refined_arguments(wildcards, input):
    """--refined (and --refine-draws for calibrate) where cnn.refine is on."""
    if not config["cnn"]["refine"]["enabled"]:
        return ""
    x_draws = getattr(input, "refine_draws", None)  # calibrate's input, not predict's
    draws = f" --refine-draws {' '.join(x_draws)}" if x_draws else ""
    return f"--refined {input.refined}{draws}"


def all_station_detectability(wildcards):
    """The folders of the detectability batches (one NET.STA.nc per station inside)."""
    batches = station_batches(config["detectability"]["batch_stations"])[0]
    return [results("detectability", batch) for batch in batches]


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
