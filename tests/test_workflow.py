"""The Snakemake workflow: dry run, a tiny real run, reruns, config errors."""

import csv
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import benchmark_scripts
import pytest
import xarray as xr
import yaml
from pipeline_runs import ROOT, SNAKEMAKE, VERDICT_TABLES
from pipeline_runs import run_snakemake as _run
from pipeline_runs import workdir as _workdir


def test_dry_run_shows_the_plan(tmp_path):
    wd = _workdir(tmp_path, {})
    run = _run(wd, "-n", "--cores", "1")
    assert run.returncode == 0, run.stderr
    assert "simulate_synthetics" in run.stdout


@pytest.mark.slow
def test_tiny_run_then_nothing_to_do_then_config_change(tiny_run):
    wd = tiny_run
    out = wd / "results" / "synthetic" / "pretrain.nc"
    ds = xr.open_dataset(out)
    assert ds.sizes["sample"] == 12 and list(ds["slowness"].values) == [0.05, 0.07]
    test = xr.open_dataset(wd / "results" / "synthetic" / "test.nc")
    assert test.sizes["sample"] == 8 and test.attrs["seed"] == ds.attrs["seed"] + 1
    assert "synth:" in (wd / "results" / "logs" / "simulate_synthetics" / "pretrain.log").read_text()
    # the real-data branch on the embedded example data
    rf = xr.open_dataset(wd / "results" / "rf" / "CX.PB01.nc")
    assert rf.sizes["event"] == 7 and int(rf["qc_pass"].sum()) >= 3
    assert (wd / "results" / "figures" / "stack" / "CX.PB01.png").stat().st_size > 20_000
    table = (wd / "results" / "verdicts" / "stacking.csv").read_text().splitlines()
    assert table[0] == ("station,latitude,longitude,n_rf,verdict,x_depth_km,x_depth_err_km,x_amp,x_amp_err,"
                        "d410_km,d660_km,moho_km,moho_err_km,vpvs,vpvs_err,depth_model,reason")
    assert table[1].startswith("CX.PB01,") and ",undetermined," in table[1]  # 3-4 RFs < min_rf
    # the CNN branch: images, pretrain -> fine-tune (demo label) -> predict -> compare
    images = xr.open_dataset(wd / "results" / "images" / "CX.PB01.nc")
    assert images["rf_image"].shape[1:] == (2, 9, 321)
    assert (wd / "results" / "cnn" / "pretrain.ckpt").stat().st_size > 100_000
    finetune = json.loads((wd / "results" / "metrics" / "finetune.json").read_text())
    assert finetune["stations"] == ["CX.PB01"] and finetune["n_images"] == images.sizes["image"]
    cnn = (wd / "results" / "verdicts" / "cnn.csv").read_text().splitlines()
    assert cnn[1].startswith("CX.PB01,") and ",undetermined," in cnn[1]
    stations = (wd / "results" / "verdicts" / "stations.csv").read_text().splitlines()
    assert stations[0].endswith(",agree,dvs90_stacking,dvs90_cnn,false_alarm_rate_stacking,false_alarm_rate_cnn,"
                                "excluded_dvs_stacking,excluded_dvs_cnn,detectability_note")
    # 3-4 receiver functions: fewer than either method needs for a verdict, so nothing could be seen (no
    # dvs90) and nothing is called on noise; the note says why
    assert stations[1].startswith("CX.PB01,") and ",n/a,nan,nan,0,0," in stations[1]
    assert "fewer than either method needs" in stations[1]
    detect = (wd / "results" / "verdicts" / "detectability.csv").read_text().splitlines()
    assert detect[1].startswith("CX.PB01,") and ",nan,nan,0,0," in detect[1]
    # the demo network (data.source demo): two synthetic SY stations beside CX.PB01, read from the archive
    # that make_demo_network wrote, and scored against its truth
    assert [line.split(",")[0] for line in stations[1:]] == ["CX.PB01", "SY.D01", "SY.D02"]
    assert json.loads((wd / "results" / "metrics" / "agreement.json").read_text())["n_stations"] == 3
    score = json.loads((wd / "results" / "metrics" / "demo_score.json").read_text())
    assert score["n_stations"] == 2 and score["n_with_x"] == 1
    assert set(score["cnn"]) >= {"accuracy", "false_alarm_rate", "miss_rate", "undetermined_fraction"}
    assert "SYNTHETIC" in (wd / "data" / "demo" / "README.txt").read_text()
    figures = ("agreement.png", "demo_score.png", "detectability.png", "synthetic_examples.png",
               "cnn/training_curves.png",
               "cnn/pretrain/pretrain_roc.png",
               "cnn/evaluation/accuracy_vs_snr.png", "cnn/evaluation/detection_vs_dvs.png",
               "cnn/evaluation/detection_by_structure.png", "stack/CX.PB01.png")
    for fig in figures:
        assert (wd / "results" / "figures" / fig).stat().st_size > 10_000, fig
    evaluation = json.loads((wd / "results" / "metrics" / "evaluation.json").read_text())
    assert len(evaluation["cnn"]["accuracy"]) == len(evaluation["stacking"]["accuracy"]) == 3
    moho = evaluation["by_structure"]["moho_km"]
    assert sum(moho["count_x"]) + sum(moho["count_no_x"]) == evaluation["n_samples"]
    assert len(moho["cnn_true_positive"]) == 3  # one row per SNR level
    # the HTML report holds every figure with its caption
    report = _run(wd, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr
    html = (wd / "results" / "report.html").read_text()
    for fig in figures:
        assert f"figures/{fig}" in html, fig
    assert "separately seeded synthetic test set" in html  # a caption
    again = _run(wd, "--cores", "2")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # a science setting changes -> the rule reruns
    original = (wd / "config" / "config.yaml").read_text()
    cfg = yaml.safe_load(original)
    cfg["cnn"]["verdict"] = {"present_probability": 0.8}
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    plan = _run(wd, "-n", "--cores", "2")
    (wd / "config" / "config.yaml").write_text(original)
    assert "predict_stations" in plan.stdout and "compare_verdicts" in plan.stdout
    for upstream in ("simulate_synthetics", "pretrain_cnn", "process_station"):
        assert f"rule {upstream}:" not in plan.stdout, f"{upstream} does not depend on cnn.verdict"
    # a calibration rate sets the thresholds again; the adaptation and the calibration draws stay
    cfg = yaml.safe_load(original)
    cfg["cnn"].setdefault("adapt", {})["miss_rate"] = 0.3
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    plan = _run(wd, "-n", "--cores", "2")
    (wd / "config" / "config.yaml").write_text(original)
    assert "rule calibrate_stations:" in plan.stdout and "rule predict_stations:" in plan.stdout, plan.stdout
    for upstream in ("pretrain_cnn", "adapt_cnn", "draw_calibration", "finetune_cnn"):
        assert f"rule {upstream}:" not in plan.stdout, f"{upstream} does not depend on cnn.adapt.miss_rate"


@pytest.mark.slow
def test_a_job_that_fails_after_a_changed_setting_runs_again_with_the_rules_after_it(tiny_run, tmp_path):
    """A setting changes, then the job that reads it fails (here: no ``xdisc`` on the PATH). Snakemake deletes
    that job's outputs and forgets them, and on the next run it would not make them again, since the verdicts
    downstream exist: the verdicts of the old settings would stay. The settings of every stage upstream are
    inputs of each rule of the chain (``lineage`` in common.smk), so the chain runs again from the failed
    job."""
    wd = tmp_path / "run"
    shutil.copytree(tiny_run, wd, symlinks=True)  # modification times kept
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    cfg["cnn"]["finetune"]["max_epochs"] = 2
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "xdisc").exists())
    failed = subprocess.run([*SNAKEMAKE, "--directory", str(wd), "--cores", "1", "--keep-going"], text=True,
                            capture_output=True, timeout=600, env={**os.environ, "PATH": path})
    assert failed.returncode != 0 and "Error in rule finetune_cnn" in failed.stdout + failed.stderr
    assert '"max_epochs": 2' in (wd / "results" / "settings" / "finetune.json").read_text()
    assert not (wd / "results" / "cnn" / "finetune.ckpt").exists()
    plan = _run(wd, "-n", "--cores", "2")
    assert plan.returncode == 0, plan.stderr
    for rule in ("finetune_cnn", "calibrate_stations", "predict_stations", "compare_verdicts", "score_demo"):
        assert f"rule {rule}:" in plan.stdout, rule
    for upstream in ("simulate_synthetics", "pretrain_cnn", "adapt_cnn", "draw_calibration", "process_station"):
        assert f"rule {upstream}:" not in plan.stdout, f"{upstream} does not depend on cnn.finetune"


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_refine_turned_on_reruns_only_the_verdicts_and_scores_each_station_with_its_fold(tiny_run, tmp_path):
    """cnn.refine on a finished run: its draws and folds are made, calibrate, predict and what follows run again,
    the network, its adaptation and the no-X calibration draws stay; the SY stations are scored by their fold's
    network. A fine-tuning key reruns the folds, not their draws."""
    wd = tmp_path / "run"
    shutil.copytree(tiny_run, wd, symlinks=True)  # modification times kept
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    cfg["cnn"]["refine"] = {"enabled": True, "epochs": 1, "training_stations": 4, "balance_look_alikes": True}
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = _run(wd, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    for rule in ("draw_refinement", "refine_cnn", "calibrate_stations", "predict_stations", "assess_detectability",
                 "compare_verdicts"):
        assert f"rule {rule}:" in run.stdout + run.stderr, rule
    for upstream in ("pretrain_cnn", "adapt_cnn", "finetune_cnn", "draw_calibration", "process_station"):
        assert f"rule {upstream}:" not in run.stdout + run.stderr, f"{upstream} does not depend on cnn.refine"
    folds = (wd / "results" / "cnn" / "refined" / "folds.csv").read_text().splitlines()
    assert folds == ["station,fold", "SY.D01,0", "SY.D02,1"]  # CX.PB01: too few receiver functions for draws
    with open(wd / "results" / "verdicts" / "cnn.csv", newline="") as f:
        network = {r["station"]: r["network"] for r in csv.DictReader(f)}
    assert network == {"CX.PB01": "run", "SY.D01": "refined fold 1", "SY.D02": "refined fold 2"}
    # the injection tests judge with the same network (CX.PB01: too few receiver functions, no CNN judged)
    judged = {}
    for path in (wd / "results" / "detectability").glob("*/*.nc"):
        with xr.open_dataset(path) as ds:
            judged[path.stem] = ds.attrs.get("cnn_network")
    assert judged == {**network, "CX.PB01": None}
    refined = json.loads((wd / "results" / "metrics" / "refine.json").read_text())
    assert [f["scored_stations"] for f in refined["per_fold"]] == [1, 1]
    # the draws made in the DAG carry their look-alike flags: each fold's set was balanced (balance_look_alikes)
    assert all(isinstance(f["look_alikes"], dict) for f in refined["per_fold"]), refined["per_fold"]
    cfg["cnn"]["refine"]["epochs"] = 2
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    plan = _run(wd, "-n", "--cores", "2")
    assert "rule refine_cnn:" in plan.stdout and "rule predict_stations:" in plan.stdout, plan.stdout
    assert "rule draw_refinement:" not in plan.stdout  # the draws read only cnn.refine.training_stations


@pytest.mark.slow
def test_killed_job_and_interrupted_run_resume_to_identical_results(tiny_run, tmp_path):
    """kill -9 of the pretraining job, then SIGINT to Snakemake during another job: no half-written
    artifact is accepted, and resuming gives the verdict tables of an uninterrupted run. (On a copy of the tiny
    run whose pretraining patience changed, which cannot change a network trained for one epoch: pretraining
    and every rule after it run again, the data and synthetics before it stay; it saves CI minutes.)"""
    import signal
    import time

    wd = tmp_path / "run"
    shutil.copytree(tiny_run, wd, symlinks=True)  # modification times kept
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    assert cfg["cnn"]["pretrain"]["max_epochs"] == 1
    cfg["cnn"]["pretrain"]["patience"] = 99
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([*SNAKEMAKE, "--directory", str(wd), "--cores", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    victim, deadline = None, time.time() + 600
    while victim is None and time.time() < deadline and proc.poll() is None:
        # the xdisc process itself, not the shell that started it
        victim = next((p for p in _descendants(proc.pid)
                       if "train pretrain" in _cmdline(p) and Path(_cmdline(p).split()[0]).name.startswith("python")),
                      None)
        time.sleep(0.1)
    assert victim is not None, "pretraining never started"
    time.sleep(1.0)  # while it loads data or trains
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert not (wd / "results" / "cnn" / "pretrain.ckpt").exists()  # nothing half-written is left as output
    assert not list((wd / "results").rglob(".*.part"))  # temporary files of atomic writes are gone

    # resume, and interrupt Snakemake itself (Ctrl-C) while fine-tuning or predicting
    proc = subprocess.Popen([*SNAKEMAKE, "--directory", str(wd), "--cores", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    while proc.poll() is None and not (wd / "results" / "cnn" / "pretrain.ckpt").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=600)

    final = _run(wd, "--cores", "2", "--rerun-incomplete")
    assert final.returncode == 0, final.stderr
    for table in VERDICT_TABLES:
        assert (wd / "results" / table).read_text() == (tiny_run / "results" / table).read_text(), table
    again = _run(wd, "--cores", "2")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_invalid_config_stops_with_the_key(tmp_path):
    wd = _workdir(tmp_path, {"synthetics": {"x_fraction": 3}})
    run = _run(wd, "-n", "--cores", "1")
    assert run.returncode != 0
    assert "x_fraction" in run.stdout + run.stderr
    assert not (wd / "results").exists()


def test_dry_run_prints_no_schema_warning(tmp_path):
    run = _run(_workdir(tmp_path, {}), "-n", "--cores", "1")
    assert run.returncode == 0, run.stderr
    assert "No validator found" not in run.stdout + run.stderr
    assert "may not be validated correctly" not in run.stdout + run.stderr


@pytest.mark.parametrize("config, named", [
    ({"data": {"events": {"min_distance_deg": 90, "max_distance_deg": 30}}},
     ["data.events.min_distance_deg (90) must be smaller than data.events.max_distance_deg (30)"]),
    ({"data": {"source": "local", "local": {"waveforms": "archive/sds", "format": "sds", "inventory": "meta/st.xml",
                                            "events": "meta/ev.xml"}}},
     ["data.local.waveforms: SDS root archive/sds", "data.local.inventory: StationXML file meta/st.xml",
      "data.local.events: QuakeML file meta/ev.xml"]),
])
@pytest.mark.parametrize("args", [("-n",), ("--cores", "2")], ids=["dry-run", "run"])
def test_contradictory_config_stops_before_any_job(tmp_path, config, named, args):
    wd = _workdir(tmp_path, config)
    run = _run(wd, *args, "--cores", "1") if args == ("-n",) else _run(wd, *args)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    for text in named:
        assert text in out
    assert "ConfigError" in out and "Traceback" not in out
    assert not (wd / "results").exists() and not (wd / "data").exists()


def test_snakefile_has_only_includes_and_rule_all():
    text = (ROOT / "Snakefile").read_text()
    assert "run:" not in text and "shell:" not in text
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        assert "run:" not in smk.read_text(), f"{smk.name}: logic belongs in the package"
    assert shutil.which("xdisc"), "the xdisc CLI must be installed (pip install -e .)"


def _scale_workdir(path: Path, n: int) -> Path:
    """A working folder as after select_stations of an n-station run (tests/benchmarks/dry_run_scale.py)."""
    return benchmark_scripts.load("dry_run_scale").make_workdir(path, n)


def test_slurm_profile_batches_the_per_station_rules(tmp_path):
    """120 stations: downloads in batches of data.batch_stations (50: 3 jobs), calibration draws in batches of
    cnn.adapt.batch_stations (20: 6 jobs), injection tests in batches of detectability.batch_stations (5: 24
    jobs), one process_station per station; with the SLURM profile the 120 process_station jobs go in 3
    group jobs of 50 stations, the 6 calibration-draw batches in 2 group jobs of 5 and the 24 injection-test
    batches in 3 group jobs of 10 (8 submissions, not 150), also when the checkpoint output exists at start
    (Snakemake 9.27 merged the groups a second time there: one group job of all stations). The plan also
    shows that xdisc's faster check of the groups (common.smk) accepts the DAG Snakemake's check accepts."""
    wd = _scale_workdir(tmp_path, 120)
    run = _run(wd, "-n", "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"))
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert out.count("Group job station") == 3, out[-3000:]
    assert out.count("Group job detectability") == 3, out[-3000:]
    assert out.count("Group job calibration") == 2, out[-3000:]
    for rule, jobs in (("download_waveforms", 3), ("process_station", 120), ("draw_calibration", 6),
                       ("assess_detectability", 24)):
        assert re.search(rf"^{rule}\s+{jobs}$", out, re.M), rule


def test_group_check_still_finds_a_group_that_depends_on_itself(tmp_path):
    """xdisc's faster group check (common.smk) still refuses a group that a path leaves and enters again:
    the stations' process_station jobs and compare_verdicts merged into one group job, with the CNN's
    calibration (it needs every station's noise file) and predict_stations outside between them."""
    wd = _scale_workdir(tmp_path, 4)
    run = _run(wd, "-n", "--groups", "process_station=g", "compare_verdicts=g", "--group-components", "g=10")
    assert run.returncode != 0
    assert "depends on rule(s)" in run.stdout + run.stderr or "depends on itself" in run.stdout + run.stderr, \
        (run.stdout + run.stderr)[-3000:]


def test_lint_and_format():
    """`snakemake --lint` finds nothing, the rules are formatted with snakefmt (line length in pyproject.toml)."""
    with tempfile.TemporaryDirectory() as tmp:
        lint = _run(_workdir(Path(tmp), {}), "--lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Congratulations, your workflow is in a good condition!" in lint.stdout + lint.stderr
    if shutil.which("snakefmt") is None:
        pytest.skip("snakefmt not installed (pip install snakefmt)")
    fmt = subprocess.run(["snakefmt", "--check", "Snakefile", "workflow/rules/"], cwd=ROOT, capture_output=True,
                         text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_every_rule_has_log_benchmark_and_conda():
    text = "\n".join(smk.read_text() for smk in (ROOT / "workflow" / "rules").glob("*.smk"))
    rules = re.findall(r"^(?:rule|checkpoint) (\w+):", text, re.M)
    assert len(rules) >= 13
    for block in re.split(r"^(?=(?:rule|checkpoint) \w+:)", text, flags=re.M)[1:]:
        name = block.split(":")[0]
        for directive in ("log:", "benchmark:", "conda:"):
            assert f"\n    {directive}" in block, f"{name}: no {directive}"


def test_conda_env_lists_the_package_dependencies():
    """envs/xdisc.yaml (for --use-conda) names every dependency of pyproject.toml."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs" / "xdisc.yaml").read_text())["dependencies"]
    names = {str(d).split("=")[0].split(">")[0].split("<")[0].strip().lower() for d in env if isinstance(d, str)}
    names |= {str(d).split("=")[0].split(">")[0].strip().lower() for e in env if isinstance(e, dict)
              for d in e.get("pip", [])}
    for dep in deps:
        name = re.split(r"[<>=!~ ;\[]", dep, maxsplit=1)[0].lower()
        assert name in names, f"{name} missing in envs/xdisc.yaml"
    # `snakemake --report` (the README's report) needs pygments, which snakemake does not install; the test
    # environment has it through pytest, so only the declared dependency shows that a user gets it
    assert any(re.match(r"pygments\b", dep) for dep in deps)
