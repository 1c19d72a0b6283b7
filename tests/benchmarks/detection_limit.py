"""Detection limit of the stacking verdict: detection rate against dVs of X (and false positives).

    python tests/benchmarks/detection_limit.py [--stations 40] [--n-rf 50]

For each dVs, ``--stations`` synthetic stations are drawn from the default synthetic
distribution (random reference model, crust, sediments, 410/660 topography, X style and
depth in 250-350 km, distractors), each with ``--n-rf`` receiver functions over 30-90 deg at
the default noise distribution (SNR 3-30 log-uniform, coloured noise). A detection is a
'present' verdict with the X depth within 25 km of the truth (the reference-model moveout
correction ignores each station's own crust and the gradient of X: depths shift by up to ~15 km). The same number of
stations
without X gives the false-positive rate. Prints the table and the smallest dVs detected at
>= 90 %. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from xdisc import config as cfgmod
from xdisc.core.deconvolution import RFSettings
from xdisc.core.earthmodel import load_model
from xdisc.stack.stacking import stack_station
from xdisc.synth.stations import clean_grid, make_station, station_parameters
from xdisc.synth.synthetics import Layering, _row, build_model

DVS = (0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06)


def run(dvs: float | None, n_stations: int, n_rf: int, seed: int, cfg, rf, lay, refs):
    p = station_parameters(n_stations, dvs, seed)  # style 'constant' keeps 40 % of the 410's jump, as generated
    models = [build_model(_row(p, i), refs[p["model"][i]]) for i in range(n_stations)]
    grids = clean_grid(models, rf, lay)
    rng = np.random.default_rng(seed + 1)
    hits, verdicts = 0, []
    for i in range(n_stations):
        st = make_station(grids[i], n_rf, rng, rf, model_name=p["model"][i])
        a = stack_station(st.rf, rf.time_axis(), st.slowness, st.distance, refs[p["model"][i]],
                          cfg["stacking"]).attrs
        verdicts.append(a["verdict"])
        if a["verdict"] == "present" and (dvs is None or abs(a["x_depth_km"] - p["x_depth_km"][i]) <= 25):
            hits += 1
    return hits / n_stations, {v: verdicts.count(v) for v in ("present", "absent", "undetermined")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=40)
    ap.add_argument("--n-rf", type=int, default=50)
    ap.add_argument("--seed", type=int, default=100)
    args = ap.parse_args()
    cfg = cfgmod.validate({})
    rf, lay = RFSettings(**cfg["receiver_function"]), Layering(**cfg["layering"])
    refs = {m: load_model(m) for m in ("ak135", "iasp91", "prem")}
    t0 = time.perf_counter()
    fp, counts = run(None, args.stations, args.n_rf, args.seed, cfg, rf, lay, refs)
    print(f"{args.stations} stations per row, {args.n_rf} RFs each, default noise (SNR 3-30)")
    print(f"no X      : false positives {100 * fp:5.1f} %   verdicts {counts}")
    limit = None
    for k, dvs in enumerate(DVS):
        rate, counts = run(dvs, args.stations, args.n_rf, args.seed + 10 * (k + 1), cfg, rf, lay, refs)
        print(f"dVs {100 * dvs:4.1f} % : detected {100 * rate:5.1f} %   verdicts {counts}")
        if limit is None and rate >= 0.9:
            limit = dvs
    print(f"detection limit (>= 90 %): {'none up to 6 %' if limit is None else f'dVs = {100 * limit:.1f} %'}"
          f"  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
