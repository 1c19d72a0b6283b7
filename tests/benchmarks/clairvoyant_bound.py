"""How many X stations of the independent network could any detector find? A clairvoyant ceiling.

The clairvoyant knows, for every receiver function of an X station, the X signal exactly as the
pipeline renders it: s_i = RF(noise-free, X) - RF(noise-free, X contrasts zeroed), both made by
``independent_network.py`` with the same stations, events and sources, and both processed by the
pipeline. Its statistic is the matched filter sum_i s_i . d_i / sigma_i^2 over the X window (20-40 s),
d_i = the real (noisy) receiver function minus the noise-free one without X. Its threshold is the
95 % quantile of the same statistic on the station's true noise (noisy minus noise-free with X) with a
random polarity per event (2000 draws): 5 % false alarms by construction. It knows the depth, the crust
and the 410 strength, which no real detector does; so its detection rate bounds what a detector can
reach at 5 % false alarms on this network from above (for linear detectors; the noise is not Gaussian).

A second clairvoyant knows the same except X's depth (``unknown_depth`` in ``ceiling.json``): it slides
each receiver function's X signal to the Ps delay of every depth in 240-360 km (2.5 km steps, the
delay at the event's own slowness in AK135) and takes the largest matched-filter statistic; its null
is the largest over the same depths of the random-polarity noise statistics, so it keeps 5 % false
alarms. A detector that must find the depth, as the CNN and the stacking must, is bounded by it.

    # 1. the two noise-free networks of the draw's X stations (about 3 min each on 2 cores)
    python tests/benchmarks/clairvoyant_bound.py make --seed 1 --out /data/bound1 --network /data/xs1
    # 2. their receiver functions through the pipeline (about 8 min each), as a user's archive
    python tests/benchmarks/clairvoyant_bound.py rf --seed 1 --out /data/bound1 --network /data/xs1
    # 3. the ceiling, beside the verdicts of a scored run of the same draw
    python tests/benchmarks/clairvoyant_bound.py score --seed 1 --out /data/bound1 --network /data/xs1 \\
        --run /data/xs1-run

Not part of CI. Results: docs/results/2026-11-30-cnn-transfer.md, 2026-12-03-unknown-depth-ceiling.md and
2026-12-04-ceilings-on-the-corrected-networks.md.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WINDOW_S = (20.0, 40.0)
ALPHA = 0.05
SEARCH_KM = np.arange(240.0, 360.0 + 1e-6, 2.5)  # depths the unknown-depth clairvoyant tries


def _independent_network():
    spec = importlib.util.spec_from_file_location("independent_network", HERE / "independent_network.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["independent_network"] = mod  # its worker pools pickle its functions by name
    spec.loader.exec_module(mod)
    return mod


def _x_stations(network: Path) -> set[str]:
    with open(network / "truth" / "truth.csv", newline="") as f:
        return {r["station"].split(".")[1] for r in csv.DictReader(f) if r["x_present"] == "1"}


_KEEP: dict = {}


def _only_x(job: dict) -> dict:
    """``synthesize_station`` for the X stations (``_KEEP``) only; the others get no waveforms."""
    if job["station"] in _KEEP["stations"]:
        return _KEEP["synthesize"](job)
    return {"rows": [], "n_layers": 0, "n_responses": 0, "median_snr": float("nan")}


def make(seed: int, out: Path, n_stations: int, network: Path) -> None:
    """``out/x`` and ``out/zero``: the draw's X stations without noise, with X and with its contrasts zeroed
    (same layering, events, sources); the other stations have no waveforms."""
    inn = _independent_network()
    _KEEP.update(stations=_x_stations(network), synthesize=inn.synthesize_station)
    inn.synthesize_station = _only_x  # a module-level function: the forked workers find it by name
    for name, extra in (("x", {}), ("zero", {"x_dvs": 0.0, "x_dvp": 0.0, "x_drho": 0.0})):
        over = {"base_snr": 1e5, **extra}
        inn.make(out / name, n_stations, seed, workers=2, overrides={i: dict(over) for i in range(n_stations)})


def receiver_functions(seed: int, out: Path, network: Path) -> None:
    """The pipeline's receiver functions of the X stations of both noise-free networks."""
    import yaml

    inn = _independent_network()
    targets = [f"results/rf/{inn.NETWORK}.{s}.nc" for s in sorted(_x_stations(network))]
    for name in ("x", "zero"):
        info = json.loads((out / name / "truth" / "network.json").read_text())
        work = out / f"run_{name}"
        (work / "config").mkdir(parents=True, exist_ok=True)
        for cfg in ("config.yaml", "full.yaml"):
            (work / "config" / cfg).write_text((REPO / "config" / cfg).read_text())
        (work / "my_network.yaml").write_text(yaml.safe_dump(inn.network_config(info), sort_keys=False))
        subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--snakefile",
                        str(REPO / "Snakefile"), "--directory", str(work), "--keep-going", "--configfile",
                        *(str(work / c) for c in ("config/config.yaml", "config/full.yaml", "my_network.yaml"))],
                       check=True)  # snakemake reads config files from the current folder, not --directory


