"""Is it the injected X or the noise? The CNN's injection curves against its calibration draws, in a finished run.

A station's CNN `absent` threshold comes from calibration draws: X samples of the run's synthetic test set
(dVs >= cnn.adapt.absent_dvs) with the station's noise pool. Its injection curves (``xdisc detectability``)
add the earth model's X conversion to a like-station structure without X, with the station's radial
residuals as noise. On the demo network the curves find far less X than the calibration draws. This script
gives the run's adapted CNN the test set's X samples (noise-free) plus the injections' noise (radial
residuals, a random polarity per event) and prints, per station, how often it says ``present`` (its
calibrated threshold) beside the calibration's own detection rate, then the same pooled by the samples' X
depth, gradient and dVs.

    python tests/benchmarks/injected_x_check.py RUN [STATION ...]   # RUN: the run's folder (config/, results/)

About 1 s per station for a test set of 300 samples. Not part of CI.
Results: docs/results/2026-12-04-what-an-absent-rules-out.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from xdisc import config as cfgmod
from xdisc import detectability as D
from xdisc.cnn.predict import read_calibration
from xdisc.core.artifacts import open_netcdf
from xdisc.core.deconvolution import normalise_by_p
from xdisc.core.earthmodel import load_model
from xdisc.synth.noise_pool import radial_residuals


def x_samples(test_path: Path, min_dvs: float) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Noise-free receiver functions / direct P of the test set's X samples of dVs >= ``min_dvs``, their
    slownesses and their X parameters."""
    with open_netcdf(test_path) as ds:
        pick = np.flatnonzero((ds["label"].values == 1) & (ds["x_dvs"].values >= min_dvs - 1e-9))
        rf = normalise_by_p(ds["rf_clean"].isel(sample=pick).values.astype(float), ds["time"].values)
        params = pd.DataFrame({k: ds[f"x_{k}"].values[pick] for k in ("depth_km", "gradient_km", "dvs")})
        return rf, ds["slowness"].values.astype(float), params


def station_check(run: Path, code: str, cfg: dict, calibration: dict, rf_x: np.ndarray, p_x: np.ndarray,
                  seed: int) -> np.ndarray:
    """Whether the run's CNN says present for each X sample plus the station's radial residuals (thresholds:
    ``calibration``, the run's station_thresholds.csv read once by :func:`xdisc.cnn.predict.read_calibration`)."""
    results = run / "results"
    _, _, norm, t, slowness, _ = D.station_traces(results / "rf" / f"{code}.nc", cfg["stacking"]["use_qc"])
    noise = radial_residuals(norm, slowness)
    judge = D._cnn_judge(results / "cnn" / "finetune.ckpt", calibration, code, cfg, load_model(cfg["earth_model"]))
    rng = np.random.default_rng(seed)
    batches = [(D.at_slowness(x, p_x, slowness) + rng.choice((-1.0, 1.0), size=slowness.size)[:, None] * noise,
                slowness) for x in rf_x]
    return judge.probabilities(batches, t) >= judge.present_threshold


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished run's folder (config/config.yaml and results/)")
    ap.add_argument("stations", nargs="*", help="station codes (default: every row of the CNN's thresholds)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    cfg = cfgmod.load(args.run / "config" / "config.yaml")
    calibration = read_calibration(args.run / "results" / "cnn" / "station_thresholds.csv")
    rf_x, p_x, params = x_samples(args.run / "results" / "synthetic" / "test.nc", cfg["cnn"]["adapt"]["absent_dvs"])
    pooled = []
    for code in args.stations or list(calibration):
        found = station_check(args.run, code, cfg, calibration, rf_x, p_x, args.seed)
        print(f"{code}: {found.size} X samples + radial residuals: present {found.mean():.2f}; calibration "
              f"(noise pool): {calibration[code]['detection_rate']:.3f}", flush=True)
        pooled.append(params.assign(found=found))
    df = pd.concat(pooled)
    df["depth"] = pd.cut(df["depth_km"], [240, 275, 325, 365])
    df["gradient"] = pd.cut(df["gradient_km"], [-1, 7.5, 25])
    df["dVs"] = pd.cut(df["dvs"], [0.0, 0.04, 0.05, 0.2])
    print(df.groupby(["depth", "gradient"], observed=True)["found"].agg(["size", "mean"]).round(2))
    print(df.groupby("dVs", observed=True)["found"].agg(["size", "mean"]).round(2))


if __name__ == "__main__":
    main()
