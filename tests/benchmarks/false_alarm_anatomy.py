"""Where does a CNN false alarm come from: the structure, or how the noise lines up with it?

For stations of an independent network (``independent_network.py``) run twice through the pipeline, once
with noise and once made again with ``make --noise-free`` (same events and sources), the difference of
their receiver functions is each event's true radial noise. Scores (the run's adapted network) of: the
real image; the noise-free structure plus the true noise with random polarity per event, or shuffled
across events; the noise-free structure plus the station's transverse noise; and synthetic no-X
structures (the run's test set) plus the true or the transverse noise (what calibration does). Prints,
per kind, the mean probability and the fraction of 40 draws at or above the station's present threshold.
Not part of CI (seconds per station).

    python tests/benchmarks/false_alarm_anatomy.py RUN_DIR NOISE_FREE_RUN_DIR XS.S083 XS.S068 ...
"""

from __future__ import annotations

import argparse
import csv

import numpy as np


def main(argv=None) -> int:
    import torch
    import xarray as xr
    import yaml
    from xdisc import config as cfgmod
    from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
    from xdisc.cnn.module import XClassifier
    from xdisc.cnn.predict import predict_station
    from xdisc.cnn.synthetic_set import SyntheticSource
    from xdisc.core.deconvolution import normalise_by_p
    from xdisc.core.earthmodel import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="working folder of the run with noise")
    ap.add_argument("quiet_run", help="working folder of the noise-free run (receiver functions)")
    ap.add_argument("stations", nargs="+", help="NET.STA codes")
    ap.add_argument("--draws", type=int, default=40)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    run, quiet = a.run, a.quiet_run
    user = {}
    for name in ("config/config.yaml", "config/full.yaml"):
        with open(f"{run}/{name}") as f:
            user.update(yaml.safe_load(f) or {})
    cfg = cfgmod.validate(user)
    settings = ImageSettings.from_config(cfg["images"])
    mapper = DepthMapper(load_model(cfg["earth_model"]), settings.depths_km)
    module = XClassifier.load_from_checkpoint(f"{run}/results/cnn/finetune.ckpt", map_location="cpu").eval()
    with open(f"{run}/results/cnn/station_thresholds.csv") as f:
        threshold = {r["station"]: float(r["present_threshold"]) for r in csv.DictReader(f)}
    test = SyntheticSource.read(f"{run}/results/synthetic/test.nc")
    no_x = np.flatnonzero(test.label == 0)
    rng = np.random.default_rng(0)

    def prob(batch, p, t):
        images = [build_image(normalise_by_p(x, t), t, p, mapper, settings, normalised=True)[0] for x in batch]
        return predict_station(module, np.stack(images))

    def rms(x, mask):
        return float(np.sqrt(np.mean(x[:, mask] ** 2)))

    for code in a.stations:
        noisy = xr.open_dataset(f"{run}/results/rf/{code}.nc")
        calm = xr.open_dataset(f"{quiet}/results/rf/{code}.nc")
        events = sorted(set(noisy.event.values[noisy.qc_pass.values == 1]) & set(calm.event.values))
        t = noisy.time.values
        real = normalise_by_p(noisy.rf.sel(event=events).values.astype(float), t)
        clean = normalise_by_p(calm.rf.sel(event=events).values.astype(float), t)
        p_amp = np.max(np.abs(noisy.rf.sel(event=events).values[:, np.abs(t) < 1]), axis=1)
        transverse = noisy.rf_transverse.sel(event=events).values.astype(float) / p_amp[:, None]
        p = noisy.slowness_s_per_km.sel(event=events).values
        ok = np.all(np.isfinite(real), 1) & np.all(np.isfinite(clean), 1)
        real, clean, transverse, p = real[ok], clean[ok], transverse[ok], p[ok]
        noise = real - clean                       # the true radial noise: same events, same sources
        pre, window = t < -1.5, (t > 25) & (t < 42)
        transverse = transverse * rms(noise, pre) / max(rms(transverse, pre), 1e-9)  # level-matched
        thr = threshold.get(code, 0.5)
        print(f"{code}: {len(p)} events; true noise rms before P {rms(noise, pre):.3f}, X window "
              f"{rms(noise, window):.3f}; transverse {rms(transverse, pre):.3f}, {rms(transverse, window):.3f}; "
              f"present threshold {thr:.2f}")
        signs = rng.choice((-1.0, 1.0), size=(a.draws, len(p), 1))
        shuffles = [rng.permutation(len(p)) for _ in range(a.draws)]
        nearest = np.argmin(np.abs(p[:, None] - test.grid_slowness[None, :]), axis=1)
        synthetic = [normalise_by_p(test.clean[i][nearest].astype(float), test.time_s)
                     for i in rng.choice(no_x, a.draws)]
        kinds = {
            "structure + true noise, flipped": [clean + s * noise for s in signs],
            "structure + true noise, shuffled": [clean + s * noise[q] for s, q in zip(signs, shuffles, strict=True)],
            "structure + transverse": [clean + s * transverse for s in signs],
            "synthetic no-X + true noise": [x + s * noise for x, s in zip(synthetic, signs, strict=True)],
            "synthetic no-X + transverse": [x + s * transverse for x, s in zip(synthetic, signs, strict=True)],
        }
        print(f"   real image: {prob([real], p, t)[0]:.2f}")
        for kind, batch in kinds.items():
            score = prob(batch, p, t)
            print(f"   {kind:34s} mean {np.mean(score):.2f}, at or above the threshold {np.mean(score >= thr):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
