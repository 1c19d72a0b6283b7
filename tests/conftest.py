"""Shared fixtures. Tests never touch the network; servers, when needed, run on 127.0.0.1."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
from xdisc import config as cfgmod
from xdisc.core.earthmodel import load_model
from xdisc.synth.synthetics import Layering, RFSettings, single_rf

TESTS = Path(__file__).parent  # pytest puts this folder on sys.path: test helpers import as raytheory, oracles.*

# Easy synthetics for the learning tests (test_cnn.py, test_adapt.py): one reference model, a sharp X of
# dVs 5-7 %, no distractors, crust 30-40 km (its multiples stay above the X window), SNR 20-40 per receiver
# function, 60-80 receiver functions per station, four slownesses; 96 samples, 6 epochs of pretraining.
EASY = {"synthetics": {"n_samples": 96, "models": ["ak135"], "slowness_s_per_km": [0.045, 0.055, 0.065, 0.075],
                       "x": {"dvs": [0.05, 0.07], "gradient_km": [0, 0], "styles": {"taper": 1.0}},
                       "crust": {"moho_km": [30, 40], "sediment_probability": 0.0},
                       "distractors": {"probability": 0.0},
                       "noise": {"snr": [20, 40], "microseism_amplitude": [0, 0]},
                       "augmentation": {"spurious_probability": 0.0, "trim_probability": 0.0}},
        "cnn": {"rf_per_station": [60, 80], "val_fraction": 0.2,
                "pretrain": {"max_epochs": 6, "batch_size": 16, "patience": 6}},
        "images": {"images_per_station": 1}}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def need(module: str, hint: str | None = None):
    """Import an optional oracle; skip locally when missing, fail in CI (where .ci/run installs it)."""
    try:
        return __import__(module)
    except ImportError as exc:
        if in_ci():
            pytest.fail(f"oracle {module} must be installed in CI: {exc}")
        pytest.skip(f"{module} not installed ({hint or f'bash tests/oracles/INSTALL_{module}.sh'})")


@pytest.fixture(scope="session")
def default_config() -> dict:
    return cfgmod.validate({})


@pytest.fixture(scope="session")
def rf_settings(default_config) -> RFSettings:
    return RFSettings(**default_config["receiver_function"])


@pytest.fixture(scope="session")
def layering(default_config) -> Layering:
    return Layering(**default_config["layering"])


@functools.cache
def reference_rf(model: str, slowness: float, x_depth: float | None = None, x_dvs: float = 0.03,
                 style: str = "taper", gradient_km: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free RF (time, rf) of a reference model, optionally with X (default settings)."""
    from xdisc.core.earthmodel import Discontinuity, insert_discontinuity

    settings = cfgmod.validate({})
    rf = RFSettings(**settings["receiver_function"])
    lay = Layering(**settings["layering"])
    m = load_model(model)
    if x_depth is not None:
        m = insert_discontinuity(m, Discontinuity(x_depth, x_dvs, 0.5 * x_dvs, 0.3 * x_dvs, gradient_km, style))
    return rf.time_axis(), single_rf(m, slowness, rf, lay)


def peak_time(time_s: np.ndarray, trace: np.ndarray, t0: float, half_window_s: float = 1.0,
              sign: float = 1.0) -> tuple[float, float]:
    """Time and amplitude of the largest (sign * trace) peak near t0, parabolic sub-sample fit."""
    win = np.flatnonzero(np.abs(time_s - t0) <= half_window_s)
    i = win[np.argmax(sign * trace[win])]
    y0, y1, y2 = sign * trace[i - 1:i + 2]
    denom = y0 - 2 * y1 + y2
    frac = 0.5 * (y0 - y2) / denom if denom != 0 else 0.0
    dt = time_s[1] - time_s[0]
    return float(time_s[i] + frac * dt), float(trace[i])


@pytest.fixture(scope="session")
def rf_example_station(tmp_path_factory) -> dict:
    """QC-passed real receiver functions of the embedded station CX.PB01 (rf package example data)."""
    from xdisc.data.download import download_station, get_events, get_stations, station_rows
    from xdisc.data.receiver_functions import compute_station, event_table, load_items

    # the default run's settings, on the embedded station alone (the default run adds the demo network)
    cfg = cfgmod.load(TESTS.parent / "config" / "config.yaml", {"data": {"source": "embedded"}})
    d = cfg["data"]
    events = get_events(d)
    inv, providers = get_stations(d)
    station = station_rows(inv, providers)[0]
    tmp = tmp_path_factory.mktemp("rf_example")
    download_station(events, station, d, tmp / "w", tmp / "m.csv")
    ds = compute_station(load_items(tmp / "m.csv", tmp / "w"), inv, station, RFSettings(**cfg["receiver_function"]),
                         cfg["rf_processing"], cfg["earth_model"], event_table(events))
    ok = ds["qc_pass"].values == 1
    return {"rf": ds["rf"].values[ok], "time": ds["time"].values, "slowness": ds["slowness_s_per_km"].values[ok],
            "baz": ds["back_azimuth_deg"].values[ok], "dataset": ds, "station": station}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole default DAG at toy size, run once locally (other tests compare against it)."""
    from pipeline_runs import TINY, run_snakemake, workdir

    wd = workdir(tmp_path_factory.mktemp("tiny"), TINY)
    run = run_snakemake(wd, "--cores", "2")
    assert run.returncode == 0, run.stderr[-5000:]
    return wd
