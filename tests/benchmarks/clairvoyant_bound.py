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

    # 1. the two noise-free networks of the draw's X stations (about 3 min each on 2 cores)
    python tests/benchmarks/clairvoyant_bound.py make --seed 1 --out /data/bound1
    # 2. their receiver functions through the pipeline (about 8 min each), as a user's archive
    python tests/benchmarks/clairvoyant_bound.py rf --seed 1 --out /data/bound1 --network /data/xs1
    # 3. the ceiling, beside the verdicts of a scored run of the same draw
    python tests/benchmarks/clairvoyant_bound.py score --seed 1 --out /data/bound1 --network /data/xs1 \\
        --run /data/xs1-run

Not part of CI. Results: docs/results/2026-11-30-cnn-transfer.md.
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


def _independent_network():
    spec = importlib.util.spec_from_file_location("independent_network", HERE / "independent_network.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _x_stations(network: Path) -> set[str]:
    with open(network / "truth" / "truth.csv", newline="") as f:
        return {r["station"].split(".")[1] for r in csv.DictReader(f) if r["x_present"] == "1"}


def make(seed: int, out: Path, n_stations: int, network: Path) -> None:
    """``out/x`` and ``out/zero``: the draw's X stations without noise, with X and with its contrasts zeroed
    (same layering, events, sources); the other stations have no waveforms."""
    inn = _independent_network()
    keep = _x_stations(network)
    synthesize = inn.synthesize_station

    def only_x(job):
        if job["station"] in keep:
            return synthesize(job)
        return {"rows": [], "n_layers": 0, "n_responses": 0, "median_snr": float("nan")}

    inn.synthesize_station = only_x
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
                        "config/config.yaml", "config/full.yaml", "my_network.yaml"], check=True)


def station_ceiling(noisy, with_x, zero, rng) -> dict:
    """The clairvoyant statistic of one station (xarray datasets of ``xdisc rf``) and its null."""
    events = [e for e in noisy.event.values[noisy.qc_pass.values == 1]
              if e in with_x.event.values and e in zero.event.values]
    if len(events) < 2:
        return {"n_events": len(events), "detected": 0}
    t = noisy.time.values
    rn, rx, r0 = (d.rf.sel(event=events).values.astype(float) for d in (noisy, with_x, zero))
    noise = rn - rx
    sig2 = noise[:, (t >= 10) & (t <= 110)].var(axis=1)
    w = (t >= WINDOW_S[0]) & (t < WINDOW_S[1])
    s = (rx - r0)[:, w]
    q = s / sig2[:, None]
    statistic = float(np.sum(q * (rn - r0)[:, w]))
    null = rng.choice([-1.0, 1.0], size=(2000, len(events))) @ np.sum(q * noise[:, w], axis=1)
    return {"n_events": len(events), "detected": int(statistic > np.quantile(null, 1 - ALPHA)),
            "signal_rms": float(np.sqrt(np.mean(s ** 2))), "noise_rms": float(np.sqrt(np.median(sig2)))}


def score(out: Path, network: Path, run: Path) -> dict:
    import pandas as pd
    import xarray as xr

    truth = pd.read_csv(network / "truth" / "truth.csv")
    verdicts = pd.read_csv(run / "results" / "verdicts" / "stations.csv")
    rng = np.random.default_rng(0)
    rows = []
    for _, r in truth[truth.x_present == 1].iterrows():
        files = [d / "results" / "rf" / f"{r.station}.nc" for d in (run, out / "run_x", out / "run_zero")]
        if not all(f.is_file() for f in files):
            continue
        with xr.open_dataset(files[0]) as a, xr.open_dataset(files[1]) as b, xr.open_dataset(files[2]) as c:
            rows.append({"station": r.station, "median_snr_z": r.median_snr_z, "events": r.n_events,
                         **station_ceiling(a, b, c, rng)})
    table = pd.DataFrame(rows).merge(verdicts[["station", "stacking_verdict", "cnn_verdict"]], on="station")
    hard = (table.median_snr_z < 3) | (table.events <= 15)
    out_json = {"x_stations": len(table), "false_alarm_rate": ALPHA, "window_s": WINDOW_S}
    for name, sel in (("all", np.ones(len(table), bool)), ("snr>=3 and >15 events", ~hard),
                      ("snr<3 or <=15 events", hard)):
        sub = table[sel]
        out_json[name] = {"n": len(sub), "clairvoyant": float(sub.detected.mean()),
                          "cnn_present": float((sub.cnn_verdict == "present").mean()),
                          "stacking_present": float((sub.stacking_verdict == "present").mean())}
    out_json["station_accuracy_ceiling"] = 0.5 * (1 - ALPHA) + 0.5 * out_json["all"]["clairvoyant"]
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
