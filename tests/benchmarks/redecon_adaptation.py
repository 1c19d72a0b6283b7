"""Two what-ifs on a finished run of an independent network: X calibration draws deconvolved like the data, and
the network adapted on draws deconvolved like the data. Results: docs/results/2026-12-01-redecon-adaptation.md,
docs/results/2026-12-05-crust-removal-and-fragile-scores.md (section 5) and
docs/results/2026-12-05-redeconvolved-fine-tuning-cross-fitted.md (cross-fitted).

The run's no-X calibration draws are deconvolved as the station's data (:mod:`xdisc.cnn.redecon`); its X draws
(the ``absent`` threshold) and the adaptation's training stations are *own-noise stations* (noise added after
the deconvolution, :mod:`xdisc.cnn.adapt`). Both could be made like the no-X draws. This script makes them with
the pipeline's own functions from the run's noise pools (which hold each event's pre-P noise) and scores the
verdicts against the network's hidden truth, without rerunning the pipeline:

1. ``draws``: per station, the X samples (dVs >= ``absent_dvs``) of the synthetic test set that ``xdisc
   calibrate`` scores as own-noise stations (with ``match_crust`` the nearest crusts), redeconvolved; and
   ``--train`` training stations (half without X: a third of them crust-matched, a third look-alikes of X,
   a third at random; half with X of any dVs, half of them crust-matched) from the pretraining set,
   redeconvolved. Images saved per station (about 5 s per station
   for 40 draws on one core).
2. ``score``: fine-tunes the run's network (``results/cnn/finetune.ckpt``) on the training images for
   ``--epochs`` (0: as it is), then per station: the real score of image 0, thresholds from the run's
   redeconvolved no-X draws and the redeconvolved X draws (the pipeline's conformal order statistics;
   ``absent`` uncapped as in the pipeline since 2026-12-02, ``--cap`` caps it below 0.5 as before; the
   ``miss_rate`` of the run's settings), the verdict against the truth; and the AUC of the real
   scores (all stations with at least `cnn.verdict.min_rf` receiver functions, and those with median SNR > 6).
   ``--with-calibration-draws`` fine-tunes on the stations' calibration draws too (the run's no-X draws and
   the X draws of step 1, labelled as made); ``--folds K`` cross-fits: the stations fall in K folds (every
   K-th station), and each fold is scored, real image and draws, by a network fine-tuned on the other
   folds' stations only, so that no station's verdict rests on draws the network learnt.

    python tests/benchmarks/redecon_adaptation.py draws --run /data/xs1-run --out /data/rda1 --train 24
    python tests/benchmarks/redecon_adaptation.py score --network /data/xs1 --run /data/xs1-run --draws /data/rda1
    python tests/benchmarks/redecon_adaptation.py score --network /data/xs1 --run /data/xs1-run --draws /data/rda1 \\
        --epochs 2 --learning-rate 3e-4
    python tests/benchmarks/redecon_adaptation.py score --network /data/xs1 --run /data/xs1-run --draws /data/rda1 \\
        --epochs 8 --folds 2 --with-calibration-draws

The cross-fitted fine-tuning (``--folds 2 --with-calibration-draws``) is built into the pipeline as
``cnn.refine`` (:mod:`xdisc.cnn.refine`, which this script's training stations now come from).

Not part of CI.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redecon_calibration import _config


def _seed(config: dict, station: str, offset: int = 0) -> int:
    from xdisc.cnn.redecon import station_seed

    return station_seed(int(config["cnn"]["seed"]) + offset, station)


def _redeconvolved_images(config, set_path, chosen, out: Path, name: str, stream: int, extra) -> None:
    """Redeconvolved images of ``chosen`` (pool, samples, seed) per station, to ``out/name/NET.STA.npz``."""
    from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
    from xdisc.cnn.redecon import Responses, redeconvolved
    from xdisc.core.earthmodel import load_model

    settings = ImageSettings.from_config(config["images"])
    mapper = DepthMapper(load_model(config["earth_model"]), settings.depths_km)
    resp = Responses(set_path, config, np.concatenate([c[1] for c in chosen]))
    t_out = resp.rf.time_axis()
    (out / name).mkdir(parents=True, exist_ok=True)
    for pool, samples, seed in chosen:
        t0 = time.perf_counter()
        rfs = redeconvolved(resp, samples, pool.grid_index, pool.pre_p, config["rf_processing"],
                            np.random.default_rng([seed, stream]))
        images = np.stack([build_image(x, t_out, pool.slowness, mapper, settings, normalised=True)[0] for x in rfs])
        np.savez(out / name / f"{pool.station}.npz", image=images.astype(np.float32), samples=samples,
                 **extra(samples))
        print(f"{name} {pool.station}: {samples.size} draws in {time.perf_counter() - t0:.1f} s", flush=True)


def draws(argv) -> int:
    from xdisc.cnn.calibration import AdaptSettings, crust_window, read_pools
    from xdisc.cnn.redecon import station_samples
    from xdisc.cnn.refine import training_samples
    from xdisc.cnn.synthetic_set import SyntheticSource

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=24, help="training stations per station (0: none)")
    ap.add_argument("--part", default="0/1", help="k/n: every n-th station from k")
    a = ap.parse_args(argv)
    config = _config(a.run)
    cfg = config["cnn"]
    ad = AdaptSettings.from_config(cfg["adapt"])
    k, n = (int(v) for v in a.part.split("/"))
    noise = sorted((a.run / "results/noise").glob("*.nc"))[k::n]
    test_path, train_path = (str(a.run / f"results/synthetic/{s}.nc") for s in ("test", "pretrain"))
    test = SyntheticSource.read(test_path)
    pools = read_pools(noise, test.grid_slowness, test.time_s, int(cfg["verdict"]["min_rf"]), ad.noise, True,
                       pre_p=True)
    chosen = []
    for pool in pools:  # the X samples xdisc calibrate scores for this station
        seed = _seed(config, pool.station)
        chosen.append((pool, station_samples(pool, test, ad, seed)[1], seed))
    _redeconvolved_images(config, test_path, chosen, a.out, "x_draws", 37, lambda s: {"x_dvs": test.x_dvs[s]})
    if a.train > 0:
        train = SyntheticSource.read(train_path)
        normalised = crust_window(train, ad.crust_window_s)
        chosen = []
        for pool in pools:
            seed = _seed(config, pool.station, 77)
            samples = training_samples(pool, train, normalised, a.train, np.random.default_rng(seed),
                                       ad.crust_window_s)
            chosen.append((pool, samples, seed))
        _redeconvolved_images(config, train_path, chosen, a.out, "train", 41, lambda s: {
            "label": train.label[s], "depth": np.array([float(train.depth_target(int(i))) for i in s])})
    return 0


def score(argv) -> int:
    import lightning as L
    import pandas as pd
    import torch
    from sklearn.metrics import roc_auc_score
    from torch.utils.data import DataLoader, TensorDataset
    from xdisc.cnn.adapt import draw_files, read_draw_images
    from xdisc.cnn.calibration import AdaptSettings, station_thresholds
    from xdisc.cnn.datasets import read_station_images
    from xdisc.cnn.module import XClassifier
    from xdisc.core.artifacts import open_netcdf

    ap = argparse.ArgumentParser()
    ap.add_argument("--network", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--draws", type=Path, required=True, help="--out of the draws step")
    ap.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs on the training draws (0: none)")
    ap.add_argument("--learning-rate", type=float, default=3e-4)
    ap.add_argument("--own-noise-x", action="store_true", help="the run's own absent thresholds (own-noise X draws)")
    ap.add_argument("--cap", action="store_true", help="absent threshold capped below 0.5 (the pipeline before "
                    "2026-12-02)")
    ap.add_argument("--no-cap", action="store_true", help="absent threshold not capped at 0.5: the default since "
                    "2026-12-02 (kept so that recorded commands run)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--folds", type=int, default=1, help="cross-fitting: the stations in this many folds; each is "
                    "scored by a network fine-tuned on the other folds' stations only (1: one network for all)")
    ap.add_argument("--with-calibration-draws", action="store_true", help="fine-tune also on the stations' no-X "
                    "calibration draws (the run's) and X draws (the draws step's), with --folds >= 2 never on those "
                    "of the station being scored")
    ap.add_argument("--out", type=Path, help="CSV of per-station results")
    a = ap.parse_args(argv)
    if a.folds < 1:
        ap.error("--folds must be at least 1")
    torch.set_num_threads(1)
    config = _config(a.run)
    settings = AdaptSettings.from_config(config["cnn"]["adapt"])
    base = XClassifier.load_from_checkpoint(str(a.run / "results/cnn/finetune.ckpt"), map_location="cpu")
    truth = pd.read_csv(a.network / "truth/truth.csv").set_index("station")
    no_x = draw_files(sorted((a.run / "results/calibration").glob("*")))
    run_thresholds = pd.read_csv(a.run / "results/cnn/station_thresholds.csv").set_index("station")
    min_rf = int(config["cnn"]["verdict"]["min_rf"])
    # stations with both kinds of draws; fold k of --folds: every folds-th of them from k
    stations = sorted(c for c in no_x if (a.draws / "x_draws" / f"{c}.npz").exists())
    fold = {c: k % a.folds for k, c in enumerate(stations)}  # with one fold: every station in fold 0
    x_depth = None
    if a.with_calibration_draws:
        with open_netcdf(a.run / "results/synthetic/test.nc") as ds:
            x_depth = ds["x_depth_km"].values.astype(float) + 0.5 * np.nan_to_num(ds["x_gradient_km"].values)

    def training_set(skip: int):
        """Images, labels, X depths of every station outside fold ``skip``: its training stations and (with
        --with-calibration-draws) its no-X and X calibration draws."""
        img, y, depth = [], [], []
        everyone = a.folds == 1 and not a.with_calibration_draws  # as before cross-fitting: every station
        for code in sorted(f.stem for f in (a.draws / "train").glob("*.npz")):
            if not everyone and (code not in fold or (a.folds > 1 and fold[code] == skip)):
                continue  # a station without draws of both kinds, or one of the fold being scored
            t = np.load(a.draws / "train" / f"{code}.npz")
            img.append(t["image"]), y.append(t["label"]), depth.append(t["depth"])
            if a.with_calibration_draws:
                nx, xf = read_draw_images(no_x[code]), np.load(a.draws / "x_draws" / f"{code}.npz")
                img += [nx, xf["image"]]
                y += [np.zeros(len(nx)), np.ones(len(xf["image"]))]
                depth += [np.full(len(nx), np.nan), x_depth[xf["samples"]]]
        return (np.concatenate(v).astype(np.float32) for v in (img, y, depth))

    models = {k: base for k in range(a.folds)}
    for k in range(a.folds if a.epochs > 0 else 0):
        img, y, depth = training_set(k)
        module = XClassifier(base.hparams.net_config, a.learning_rate, settings.weight_decay, a.epochs,
                             depth_loss_weight=base.hparams.get("depth_loss_weight", 0.0))
        module.load_state_dict(base.state_dict())
        L.seed_everything(a.seed + k, workers=True, verbose=False)
        loader = DataLoader(TensorDataset(*(torch.from_numpy(v) for v in (img, y, depth))), batch_size=64,
                            shuffle=True, generator=torch.Generator().manual_seed(a.seed + k))
        L.Trainer(max_epochs=a.epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                  deterministic=True).fit(module, train_dataloaders=loader)
        module.eval()
        models[k] = module
        print(f"fold {k + 1} of {a.folds}: fine-tuned on {len(y)} redeconvolved images ({int(y.sum())} with X)")

    def prob(images, code):
        module = models[fold.get(code, 0)]
        module.eval()
        with torch.no_grad():
            return module.probability(torch.from_numpy(np.asarray(images, np.float32))).numpy().astype(float)

    rows = []
    for path in sorted((a.run / "results/images").glob("*.nc")):
        st = read_station_images(path)
        code = st["station"]
        t = truth.loc[code]
        row = {"station": code, "x_present": int(t["x_present"]), "median_snr_z": float(t["median_snr_z"]),
               "n_rf": int(st["n_rf_station"]),
               "real": prob(st["images"][:1], code)[0] if len(st["images"]) else np.nan,
               "verdict": "undetermined"}
        x_file = a.draws / "x_draws" / f"{code}.npz"
        if code in no_x and x_file.exists() and row["n_rf"] >= min_rf:
            th = station_thresholds(prob(read_draw_images(no_x[code]), code), prob(np.load(x_file)["image"], code),
                                    settings)
            if a.own_noise_x:
                th["absent_threshold"] = float(run_thresholds.loc[code, "absent_threshold"])
            elif a.cap:
                th["absent_threshold"] = float(min(th["absent_threshold"], np.nextafter(0.5, 0.0)))
            row.update(th)
            row["verdict"] = ("present" if row["real"] >= th["present_threshold"] else "absent"
                              if row["real"] <= th["absent_threshold"] else "undetermined")
        rows.append(row)
    m = pd.DataFrame(rows)
    truth_v = np.where(m.x_present == 1, "present", "absent")
    ok = (m.n_rf >= min_rf) & np.isfinite(m.real)
    good = ok & (m.median_snr_z > 6)
    print(f"{a.network.name}: accuracy {np.mean(m.verdict == truth_v):.0%}, false alarms "
          f"{np.mean(m.verdict[truth_v == 'absent'] == 'present'):.0%}, misses "
          f"{np.mean(m.verdict[truth_v == 'present'] == 'absent'):.0%}, undetermined "
          f"{np.mean(m.verdict == 'undetermined'):.0%}; AUC of the real scores "
          f"{roc_auc_score(m.x_present[ok], m.real[ok]):.3f}"
          f" ({ok.sum()} stations), {roc_auc_score(m.x_present[good], m.real[good]):.3f} at median SNR > 6 "
          f"({good.sum()})")
    if a.out:
        m.to_csv(a.out, index=False)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("draws", "score"):
        print(__doc__)
        return 2
    return {"draws": draws, "score": score}[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