def station_ceiling(noisy, with_x, zero, rng, x_depth_km: float | None = None) -> dict:
    """The clairvoyant statistic of one station (xarray datasets of ``xdisc rf``) and its null; with
    ``x_depth_km`` (the true depth) also that of the clairvoyant that does not know it."""
    events = [e for e in noisy.event.values[noisy.qc_pass.values == 1]
              if e in with_x.event.values and e in zero.event.values]
    if len(events) < 2:
        return {"n_events": len(events), "detected": 0, "detected_unknown_depth": 0, "p_value": 1.0,
                "p_value_unknown_depth": 1.0}
    t = noisy.time.values
    rn, rx, r0 = (d.rf.sel(event=events).values.astype(float) for d in (noisy, with_x, zero))
    noise = rn - rx
    sig2 = noise[:, (t >= 10) & (t <= 110)].var(axis=1)
    w = (t >= WINDOW_S[0]) & (t < WINDOW_S[1])
    s = (rx - r0)[:, w]
    q = s / sig2[:, None]
    statistic = float(np.sum(q * (rn - r0)[:, w]))
    signs = rng.choice([-1.0, 1.0], size=(2000, len(events)))
    null = signs @ np.sum(q * noise[:, w], axis=1)
    out = {"n_events": len(events), "detected": int(statistic > np.quantile(null, 1 - ALPHA)),
           "p_value": float(np.mean(null >= statistic)),
           "signal_rms": float(np.sqrt(np.mean(s ** 2))), "noise_rms": float(np.sqrt(np.median(sig2)))}
    if x_depth_km is None:
        return out
    # the same detector without X's depth: every receiver function's X signal moved to the Ps delay
    # of each trial depth at its own slowness; the largest statistic, against the largest null
    from xdisc.core.earthmodel import load_model
    from xdisc.core.moveout import delay_table

    p = noisy.slowness_s_per_km.sel(event=events).values.astype(float)
    delays = delay_table(load_model("ak135"), np.append(SEARCH_KM, x_depth_km), p)
    lags = np.rint((delays[:, :-1] - delays[:, -1:]) / (t[1] - t[0])).astype(int)  # (event, trial depth)
    full = (rx - r0) / sig2[:, None]
    full[:, ~w] = 0.0  # the template is X's signal inside the X window, as above
    stats, nulls = [], []
    for k in range(lags.shape[1]):
        shifted = np.stack([np.roll(full[i], lags[i, k]) for i in range(len(events))])
        stats.append(float(np.sum(shifted * (rn - r0))))
        nulls.append(signs @ np.sum(shifted * noise, axis=1))
    null_max = np.max(nulls, axis=0)
    out["detected_unknown_depth"] = int(max(stats) > np.quantile(null_max, 1 - ALPHA))
    out["p_value_unknown_depth"] = float(np.mean(null_max >= max(stats)))
    out["depth_found_km"] = float(SEARCH_KM[int(np.argmax(stats))])
    return out


