"""How firmly the stacking's X peak moves out like a Ps conversion: the share of bootstrap resamples of a
station's events whose vespagram maximum near the peak's Ps time lies in the conversion band (issue 21).

The stacking verdict's moveout check takes the one vespagram's maximum within 1 s of the X peak's Ps time and
asks whether its relative slowness lies between ``conversion_slowness_max_multiple`` and
``conversion_slowness_fraction`` times the Ps slowness from the peak's depth. Noise moves that maximum: a
reverberation whose maximum lies just outside the band without noise passes at SNR 30 now and then. This
diagnostic resamples the events (with replacement, the noise weights of the depth stack, the stacking's seed)
``--bootstrap`` times and reports the share of resamples whose maximum stays in the band, beside each
station's verdict, for xdisc's synthetic stations made as ``crust_stacking.py`` makes them (same seeds, so the
verdicts are that script's ``default`` ones). It changes no verdict and reports the share whatever the
verdict; ``stacking.moveout_bootstrap_share`` is the check built on it.

    python tests/benchmarks/moveout_bootstrap.py --seed 20261201 --samples 300 --x-fraction 0 --snr 30 1000 \
        --out no_x.csv
    python tests/benchmarks/moveout_bootstrap.py --seed 7 --samples 300 --x-fraction 0.5 --snr 30 10 --out mix.csv

Prints, per SNR and share threshold, X found and false alarms by Moho depth (20-30, 30-50, 50-70 km) among
the ``present`` verdicts whose share reaches it. About 45 s per 300 stations and SNR on this machine. Not part of CI.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # crust_stacking.py, beside this script
from crust_stacking import MOHO_CLASSES  # noqa: E402  (the same classes as crust_stacking.py's tables)

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8)


def moveout_share(stacked, norm, time_s, slowness, distance_deg, model, cfg, n_boot) -> float:
    """:func:`xdisc.stack.stacking.moveout_share` of the X peak of ``stacked`` (:func:`xdisc.stack.stacking.
    stack_station` of the receiver functions ``norm``, divided by their direct P), whatever its verdict, with
    the stack's own depth model (its H-kappa crust where it used it), slowness grid and reference distance."""
    from xdisc.core.deconvolution import noise_weights
    from xdisc.core.moveout import delay_table
    from xdisc.stack.stacking import _conversion_range, _ps_relative_slowness, _station_model, array_response
    from xdisc.stack.stacking import moveout_share as share_of

    attrs = stacked.attrs
    x_depth_km = float(attrs["x_depth_km"])
    station_model = _station_model(model, attrs, cfg.get("crust", {}))[0]
    weights = noise_weights(norm, time_s) if cfg["weighting"] == "noise" else np.ones(norm.shape[0])
    ref_dist = float(attrs["reference_distance_deg"])
    t_x = float(delay_table(station_model, [x_depth_km], [float(np.nanmedian(slowness))])[0, 0])
    u_ps = _ps_relative_slowness(station_model, x_depth_km, ref_dist)
    steepest, slowest = _conversion_range(cfg)
    array = array_response(norm, time_s, distance_deg, weights / weights.mean(), ref_dist)
    return share_of(array, stacked["relative_slowness"].values, t_x, (steepest * u_ps, slowest * u_ps), n_boot,
                    cfg["seed"])


def main(argv=None) -> int:
    import pandas as pd
    from crust_stacking import (  # beside this script: the same stations
        add_station_arguments,
        station_receiver_functions,
        synthetic_source,
    )
    from xdisc import config as cfgmod
    from xdisc.core.deconvolution import normalise_by_p
    from xdisc.core.earthmodel import load_model
    from xdisc.stack.stacking import stack_station
    from xdisc.synth.stations import StationDraw

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_station_arguments(ap)
    ap.add_argument("--x-fraction", type=float, help="fraction of the stations with X (synthetics.x_fraction)")
    ap.add_argument("--bootstrap", type=int, default=200, help="event resamples per station")
    ap.add_argument("--out", type=Path, help="per-station CSV")
    a = ap.parse_args(argv)

    config = cfgmod.validate(yaml.safe_load(a.config.read_text()) or {})
    config["synthetics"].update(seed=a.seed, n_samples=a.samples)
    if a.x_fraction is not None:
        config["synthetics"]["x_fraction"] = a.x_fraction
    src, columns = synthetic_source(config)
    moho = columns["moho_km"].astype(float)
    draw = StationDraw.from_config(config["synthetics"], config["cnn"])
    ref = load_model(config["earth_model"])
    cfg = copy.deepcopy(config["stacking"])
    y = src.label.astype(bool)
    rows = []
    for snr in a.snr:
        for i in range(y.size):
            rf, p, dist = station_receiver_functions(src, draw, i, a.seed, snr, a.n_rf)
            stacked = stack_station(rf, src.time_s, p, dist, ref, cfg)
            attrs = stacked.attrs
            share = np.nan
            if np.isfinite(attrs["x_depth_km"]):
                share = moveout_share(stacked, normalise_by_p(rf, src.time_s), src.time_s, p, dist, ref, cfg,
                                      a.bootstrap)
            rows.append({"snr": snr, "sample": i, "x_present": int(y[i]), "moho_km": moho[i],
                         "verdict": attrs["verdict"], "reason": attrs["reason"], "x_depth_km": attrs["x_depth_km"],
                         "x_amp": attrs["x_amp"], "x_snr": attrs["x_snr"], "moveout_share": share})
    table = pd.DataFrame(rows)
    for snr, s in table.groupby("snr"):
        print(f"SNR {snr:g} per trace, {a.n_rf} receiver functions, {len(s)} stations")
        present = s["verdict"] == "present"
        for threshold in THRESHOLDS:
            keep = present & (s["moveout_share"] >= threshold)
            parts = []
            for lo, hi in MOHO_CLASSES:
                in_class = (s["moho_km"] >= lo) & (s["moho_km"] < hi)
                no_x, x = in_class & (s["x_present"] == 0), in_class & (s["x_present"] == 1)
                parts.append(f"{lo}-{hi:.0f} km: false alarms {int((keep & no_x).sum())}/{int(no_x.sum())}, "
                             f"X {int((keep & x).sum())}/{int(x.sum())}")
            print(f"  share >= {threshold:.1f}: " + "; ".join(parts))
    if a.out:
        table.to_csv(a.out, index=False)
        print(f"per-station table: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
