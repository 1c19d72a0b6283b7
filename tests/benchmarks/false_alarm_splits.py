"""The CNN's false alarms per per-trace SNR level over many calibration / scoring splits: the protocol of
``xdisc evaluate`` (the same test stations, seeds and per-level conformal thresholds from a seeded half),
CNN only (no stacking: about 1 min instead of 18), for two networks on the same stations.

    python tests/benchmarks/false_alarm_splits.py OLD.ckpt NEW.ckpt --test TEST.nc [--config config/full.yaml]
        [--splits 300] [--out fa_splits.json]

``xdisc evaluate`` reports one split; with about 147 stations without X scored per level, one split's rate
scatters by about 2 points around what the conformal thresholds promise (at most 5 % in expectation), so
one level above 5 % in one split says little. This script gives the mean over ``--splits`` splits, its
95th percentile, and the share of splits above 5 %, per level. Not part of the test suite.
"""
import argparse
import json
import time

import numpy as np
from xdisc import config as cfgmod
from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
from xdisc.cnn.module import load_classifier
from xdisc.cnn.predict import predict_station
from xdisc.core.earthmodel import load_model
from xdisc.evaluate import evaluation_samples, evaluation_stations, level_verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="checkpoint of the first network")
    ap.add_argument("new", help="checkpoint of the second network")
    ap.add_argument("--test", required=True, help="synthetic test set (the canonical one: xdisc synth, seed + 1)")
    ap.add_argument("--config", default="config/full.yaml", help="configuration (cnn.evaluation: SNR levels, n_rf)")
    ap.add_argument("--samples", type=int, default=600, help="test samples (cnn.evaluation.max_samples)")
    ap.add_argument("--splits", type=int, default=300, help="calibration / scoring splits")
    ap.add_argument("--out", default="fa_splits.json")
    args = ap.parse_args()
    config = cfgmod.load(args.config, {"cnn": {"evaluation": {"max_samples": args.samples}}})
    ev = config["cnn"]["evaluation"]
    src, _ = evaluation_samples(args.test, config)  # the samples and stations of xdisc evaluate
    settings = ImageSettings.from_config(config["images"])
    mapper = DepthMapper(load_model(config["earth_model"]), settings.depths_km)
    seed = config["cnn"]["seed"] + 3
    n = src.label.size
    models = {name: load_classifier(p) for name, p in [("old", args.old), ("new", args.new)]}
    prob = {k: np.full((len(ev["snr_levels"]), n), np.nan) for k in models}
    t0 = time.perf_counter()
    for a, i, rf, p in evaluation_stations(src, config, seed):
        img = build_image(rf, src.time_s, p, mapper, settings)[0][None]
        for k, m in models.items():
            prob[k][a, i] = predict_station(m, img)[0]
        if i == n - 1:
            print(f"SNR {ev['snr_levels'][a]}: {n} stations scored ({time.perf_counter() - t0:.0f} s)", flush=True)
    y = src.label.astype(bool)
    out = {}
    for k in models:
        first = level_verdicts(prob[k], y, src.x_dvs, config["cnn"]["adapt"], seed)
        splits = [level_verdicts(prob[k], y, src.x_dvs, config["cnn"]["adapt"], s)
                  for s in range(1000, 1000 + args.splits)]
        fa = np.array([v["false_alarm"] for v in splits])
        det = np.array([v["detection"] for v in splits])
        out[k] = {"evaluate_split_false_alarm": first["false_alarm"], "mean_false_alarm": fa.mean(0).tolist(),
                  "p95_false_alarm": np.quantile(fa, 0.95, axis=0).tolist(),
                  "share_above_5pct": (fa > 0.05).mean(0).tolist(), "mean_detection": det.mean(0).tolist()}
        print(k, json.dumps({kk: [round(v, 3) for v in vv] for kk, vv in out[k].items()}))
    with open(args.out, "w") as f:
        json.dump({"snr_levels": ev["snr_levels"], "splits": args.splits, **out}, f, indent=1)


if __name__ == "__main__":
    main()
