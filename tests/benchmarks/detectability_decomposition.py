"""Why do the injection curves of ``xdisc detectability`` under-predict what the stacking finds?

On the independent test networks the stacking finds 0.44-0.57 of the X stations, while its detection
curves, read at each station's true depth, gradient and dVs, predict 0.30-0.40. A detection draw has
three parts: a noise-free structure without X, the station's noise, and the injected X conversion. This
script swaps each part for the truth, station by station, and reads the stacking's detection probability
at the station's true X (nearest grid depth and gradient, dVs interpolated; the X parts of variants E and
F are at the true depth already):

- A: as the pipeline (like-station structures of the run's synthetic test set, the station's radial
  residuals as noise, xdisc's X conversion in the earth model's crust);
- B: the true structure (the station's noise-free receiver functions without X, same events);
- C: the true noise (the data minus the noise-free receiver functions with X);
- D: B and C;
- E: D with the true X (noise-free with X minus without): the data with its noise's polarities redrawn;
- F: A's structures and noise with the true X;
- G: A with xdisc's X conversion computed in the model of the nearest like-station structure (its crust,
  sediments and distractor) instead of the earth model's.

The noise-free receiver functions are those of ``clairvoyant_bound.py`` (steps ``make`` and ``rf``) of the
same draw; only its X stations have them.

    python tests/benchmarks/detectability_decomposition.py --network /data/xs3 --run /data/xs3-run \\
        --bound /data/bound3 --out /data/xs3-decomposition.csv

About 10 min for 50 stations on 2 cores. Not part of CI. Results: docs/results/2026-12-03-band-and-injections.md.
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

VARIANTS = ("A", "B", "C", "D", "E", "F", "G")
ARGS: argparse.Namespace | None = None


def _events(path: Path, events) -> tuple[np.ndarray, np.ndarray]:
    """Normalised receiver functions of ``path`` at ``events`` (in that order), and the time axis."""
    from xdisc.core.artifacts import open_netcdf
    from xdisc.core.deconvolution import normalise_by_p

    with open_netcdf(path) as ds:
        ds = ds.assign_coords(event=ds["event"].values).sel(event=list(events))
        t = ds["time"].values
        return normalise_by_p(ds["rf"].values.astype(float), t), t


def _structure_kernels(test: Path, sample: int, grid, config: dict) -> np.ndarray:
    """xdisc's X conversions in the model of the synthetic test set's ``sample`` (its X left out)."""
    from xdisc import detectability as det
    from xdisc.core.artifacts import open_netcdf
    from xdisc.core.deconvolution import RFSettings
    from xdisc.core.earthmodel import load_model
    from xdisc.synth.synthetics import Layering, build_model

    with open_netcdf(test) as ds:
        row = {k: ds[k].values[sample].item() for k in ds.data_vars if ds[k].dims == ("sample",)}
    row["label"] = 0
    model = build_model(row, load_model(str(row["model"])))
    kernels, _ = det.x_kernels(model, grid, RFSettings(**config["receiver_function"]),
                               Layering(**config["layering"]))
    return kernels


def station(code: str) -> dict:
    from xdisc import detectability as det
    from xdisc.core.artifacts import open_netcdf, usable_receiver_functions
    from xdisc.core.earthmodel import load_model
    from xdisc.stack.stacking import depth_model

    run, bound = ARGS.run, ARGS.bound
    config = json.loads((run / "results" / "settings" / "detectability.json").read_text())
    truth = pd.read_csv(ARGS.network / "truth" / "truth.csv").set_index("station").loc[code]
    cfg = config["stacking"]
    grid = det.InjectionGrid.from_config(config["detectability"])
    with open_netcdf(run / "results" / "detectability" / "kernels.nc") as k:
        kernels = k["x_conversion"].values.astype(float)
        reference = k["reference"].values.astype(float)
        grid = det.InjectionGrid(**{**grid.__dict__, "kernel_slowness_s_per_km": tuple(k["slowness"].values)})
    rf_ds, keep, meta = usable_receiver_functions(run / "results" / "rf" / f"{code}.nc", cfg["use_qc"])
    events = rf_ds["event"].values[keep]
    data, t = _events(run / "results" / "rf" / f"{code}.nc", events)
    p = rf_ds["slowness_s_per_km"].values[keep]
    dist = rf_ds["distance_deg"].values[keep]
    try:
        with_x, _ = _events(bound / "run_x" / "results" / "rf" / f"{code}.nc", events)
        without, _ = _events(bound / "run_zero" / "results" / "rf" / f"{code}.nc", events)
    except (FileNotFoundError, KeyError) as e:
        return {"station": code, "note": f"no noise-free receiver functions: {e}"}
    ok = np.all(np.isfinite(data), 1) & np.all(np.isfinite(with_x), 1) & np.all(np.isfinite(without), 1)
    data, with_x, without, p, dist = data[ok], with_x[ok], without[ok], p[ok], dist[ok]
    if data.shape[0] < cfg["min_rf"]:
        return {"station": code, "note": f"{data.shape[0]} receiver functions"}
    gradient = float(truth["x_gradient_km"]) if truth["x_gradient_km"] > 0 else 0.0
    a = int(np.argmin(np.abs(np.asarray(grid.depths_km) - truth["x_depth_km"])))
    b = int(np.argmin(np.abs(np.asarray(grid.gradients_km) - gradient)))
    point = det.InjectionGrid(**{**grid.__dict__, "depths_km": (grid.depths_km[a],),
                                 "gradients_km": (grid.gradients_km[b],), "false_alarm_draws": 2})
    test = run / "results" / "synthetic" / "test.nc"
    quiet = det.quiet_structures(test, 2, grid.seed)
    table = det.quiet_structures(test, 1000, grid.seed)
    like = det.like_station(data, p, t, table, grid.draws)
    # the test-set sample of the nearest like-station structure: like_station's first, a row of the table
    with open_netcdf(test) as ds:
        pick = det.quiet_samples(ds["label"].values, 1000, grid.seed)
    nearest = int(pick[np.flatnonzero(np.all(table[0] == like[0][0], axis=(1, 2)))[0]])
    order = np.argsort(p, kind="stable")
    p_sorted = p[order] + np.arange(p.size) * 1e-9       # a one-sample 'table' on the events' own slownesses
    true_structure = (without[order][None], p_sorted)
    true_noise = data - with_x
    true_x = (with_x - without)[order][None, None, None]
    true_grid = det.InjectionGrid(**{**point.__dict__, "dvs": (float(truth["x_dvs"]),),
                                     "kernel_slowness_s_per_km": tuple(p_sorted)})
    xdisc_x = kernels[a:a + 1, b:b + 1]
    crust_x = _structure_kernels(test, nearest, point, config)
    conversion = depth_model(data, t, p, load_model(config["earth_model"]), cfg)
    plans = {"A": (like, None, xdisc_x, point), "B": (true_structure, None, xdisc_x, point),
             "C": (like, true_noise, xdisc_x, point), "D": (true_structure, true_noise, xdisc_x, point),
             "E": (true_structure, true_noise, true_x, true_grid), "F": (like, None, true_x, true_grid),
             "G": (like, None, crust_x, point)}
    out = {"station": code, "note": "", "found": None}
    residuals = det.radial_residuals
    try:
        for name, (structure, noise, x, g) in plans.items():
            det.radial_residuals = residuals if noise is None else (lambda *_, n=noise, **__: n)
            ds = det.station_detectability(data, t, p, dist, x, reference, g, conversion, cfg, None, meta, None,
                                           quiet, structure)
            curve = ds["detection_stacking"].values[0, 0]
            out[name] = float(np.interp(truth["x_dvs"], ds["dvs"].values, curve)) if curve.size > 1 \
                else float(curve[0])
    finally:
        det.radial_residuals = residuals
    return out


def main(argv=None) -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", type=Path, required=True, help="the draw of independent_network.py make")
    parser.add_argument("--run", type=Path, required=True, help="its scored pipeline run (results/ inside)")
    parser.add_argument("--bound", type=Path, required=True, help="clairvoyant_bound.py's --out of the same draw")
    parser.add_argument("--out", type=Path, required=True, help="per-station CSV")
    parser.add_argument("--workers", type=int, default=2)
    ARGS = parser.parse_args(argv)
    truth = pd.read_csv(ARGS.network / "truth" / "truth.csv").set_index("station")
    codes = [c for c in truth.index[truth["x_present"] == 1]]
    with Pool(ARGS.workers) as pool:
        rows = pool.map(station, codes)
    d = pd.DataFrame(rows).set_index("station")
    verdicts = pd.read_csv(ARGS.run / "results" / "verdicts" / "stacking.csv").set_index("station")["verdict"]
    d["found"] = (verdicts.reindex(d.index) == "present").astype(float)
    d = d.join(truth[["median_snr_z", "x_gradient_km", "sediment_km", "x_dvs", "x_depth_km"]])
    d.to_csv(ARGS.out)
    cols = [v for v in VARIANTS if v in d] + ["found"]
    d = d[d["note"].fillna("") == ""]
    print(f"{len(d)} X stations; mean detection probability at the true X, and the share found:")
    print(d[cols].mean().round(3).to_string())
    d["median SNR"] = pd.cut(d["median_snr_z"], [0, 3, 6, 10, 1e9], labels=["< 3", "3-6", "6-10", ">= 10"])
    d["X"] = np.where(d["x_gradient_km"] > 0, "gradient", "sharp")
    d["crust"] = np.where(d["sediment_km"] > 0, "sediments", "no sediments")
    for by in ("median SNR", "X", "crust"):
        print(d.groupby(by, observed=True)[cols].mean().round(2).assign(n=d.groupby(by, observed=True).size()))


if __name__ == "__main__":
    main()