def score(out: Path, network: Path, run: Path) -> dict:
    import pandas as pd
    import xarray as xr

    truth = pd.read_csv(network / "truth" / "truth.csv")
    folder = run / "results" / "verdicts"
    if (folder / "stations.csv").is_file():
        verdicts = pd.read_csv(folder / "stations.csv")
    else:  # a run that stopped at the verdicts (rules predict_stations, collect_stacking_verdicts)
        verdicts = (pd.read_csv(folder / "cnn.csv")[["station", "verdict"]].rename(columns={"verdict": "cnn_verdict"})
                    .merge(pd.read_csv(folder / "stacking.csv")[["station", "verdict"]]
                           .rename(columns={"verdict": "stacking_verdict"}), on="station"))
    rng = np.random.default_rng(0)
    rows = []
    for _, r in truth[truth.x_present == 1].iterrows():
        files = [d / "results" / "rf" / f"{r.station}.nc" for d in (run, out / "run_x", out / "run_zero")]
        if not all(f.is_file() for f in files):
            continue
        with xr.open_dataset(files[0]) as a, xr.open_dataset(files[1]) as b, xr.open_dataset(files[2]) as c:
            rows.append({"station": r.station, "median_snr_z": r.median_snr_z, "events": r.n_events,
                         **station_ceiling(a, b, c, rng, float(r.x_depth_km))})
    table = pd.DataFrame(rows).merge(verdicts[["station", "stacking_verdict", "cnn_verdict"]], on="station")
    hard = (table.median_snr_z < 3) | (table.events <= 15)
    out_json = {"x_stations": len(table), "false_alarm_rate": ALPHA, "window_s": WINDOW_S}
    for name, sel in (("all", np.ones(len(table), bool)), ("snr>=3 and >15 events", ~hard),
                      ("snr<3 or <=15 events", hard)):
        sub = table[sel]
        out_json[name] = {"n": len(sub), "clairvoyant": float(sub.detected.mean()),
                          "clairvoyant_unknown_depth": float(sub.detected_unknown_depth.mean()),
                          "cnn_present": float((sub.cnn_verdict == "present").mean()),
                          "stacking_present": float((sub.stacking_verdict == "present").mean())}
    out_json["station_accuracy_ceiling"] = 0.5 * (1 - ALPHA) + 0.5 * out_json["all"]["clairvoyant"]
    out_json["station_accuracy_ceiling_unknown_depth"] = (0.5 * (1 - ALPHA)
                                                          + 0.5 * out_json["all"]["clairvoyant_unknown_depth"])
    # at other false-alarm rates: a station is detected where its p-value is below the rate; the station
    # accuracy with as many stations without X, each called absent unless a false alarm
    out_json["station_accuracy_ceiling_by_rate"] = {
        f"{rate:g}": {"known_depth": 0.5 * (1 - rate) + 0.5 * float((table.p_value < rate).mean()),
                      "unknown_depth": 0.5 * (1 - rate) + 0.5 * float((table.p_value_unknown_depth < rate).mean())}
        for rate in (0.01, 0.02, 0.05, 0.1)}
    table.to_csv(out / "ceiling.csv", index=False)
    (out / "ceiling.json").write_text(json.dumps(out_json, indent=1))
    print(json.dumps(out_json, indent=1))
    return out_json


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["make", "rf", "score"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True, help="folder of the noise-free networks and runs")
    parser.add_argument("--network", type=Path, required=True, help="the draw made by independent_network.py")
    parser.add_argument("--run", type=Path, help="score: the scored working folder of that draw")
    a = parser.parse_args(argv)
    if a.step == "make":
        make(a.seed, a.out, a.stations, a.network)
    elif a.step == "rf":
        receiver_functions(a.seed, a.out, a.network)
    else:
        if a.run is None:
            parser.error("score needs --run")
        score(a.out, a.network, a.run)


if __name__ == "__main__":
    main()
