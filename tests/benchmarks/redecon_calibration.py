"""Calibration draws deconvolved like the real data (xdisc.cnn.redecon): do they bound the CNN's false alarms on an
independent network? A what-if on a finished run, without rerunning it.

The per-station thresholds of ``xdisc calibrate`` come from *own-noise stations*: noise-free synthetic
receiver functions plus the station's transverse receiver functions (noise added after deconvolution).
On the independent networks the realised false-alarm rate at stations without X is 8-14 %, not the design
5 %. This benchmark builds the no-X calibration draws the way the real receiver functions are made
instead (:func:`xdisc.cnn.redecon.calibration_draws`, what rule draw_calibration does; the receiver
functions and noise pools are made again with the pipeline's functions, so that runs made before xdisc
kept the pre-P noise can be scored):
the synthetic sample's vertical and radial responses (with an extended source per event) plus noise with
the station's own pre-P spectrum (vertical and radial jointly, scaled to each event's SNR), tapered,
deconvolved (the pipeline's iterative deconvolution) and normalised, then imaged at the station's event
slownesses and scored with the run's network. Per station it prints the real score, the present threshold
of the run and the one of the re-deconvolved draws (the same conformal order statistic), and scores the
verdicts against the hidden truth. Not part of CI (about 15-40 s per station).

    python tests/benchmarks/redecon_calibration.py score --network /data/xs1 --run /data/xs1-run --out xs1.csv
    python tests/benchmarks/redecon_calibration.py summary xs1.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
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


def station_pools(run: Path, codes: list, cfg: dict, out: Path) -> list[Path]:
    """Noise pools with pre-P noise for ``codes`` of a finished run: each station's receiver functions made
    again by ``xdisc rf``'s own function (runs made before xdisc kept the pre-P noise lack it)."""
    from obspy import read_events, read_inventory
    from xdisc.core.artifacts import write_netcdf
    from xdisc.core.deconvolution import RFSettings
    from xdisc.data import receiver_functions as rfmod
    from xdisc.synth.noise_pool import noise_pool

    rf = RFSettings(**cfg["receiver_function"])
    meta = rfmod.event_table(read_events(str(run / "data/raw/events.xml")))
    inv = read_inventory(str(run / "data/raw/stations.xml"))
    with open(run / "data/raw/stations.csv") as f:
        stations = {f"{r['network']}.{r['station']}": r for r in csv.DictReader(f)}
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for code in codes:
        items = rfmod.load_items(run / "data/raw/waveforms" / f"{code}.csv", run / "data/raw/waveforms" / code)
        ds = rfmod.compute_station(items, inv, stations[code], rf, cfg["rf_processing"], cfg["earth_model"], meta)
        write_netcdf(ds, out / f"rf_{code}.nc")
        paths.append(write_netcdf(noise_pool(out / f"rf_{code}.nc", cfg["stacking"]["use_qc"]), out / f"{code}.nc"))
    return paths


def score(argv) -> int:
    import torch
    from xdisc.cnn import redecon
    from xdisc.cnn.adapt import read_draw_images
    from xdisc.cnn.calibration import AdaptSettings, upper_order_statistic
    from xdisc.cnn.module import XClassifier
    from xdisc.cnn.predict import predict_station

    ap = argparse.ArgumentParser()
    ap.add_argument("--network", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--stations", nargs="*")
    ap.add_argument("--part", default="0/1", help="k/n: this process scores every n-th station from k")
    ap.add_argument("--out", type=Path, required=True, help="CSV of per-station results")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    run = a.run
    cfg = _config(run)
    ad = AdaptSettings.from_config(cfg["cnn"]["adapt"])
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
    with tempfile.TemporaryDirectory() as tmp:
        pools = station_pools(run, codes, cfg, Path(tmp) / "noise")
        draws = redecon.calibration_draws(cfg, test_path, pools, Path(tmp) / "draws")
        images = {path.stem: read_draw_images(path) for path in draws}
    rows = []
    for code, img in images.items():
        prob = predict_station(module, img)
        present = max(0.5, upper_order_statistic(prob, ad.false_alarm_rate))
        row = cnn[code]
        real = float(row["probability_all"])
        old = float(thresholds[code]["present_threshold"])
        absent = float(thresholds[code]["absent_threshold"])
        new_verdict = "present" if real >= present else "absent" if real <= absent else "undetermined"
        t = truth[code]
        rows.append({"station": code, "x_present": int(t["x_present"]), "decoy": t["decoy"],
                     "sediment_km": t["sediment_km"], "real": real, "old_present": old,
                     "new_present": present, "absent": absent, "old_verdict": row["verdict"],
                     "new_verdict": new_verdict, "p_value": float((np.sum(prob >= real) + 1) / (prob.size + 1)),
                     "median_draw": float(np.median(prob))})
        print(json.dumps(rows[-1]), flush=True)
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
