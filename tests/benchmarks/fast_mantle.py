"""Does the CNN call X because the mantle is fast? (not part of the test suite)

    python tests/benchmarks/fast_mantle.py [--checkpoint CKPT --temperature T] [--samples 600] [--out mantle.json]

The real upper mantle is a few per cent faster (cratons) or slower (tectonic regions, hotspots) in S
than AK135, the model the images are migrated with: then every conversion from below the Moho (X, the
410, the 660) arrives earlier or later, and the 410 and 660 sit shallower or deeper in the image. A
detector of X must not read that as X. For each mantle below, the canonical synthetic test set
(config/config.yaml + config/shipped.yaml: same seed, size and parameters, every sample's mantle
changed alike through ``synthetics.upper_mantle``, range [v, v]) is made again and scored as
``xdisc evaluate`` scores it (one held-out synthetic station per sample). Printed per mantle: stations
without X called X at probability >= 0.5 and >= 0.9 (``cnn.adapt.present_probability``), their median
probability, and X found at 0.5 and 0.9. Defaults: the shipped network and its temperature.

About 30 s per mantle on 2 cores (600 stations).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from xdisc import config as cfgmod
from xdisc.cnn import shipped
from xdisc.cnn.datasets import held_out_images
from xdisc.cnn.images import ImageSettings
from xdisc.cnn.module import load_classifier, logits_of
from xdisc.cnn.synthetic_set import SyntheticSource
from xdisc.core.artifacts import write_netcdf
from xdisc.synth.stations import StationDraw
from xdisc.synth.synthetics import make_dataset

ROOT = Path(__file__).resolve().parents[2]
# (name, S change just below the Moho, S change at the 410 and below); P changes by half as much
MANTLES = (("reference (AK135, IASP91, PREM)", 0.0, 0.0),
           ("2 % fast, Moho to 800 km", 0.02, 0.02),
           ("2 % slow, Moho to 800 km", -0.02, -0.02),
           ("craton-like: 3 % fast below the Moho, 1 % at the 410", 0.03, 0.01),
           ("tectonic: 3 % slow below the Moho, 1 % at the 410", -0.03, -0.01))


def test_config() -> dict:
    """The canonical test set's configuration (the test set of `snakemake ship_pretrained_cnn`)."""
    import yaml

    raw = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    raw = cfgmod.deep_merge(raw, yaml.safe_load((ROOT / "config/shipped.yaml").read_text()))
    cfg = cfgmod.validate(raw)
    cfg["synthetics"] = cfgmod.held_out_synthetics(cfg["synthetics"])
    return cfg


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(shipped.CHECKPOINT))
    ap.add_argument("--temperature", type=float, default=None,
                    help="the network's temperature (default: the shipped network's, from xnet.json)")
    ap.add_argument("--samples", type=int, default=None, help="stations per mantle (default: the test set's 600)")
    ap.add_argument("--dvp-ratio", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", default=None, help="JSON with the numbers")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    temperature = args.temperature
    if temperature is None:
        temperature = float(shipped.provenance()["training"]["temperature"])
    cfg = test_config()
    if args.samples:
        cfg["synthetics"]["n_samples"] = args.samples
    module = load_classifier(args.checkpoint)
    settings = ImageSettings.from_config(cfg["images"])
    draw = StationDraw.from_config(cfg["synthetics"], cfg["cnn"])
    out = {"checkpoint": args.checkpoint, "temperature": temperature, "mantles": []}
    print(f"{'mantle':55s} {'no X: p>=0.5':>12s} {'p>=0.9':>7s} {'median p':>8s} | {'X: p>=0.5':>9s} {'p>=0.9':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, top, at410 in MANTLES:
            cfg["synthetics"]["upper_mantle"] = {"dvs_below_moho": [top, top], "dvs_at_410": [at410, at410],
                                                 "dvp_ratio": [args.dvp_ratio, args.dvp_ratio]}
            path = Path(tmp) / "set.nc"
            write_netcdf(make_dataset(cfg, n_jobs=args.threads), path)
            data = held_out_images(SyntheticSource.read(path), settings, draw, cfg["earth_model"], cfg["cnn"]["seed"])
            logits, y = logits_of(module, data)
            p = 1.0 / (1.0 + np.exp(-logits / temperature))
            row = {"mantle": name, "dvs_below_moho": top, "dvs_at_410": at410,
                   "false_alarms_05": float(np.mean(p[y == 0] >= 0.5)),
                   "false_alarms_09": float(np.mean(p[y == 0] >= 0.9)),
                   "median_p_without_x": float(np.median(p[y == 0])),
                   "found_05": float(np.mean(p[y == 1] >= 0.5)), "found_09": float(np.mean(p[y == 1] >= 0.9)),
                   "n_without_x": int(np.sum(y == 0)), "n_with_x": int(np.sum(y == 1))}
            out["mantles"].append(row)
            print(f"{name:55s} {row['false_alarms_05']:12.3f} {row['false_alarms_09']:7.3f} "
                  f"{row['median_p_without_x']:8.3f} | {row['found_05']:9.3f} {row['found_09']:7.3f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
