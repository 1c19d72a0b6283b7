"""The Snakemake workflow: dry run, a tiny real run, reruns, config errors."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
import yaml

ROOT = Path(__file__).parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def _workdir(tmp_path, config):
    (tmp_path / "config").mkdir()
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for key, value in config.items():
        base.setdefault(key, {}).update(value)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(base))
    return tmp_path


def _run(workdir, *args):
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True,
                          timeout=900)


def test_dry_run_shows_the_plan(tmp_path):
    wd = _workdir(tmp_path, {})
    run = _run(wd, "-n", "--cores", "1")
    assert run.returncode == 0, run.stderr
    assert "simulate_synthetics" in run.stdout


@pytest.mark.slow
def test_tiny_run_then_nothing_to_do_then_config_change(tmp_path):
    wd = _workdir(tmp_path, {"synthetics": {"n_samples": 4, "slowness_s_per_km": [0.05, 0.07]}})
    run = _run(wd, "--cores", "2")
    assert run.returncode == 0, run.stderr
    out = wd / "results" / "synthetic" / "pretrain.nc"
    ds = xr.open_dataset(out)
    assert ds.sizes["sample"] == 4 and list(ds["slowness"].values) == [0.05, 0.07]
    assert "synth:" in (wd / "results" / "logs" / "simulate_synthetics.log").read_text()
    # the real-data branch on the embedded example data
    rf = xr.open_dataset(wd / "results" / "rf" / "CX.PB01.nc")
    assert rf.sizes["event"] == 7 and int(rf["qc_pass"].sum()) >= 3
    assert (wd / "results" / "figures" / "stack" / "CX.PB01.png").stat().st_size > 20_000
    table = (wd / "results" / "verdicts" / "stacking.csv").read_text().splitlines()
    assert table[0] == ("station,latitude,longitude,n_rf,verdict,x_depth_km,x_depth_err_km,x_amp,x_amp_err,"
                        "d410_km,d660_km")
    assert table[1].startswith("CX.PB01,") and ",undetermined," in table[1]  # 3-4 RFs < min_rf
    again = _run(wd, "--cores", "2")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # a science setting changes -> the rule reruns
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    cfg["synthetics"]["seed"] = 99
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    plan = _run(wd, "-n", "--cores", "2")
    assert "simulate_synthetics" in plan.stdout


def test_invalid_config_stops_with_the_key(tmp_path):
    wd = _workdir(tmp_path, {"synthetics": {"x_fraction": 3}})
    run = _run(wd, "-n", "--cores", "1")
    assert run.returncode != 0
    assert "x_fraction" in run.stdout + run.stderr
    assert not (wd / "results").exists()


def test_snakefile_has_only_includes_and_rule_all():
    text = (ROOT / "Snakefile").read_text()
    assert "run:" not in text and "shell:" not in text
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        assert "run:" not in smk.read_text(), f"{smk.name}: logic belongs in the package"
    assert shutil.which("xdisc"), "the xdisc CLI must be installed (pip install -e .)"
