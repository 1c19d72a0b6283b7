"""The xdisc command line, run as a user would (subprocess)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from conftest import peak_time
from raytheory import delay


def xdisc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "xdisc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_help_lists_stages():
    out = xdisc("--help")
    assert out.returncode == 0
    assert "synth" in out.stdout and "config" in out.stdout
    assert xdisc("synth", "--help").returncode == 0


def test_single_rf_quick_look(tmp_path):
    out_file = tmp_path / "f.nc"
    run = xdisc("synth", "--model", "ak135", "--x-depth", 300, "--x-dvs", 0.03, "--slowness", 0.06,
                "--no-noise", "--out", out_file)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stderr
    ds = xr.open_dataset(out_file)
    assert ds.sizes["sample"] == 1 and ds.sizes["slowness"] == 1
    assert int(ds["label"][0]) == 1 and float(ds["x_depth_km"][0]) == 300.0
    rf = ds["rf"].values[0, 0]
    np.testing.assert_allclose(rf, ds["rf_clean"].values[0, 0])
    expected = delay("ak135", 300.0, 0.06)
    got, amp = peak_time(ds["time"].values, rf, expected, 0.6)
    assert abs(got - expected) < 0.2 and amp > 0


def test_own_model_file_and_layering(tmp_path):
    table = tmp_path / "two_layers.csv"
    table.write_text("thickness_km vp vs rho\n35 6.5 3.75 2.9\n765 8.04 4.48 3.3\n0 9.0 5.0 3.5\n")
    out_file = tmp_path / "own.nc"
    run = xdisc("synth", "--model-file", table, "--no-x", "--no-noise", "--no-flatten", "--max-thickness-km", 5,
                "--slowness", 0.06, "--out", out_file)
    assert run.returncode == 0, run.stderr
    ds = xr.open_dataset(out_file)
    assert ds["model"].values[0] == str(table) and ds.attrs["layering_flatten"] == "False"
    xi, eta = np.sqrt(1 / 6.5**2 - 0.06**2), np.sqrt(1 / 3.75**2 - 0.06**2)
    got, _ = peak_time(ds["time"].values, ds["rf"].values[0, 0], 35 * (eta - xi), 0.6)
    assert abs(got - 35 * (eta - xi)) < 0.1


@pytest.mark.parametrize("args, message", [
    (["--settings", json.dumps({"synthetics": {"n_sample": 3}})], "n_sample"),
    (["--model", "ak136", "--no-x"], "unknown reference model"),
    (["--model-file", "/nonexistent/model.nd", "--no-x"], "does not exist"),
    (["--config", "/nonexistent/config.yaml"], "does not exist"),
    (["--slowness", "0.2", "--no-x"], "slowness"),
])
def test_bad_input_exits_1_with_reason_and_writes_nothing(tmp_path, args, message):
    out_file = tmp_path / "never.nc"
    run = xdisc("synth", "--out", out_file, *args)
    assert run.returncode == 1
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert not out_file.exists() and not list(tmp_path.iterdir())


def test_config_reference_and_validation(tmp_path):
    ref = xdisc("config", "--reference")
    assert ref.returncode == 0 and "`synthetics.x.dvs`" in ref.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("synthetics:\n  x_fraction: 2\n")
    run = xdisc("config", bad)
    assert run.returncode == 1 and "synthetics.x_fraction" in run.stderr


def test_settings_file_is_merged_and_checked(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"synthetics": {"n_samples": 2, "seed": 7}}))
    out_file = tmp_path / "two.nc"
    # --settings goes over --settings-file: seed 7 from the file, n_samples 1 from the string
    run = xdisc("synth", "--settings-file", settings, "--settings", json.dumps({"synthetics": {"n_samples": 1}}),
                "--slowness", 0.06, "--no-noise", "--out", out_file)
    assert run.returncode == 0, run.stderr
    ds = xr.open_dataset(out_file)
    assert ds.sizes["sample"] == 1 and ds.attrs["seed"] == 7
    settings.write_text("[1, 2]")
    run = xdisc("synth", "--settings-file", settings, "--out", tmp_path / "never.nc")
    assert run.returncode == 1 and "--settings-file must be a JSON object" in run.stderr
    run = xdisc("synth", "--settings-file", tmp_path / "missing.json", "--out", tmp_path / "never.nc")
    assert run.returncode == 1 and "missing.json does not exist" in run.stderr
    assert not (tmp_path / "never.nc").exists()


HEAVY = ("torch", "lightning", "xarray", "matplotlib", "numpy", "scipy", "pandas", "obspy", "netCDF4")


@pytest.mark.parametrize("code", [
    "import xdisc.cli",
    # what 'xdisc --help' and 'xdisc download --help' run before they exit
    "import xdisc.cli; xdisc.cli.build_parser().format_help()",
])
def test_cli_start_up_imports_no_heavy_module(code):
    """`xdisc --version`, `--help` and the start of every command stay fast: the command line module
    imports neither torch nor the scientific stack; each command imports what it needs."""
    probe = f"{code}; import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_version_and_download_help_print_without_heavy_imports():
    version = xdisc("--version")
    assert version.returncode == 0 and version.stdout.startswith("xdisc ") and version.stdout.strip() != "xdisc"
    download = xdisc("download", "--help")
    assert download.returncode == 0 and "--settings-file" in download.stdout


@pytest.mark.slow  # builds on the whole tiny pipeline run (tiny_run), which the slow tier makes anyway
def test_rf_then_stack_equal_the_station_command_of_the_workflow(tiny_run, tmp_path):
    """The workflow runs `xdisc station` (one job per station); `xdisc rf` followed by `xdisc stack --images`,
    run by hand on the same inputs and settings, write the same data."""
    wd, raw = tiny_run, tiny_run / "data" / "raw"
    settings = ["--settings-file", str(wd / "results" / "settings" / "station.json")]
    inputs = ["--station", "CX.PB01", "--events", str(raw / "events.xml"), "--stations", str(raw / "stations.csv"),
              "--inventory", str(raw / "stations.xml"), "--manifest", str(raw / "waveforms" / "CX.PB01.csv")]
    for args in (["rf", *inputs, "--out", tmp_path / "rf.nc"],
                 ["stack", "--rf", tmp_path / "rf.nc", "--out", tmp_path / "stack.nc",
                  "--images", tmp_path / "images.nc"]):
        run = xdisc(*args, *settings)
        assert run.returncode == 0, run.stderr
    for folder, name in (("rf", "rf.nc"), ("stack", "stack.nc"), ("images", "images.nc")):
        with xr.open_dataset(wd / "results" / folder / "CX.PB01.nc") as ours, \
                xr.open_dataset(tmp_path / name) as by_hand:
            xr.testing.assert_identical(ours.drop_attrs(), by_hand.drop_attrs())
            assert ours.attrs.get("verdict") == by_hand.attrs.get("verdict")
