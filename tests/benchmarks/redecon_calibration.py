"""Calibration draws deconvolved like the real data (xdisc.cnn.redecon): do they bound the CNN's false alarms on an
independent network? A what-if on a finished run, without rerunning it.

The per-station thresholds of ``xdisc calibrate`` come from *own-noise stations*: noise-free synthetic
receiver functions plus the station's transverse receiver functions (noise added after deconvolution).
On the independent networks the realised false-alarm rate at stations without X is 8-14 %, not the design
5 %. This benchmark builds the no-X calibration draws the way the real receiver functions are made
instead (:func:`xdisc.cnn.redecon.redeconvolved`, what rule draw_calibration now does; here the pre-P noise
comes from the run's waveforms, processed again, so that runs made before xdisc kept it can be scored):
the synthetic sample's vertical and radial responses (with an extended source per event) plus noise with
the station's own pre-P spectrum (vertical and radial jointly, scaled to each event's SNR), tapered,
deconvolved (the pipeline's iterative deconvolution) and normalised, then imaged at the station's event
slownesses and scored with the run's network. Per station it prints the real score, the present threshold
of the run and the one of the re-deconvolved draws (the same conformal order statistic), and scores the
verdicts against the hidden truth. Not part of CI (about 10 s per station).

    python tests/benchmarks/redecon_calibration.py score --network /data/xs1 --run /data/xs1-run --out xs1.csv
    python tests/benchmarks/redecon_calibration.py summary xs1.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def _config(run: Path) -> dict:
    import yaml
    from xdisc import config as cfgmod

    user: dict = {}
    for name in ("config/config.yaml", "config/full.yaml", "my_network.yaml"):
        if (run / name).exists():
            with open(run / name) as f:
                user = cfgmod.deep_merge(user, yaml.safe_load(f) or {})
    return cfgmod.validate(user)


def prepared_events(run: Path, code: str, cfg: dict, pre_s: float = 55.0):
    """The station's events processed as ``xdisc rf`` does, on a grid from ``pre_s`` before P: event ids,
    vertical and radial (event, time), the grid."""
    from obspy import read_events, read_inventory
    from xdisc.core.deconvolution import RFSettings
    from xdisc.data import receiver_functions as rfmod

    rf = RFSettings(**cfg["receiver_function"])
    proc = dict(cfg["rf_processing"])
    proc["source_window_s"] = [-pre_s, proc["source_window_s"][1]]
    items = rfmod.load_items(run / "data/raw/waveforms" / f"{code}.csv", run / "data/raw/waveforms" / code)
    meta = rfmod.event_table(read_events(str(run / "data/raw/events.xml")))
    inv = _inventory(run, read_inventory)
    taup = rfmod._LazyTauP(cfg["earth_model"])
    pairs = []
    for request, stream in items:
        row = dict(request)
        row.update(rfmod._ray(taup, request, meta))
        pairs.append((row, stream))
    out = rfmod.prepare_events(pairs, inv, rf, proc)
    ids, z, r = [], [], []
    for (row, _), res in zip(pairs, out, strict=True):
        if isinstance(res, rfmod.Prepared):
            ids.append(row["event_id"])
            z.append(res.z)
            r.append(res.r)
    return ids, np.array(z), np.array(r), rfmod._grid(proc["source_window_s"], rf.dt)


_INV: dict = {}


def _inventory(run, reader):
    if run not in _INV:
        _INV[run] = reader(str(run / "data/raw/stations.xml"))
    return _INV[run]


def _pre_p(z: np.ndarray, r: np.ndarray, grid: np.ndarray, proc: dict) -> np.ndarray:
    """Pre-P noise (event, vertical/radial, time) in units of the vertical's signal rms, as xdisc rf and the
    noise pool keep it (10 s after the start of the noise window to its end)."""
    from xdisc.data.receiver_functions import PRE_P_SKIP_S

    noise = (grid >= proc["noise_window_s"][0] + PRE_P_SKIP_S - 1e-9) & (grid <= proc["noise_window_s"][1] + 1e-9)
    sig = (grid >= proc["signal_window_s"][0]) & (grid <= proc["signal_window_s"][1])
    total = np.sqrt(np.mean(z[:, sig] ** 2, axis=1))
    n_rms = np.sqrt(np.mean(z[:, noise] ** 2, axis=1))
    signal = np.sqrt(np.maximum(total**2 - n_rms**2, (0.1 * total) ** 2))
    return np.stack([z[:, noise], r[:, noise]], axis=1) / signal[:, None, None]


def score(argv) -> int:
    import torch
    import xarray as xr
    from xdisc.cnn import redecon
    from xdisc.cnn.adapt import AdaptSettings, _calibration_pairs, read_pools, upper_order_statistic
    from xdisc.cnn.datasets import SyntheticSource
    from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
    from xdisc.cnn.module import XClassifier
    from xdisc.cnn.predict import predict_station
    from xdisc.core.earthmodel import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--network", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--stations", nargs="*")
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--part", default="0/1", help="k/n: this process scores every n-th station from k")
    ap.add_argument("--out", type=Path, required=True, help="CSV of per-station results")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    run = a.run
    cfg = _config(run)
    ad = AdaptSettings.from_config(cfg["cnn"]["adapt"])
    settings = ImageSettings.from_config(cfg["images"])
    mapper = DepthMapper(load_model(cfg["earth_model"]), settings.depths_km)
    module = XClassifier.load_from_checkpoint(str(run / "results/cnn/finetune.ckpt"), map_location="cpu").eval()
    with open(run / "results/cnn/station_thresholds.csv") as f:
        thresholds = {r["station"]: r for r in csv.DictReader(f)}
    with open(run / "results/verdicts/cnn.csv") as f:
        cnn = {r["station"]: r for r in csv.DictReader(f)}
    with open(a.network / "truth/truth.csv") as f:
        truth = {r["station"]: r for r in csv.DictReader(f)}
    codes = a.stations or sorted(thresholds)
    k, n = (int(v) for v in a.part.split("/"))
    codes = codes[k::n]
    test_path = run / "results/synthetic/test.nc"
    test = SyntheticSource.read(test_path)
    pools = read_pools([run / f"results/noise/{c}.nc" for c in codes], test.grid_slowness, test.time_s,
                       int(cfg["cnn"]["verdict"]["min_rf"]), ad.noise, ad.match_crust)
    pairs, kind = _calibration_pairs(pools, test, a.draws, ad.absent_dvs, int(cfg["cnn"]["seed"]),
                                     ad.crust_window_s if ad.match_crust else None, ad.hard_fraction)
    resp = redecon.Responses(test_path, cfg, pairs[kind == 0, 1])
    rows = []
    for s, pool in enumerate(pools):
        t0 = time.perf_counter()
        code = pool.station
        rf_ds = xr.open_dataset(run / f"results/rf/{code}.nc")
        usable = rf_ds["qc_pass"].values == 1
        ids_rf = [str(v) for v in rf_ds["event"].values[usable]]
        p_rf = rf_ds["slowness_s_per_km"].values[usable].astype(float)
        ids, z, r, grid = prepared_events(run, code, cfg)
        index = {e: i for i, e in enumerate(ids)}
        take = [j for j, e in enumerate(ids_rf) if e in index]
        p = p_rf[take]
        inside = (p >= test.grid_slowness[0] - 0.0025) & (p <= test.grid_slowness[-1] + 0.0025)
        take = [t for t, ok in zip(take, inside, strict=True) if ok]
        p = p_rf[take]
        zi = z[[index[ids_rf[j]] for j in take]]
        ri = r[[index[ids_rf[j]] for j in take]]
        gi = np.argmin(np.abs(p[:, None] - test.grid_slowness[None, :]), axis=1)
        rng = np.random.default_rng([int(cfg["cnn"]["seed"]), 97, s])
        no_x = pairs[(pairs[:, 0] == s) & (kind == 0), 1]
        pre_p = _pre_p(zi, ri, grid, cfg["rf_processing"])
        rfs = redecon.redeconvolved(resp, no_x, gi, pre_p, cfg["rf_processing"], rng)
        t_out = resp.rf.time_axis()
        images = np.stack([build_image(x, t_out, p, mapper, settings, normalised=True)[0] for x in rfs])
        prob = predict_station(module, images)
        present = max(0.5, upper_order_statistic(prob, ad.false_alarm_rate))
        row = cnn[code]
        real = float(row["probability_all"])
        old = float(thresholds[code]["present_threshold"])
        absent = float(thresholds[code]["absent_threshold"])
        new_verdict = "present" if real >= present else "absent" if real <= absent else "undetermined"
        t = truth[code]
        rows.append({"station": code, "x_present": int(t["x_present"]), "decoy": t["decoy"],
                     "sediment_km": t["sediment_km"], "n_rf": len(p), "real": real, "old_present": old,
                     "new_present": present, "absent": absent, "old_verdict": row["verdict"],
                     "new_verdict": new_verdict, "p_value": float((np.sum(prob >= real) + 1) / (prob.size + 1)),
                     "median_draw": float(np.median(prob))})
        print(json.dumps(rows[-1]), f"{time.perf_counter() - t0:.0f} s", flush=True)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 0


def summary(argv) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="+")
    a = ap.parse_args(argv)
    rows = []
    for path in a.csv:
        with open(path) as f:
            rows += list(csv.DictReader(f))
    for key in ("old_verdict", "new_verdict"):
        x = [r for r in rows if r["x_present"] == "1"]
        o = [r for r in rows if r["x_present"] == "0"]
        right = sum(r[key] == "present" for r in x) + sum(r[key] == "absent" for r in o)
        und = sum(r[key] == "undetermined" for r in rows)
        print(f"{key}: stations {len(rows)} accuracy {right / len(rows):.0%} false alarms "
              f"{sum(r[key] == 'present' for r in o) / max(len(o), 1):.0%} misses "
              f"{sum(r[key] == 'absent' for r in x) / max(len(x), 1):.0%} undetermined {und / len(rows):.0%}")
    o = [float(r["p_value"]) for r in rows if r["x_present"] == "0"]
    x = [float(r["p_value"]) for r in rows if r["x_present"] == "1"]
    print(f"no-X stations: p <= 0.05 at {np.mean(np.array(o) <= 0.05):.0%} (n {len(o)}); "
          f"X stations: {np.mean(np.array(x) <= 0.05):.0%}")
    return 0


if __name__ == "__main__":
    import sys

    cmd, rest = sys.argv[1], sys.argv[2:]
    raise SystemExit({"score": score, "summary": summary}[cmd](rest))
