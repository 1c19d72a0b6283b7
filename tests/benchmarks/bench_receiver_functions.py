"""Benchmark: receiver functions per second, xdisc against the rf package in the same run.

    python tests/benchmarks/bench_receiver_functions.py [--copies 20]

Input: the real example data of the rf package (CX.PB01, 7 events in 30-90 deg), each
event-station window repeated ``--copies`` times. Both codes run their whole pipeline per
event-station stream on the same windows with the same settings (band-pass 0.03-2 Hz,
ZRT rotation, Gaussian 0.5 Hz, iterative with 400 iterations / water level 0.01):
  * xdisc: ``compute_station`` (per-event pre-processing in ObsPy, one batched deconvolution);
  * rf: ``RFStream.rf(...)`` per event stream, as its documentation shows.
Two cores: two worker processes, each with half of the windows (as Snakemake runs two
stations at once). Each worker warms up, then reports the best of three timed runs. The deconvolution alone
(same pre-processed traces) is timed too.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

warnings.simplefilter("ignore")

METHODS = {"iterative": "iterative", "waterlevel": "waterlevel"}
REPEAT = 3  # best of three timed runs per worker, for both codes


def _setup(copies):
    import tempfile
    from pathlib import Path

    from xdisc import config as cfgmod
    from xdisc.data.download import download_station, get_events, get_stations, station_rows
    from xdisc.data.receiver_functions import event_table, load_items

    cfg = cfgmod.validate({"rf_processing": {"response": "gain"}})
    d = cfg["data"]
    events = get_events(d)
    inv, providers = get_stations(d)
    station = station_rows(inv, providers)[0]
    tmp = Path(tempfile.mkdtemp())
    download_station(events, station, d, tmp / "w", tmp / "m.csv")
    items = load_items(tmp / "m.csv", tmp / "w") * copies
    return cfg, inv, station, items, event_table(events)


def run_xdisc(method, copies, part, parts):
    from xdisc import config as cfgmod
    from xdisc.core.deconvolution import RFSettings
    from xdisc.data.receiver_functions import compute_station

    cfg, inv, station, items, meta = _setup(copies)
    items = items[part::parts]
    cfg = cfgmod.deep_merge(cfg, {"receiver_function": {"deconvolution": method}})
    args = (inv, station, RFSettings(**cfg["receiver_function"]), cfg["rf_processing"], cfg["earth_model"], meta)
    compute_station(items[:7], *args)  # warm-up: lazy imports and caches, as for rf below
    best = np.inf
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        ds = compute_station(items, *args)
        best = min(best, time.perf_counter() - t0)
    return len(items), best, int(np.isfinite(ds["rf"].values).all(1).sum())


def run_rf(method, copies, part, parts):
    from obspy.taup import TauPyModel
    from rf import RFStream

    _cfg, _inv, _station, items, meta = _setup(copies)
    items = items[part::parts]
    taup = TauPyModel("ak135")
    streams = []
    for row, st in items:
        s = RFStream(st.copy())
        arr = taup.get_travel_times(meta[row["event_id"]]["depth_km"], float(row["distance_deg"]), ["P"])[0]
        for tr in s:
            tr.data = tr.data.astype(float)
            tr.stats.onset = __import__("obspy").UTCDateTime(row["p_time"])
            tr.stats.back_azimuth = float(row["back_azimuth_deg"])
            tr.stats.inclination = arr.incident_angle
            tr.stats.slowness = arr.ray_param_sec_degree
        streams.append(s)
    kw = {"gauss": 0.5}
    if method == "iterative":
        kw.update(itmax=400, minderr=0.001)
    else:
        kw.update(waterlevel=0.01)
    def one(stream):
        try:
            stream.rf(method="P", filter={"type": "bandpass", "freqmin": 0.03, "freqmax": 2.0, "corners": 4,
                                          "zerophase": True},
                      trim=(-30, 150), rotate="NE->RT", deconvolve=METHODS[method], **kw)
            return 1
        except Exception:  # noqa: BLE001 - any failure of the reference code is reported, not fatal
            return 0

    one(streams[0].copy())  # warm-up, not timed
    best = np.inf
    for _ in range(REPEAT):
        fresh = [s.copy() for s in streams]  # rf works in place
        t0 = time.perf_counter()
        ok = sum(one(s) for s in fresh)
        best = min(best, time.perf_counter() - t0)
    return len(streams), best, ok


def timed_parallel(fn, method, copies, cores):
    """``cores`` fresh worker processes (also for one core, so both cases start alike)."""
    with ProcessPoolExecutor(cores) as pool:
        futures = [pool.submit(fn, method, copies, k, cores) for k in range(cores)]
        results = [f.result() for f in futures]
    return sum(r[0] for r in results), max(r[1] for r in results), sum(r[2] for r in results)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=20)
    args = ap.parse_args()
    print(f"rf example data (CX.PB01), 7 windows x {args.copies} copies")
    for method in METHODS:
        for cores in (1, 2):
            n_x, t_x, ok_x = timed_parallel(run_xdisc, method, args.copies, cores)
            n_r, t_r, ok_r = timed_parallel(run_rf, method, args.copies, cores)
            print(f"{method:10s} {cores} core(s): xdisc {n_x / t_x:7.1f} RF/s ({ok_x}/{n_x} computed), "
                  f"rf {n_r / t_r:7.1f} RF/s ({ok_r}/{n_r}), ratio {t_r / n_r / (t_x / n_x):5.1f}x")


if __name__ == "__main__":
    main()
