"""The run's network refined on draws deconvolved as each station's data, cross-fitted (``cnn.refine``; ``xdisc
refine-draws``, ``xdisc refine``).

The adaptation (:mod:`xdisc.cnn.adapt`) trains on own-noise stations: noise added after the deconvolution.
The calibration draws (:mod:`xdisc.cnn.redecon`) are made as the data are, noise before the deconvolution,
and only set thresholds. Here the network also learns from such draws, without ever scoring a station with a
network that learnt its draws:

1. :func:`refinement_draws` (rule ``draw_refinement``, per batch of stations, beside ``draw_calibration``):
   per station, the X draws that set its ``absent`` threshold (the samples :func:`xdisc.cnn.adapt.calibrate`
   picks, dVs >= ``absent_dvs``) and ``cnn.refine.training_stations`` training stations from the pretraining
   set (half without X: a third crust-matched, a third look-alikes of X, a third at random; half with X of
   any dVs, half of them crust-matched), all deconvolved as its data (:func:`xdisc.cnn.redecon.redeconvolved`).
2. :func:`refine` (rule ``refine_cnn``): the stations with draws fall into ``folds`` folds (every
   ``folds``-th station of the sorted codes); for each fold, the run's network (``finetune.ckpt``) is
   fine-tuned for ``epochs`` on the *other* folds' training stations, no-X calibration draws and X draws
   (labels as made; X's depth for the depth head), with ``balance_look_alikes`` first resampled so that
   look-alikes of X are as frequent with X as without (:func:`balanced_look_alikes`); with ``interpolation``
   below 1 its weights are then mixed with the run's network's (:func:`interpolated`). Written: one checkpoint
   per fold and the station -> fold table (``folds.csv``).
3. ``xdisc calibrate --refined`` sets a station's thresholds from its no-X and X draws (both deconvolved as
   its data) scored by its fold's network, and ``xdisc predict --refined`` scores its images with the same
   network.

Measured on eleven independent test networks (1100 stations; docs/results/2026-12-06-fresh-checks-of-the-
leads.md): false alarms 9.5 -> 4.9 %, undetermined 8.6 -> 5.5 %, right 76.9 -> 77.1 %; the ranking (AUC) not
better; through the pipeline on two fresh draws the same (docs/results/2026-12-06-cnn-refine-in-the-pipeline.md).
It costs about 12 min per 100 stations on 2 cores (draws 6.5 min, fine-tuning 4.6 min, calibration 1 min).
"""

from __future__ import annotations

import copy
import csv
import logging
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch.utils.data import TensorDataset

from xdisc.cnn.adapt import _checkpoint, draw_files, fit, read_draw_images
from xdisc.cnn.calibration import AdaptSettings, crust_distances, crust_window, read_pools
from xdisc.cnn.folds import FOLDS_FILE, fold_checkpoint, probabilities, read_look_alikes, read_refinement_draws
from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
from xdisc.cnn.module import XClassifier, load_classifier
from xdisc.cnn.redecon import Responses, lqt_incidence, redeconvolved, station_samples, station_seed, with_pre_p
from xdisc.cnn.synthetic_set import LOOK_ALIKE_ATTRS, SyntheticSource
from xdisc.config import config_hash
from xdisc.core import metrics
from xdisc.core.artifacts import (
    as_float32,
    atomic_output,
    provenance_attrs,
    software_versions,
    write_json,
    write_netcdf,
)
from xdisc.core.earthmodel import load_model

log = logging.getLogger(__name__)

# random streams of a station's draws (with its station_seed): the X draws as the benchmark that chose the
# method made them (tests/benchmarks/redecon_adaptation.py), the training stations from seed + TRAIN_SEED_OFFSET
X_STREAM, TRAIN_STREAM, TRAIN_SEED_OFFSET = 37, 41, 77
NEAREST = 50  # crust-matched training stations come from a station's this many nearest samples of each class


def training_samples(pool, source: SyntheticSource, normalised: np.ndarray | None, n: int,
                     rng: np.random.Generator, window_s: tuple) -> np.ndarray:
    """``n`` samples of ``source`` for one station's training draws: half without X (a third of them the
    nearest crusts, a third look-alikes of X, the rest at random), half with X (half of them the nearest
    crusts, the rest at random)."""
    no_x, with_x = np.flatnonzero(source.label == 0), np.flatnonzero(source.label == 1)
    if no_x.size == 0 or with_x.size == 0:
        raise ValueError("the pretraining set needs samples with and without X")
    hard = no_x[source.hard[no_x]] if source.hard is not None else no_x
    hard = hard if hard.size else no_x
    dist = crust_distances(pool, source, window_s, normalised)
    near_n = no_x[np.argsort(dist[no_x])[:NEAREST]] if dist is not None else no_x
    near_x = with_x[np.argsort(dist[with_x])[:NEAREST]] if dist is not None else with_x
    h = n // 2
    nx = np.concatenate([rng.choice(near_n, h // 3), rng.choice(hard, h // 3), rng.choice(no_x, h - 2 * (h // 3))])
    xx = np.concatenate([rng.choice(near_x, (n - h) // 2), rng.choice(with_x, n - h - (n - h) // 2)])
    return np.concatenate([nx, xx]).astype(int)


def balanced_look_alikes(label: np.ndarray, look_alike: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a fine-tuning set resampled so that look-alikes of X are as frequent with X as without: each
    label keeps its size and draws (with replacement where it holds too few) the pooled fraction of look-alikes
    from its look-alikes and the rest from its other images; a label without either kind is kept as it is.
    The no-X draws hold a third (training draws) to a half (calibration draws, ``cnn.adapt.hard_fraction``) of
    look-alikes on purpose, the X draws only the synthetic set's rate: unbalanced, the network learns that
    sediment or a distractor means "no X" and misses X under such crusts."""
    look_alike = np.asarray(look_alike, bool)
    target = float(look_alike.mean())
    pick = []
    for value in (0, 1):
        idx = np.flatnonzero(np.asarray(label) == value)
        hard, easy = idx[look_alike[idx]], idx[~look_alike[idx]]
        n_hard = round(target * idx.size)
        if hard.size == 0 or easy.size == 0:
            pick.append(idx)
            continue
        pick += [rng.choice(hard, n_hard, replace=hard.size < n_hard),
                 rng.choice(easy, idx.size - n_hard, replace=easy.size < idx.size - n_hard)]
    return np.sort(np.concatenate(pick)) if pick else np.zeros(0, int)


def interpolated(refined: dict, run: dict, weight: float) -> dict:
    """The weights ``weight`` x ``refined`` + (1 - ``weight``) x ``run`` (state dicts; the run's network is the one
    the refined network was fine-tuned from): WiSE-FT (Wortsman et al. 2022), a fine-tuned network mixed in weight
    space with its start, which keeps what the fine-tuning learnt and loses less of what the start knew about data
    unlike the fine-tuning set. Integer buffers (batch counts) are the refined network's."""
    return {k: (weight * v + (1.0 - weight) * run[k].to(v.dtype)) if v.is_floating_point() else v
            for k, v in refined.items()}


def _images(resp: Responses, pool, samples: np.ndarray, config: dict, rng: np.random.Generator,
            incidence: np.ndarray | None, mapper: DepthMapper, settings: ImageSettings) -> np.ndarray:
    """Images (draw, channel, bin, depth) of ``samples`` at the station's events, deconvolved as its data."""
    t_out = resp.rf.time_axis()
    if len(samples) == 0:  # no draws (cnn.refine.training_stations 0): an empty stack of images of this shape
        empty = build_image(np.zeros((pool.grid_index.size, t_out.size)), t_out, pool.slowness, mapper, settings,
                            normalised=True)[0]
        return np.zeros((0, *empty.shape), np.float32)
    rfs = redeconvolved(resp, samples, pool.grid_index, pool.pre_p, config["rf_processing"], rng, incidence)
    return np.stack([build_image(x, t_out, pool.slowness, mapper, settings, normalised=True)[0] for x in rfs])


def refinement_draws(config: dict, test_path: str | Path, train_path: str | Path, noise_files: list,
                     out_dir: Path) -> list[Path]:
    """For every station of ``noise_files`` whose pool holds pre-P noise: its X calibration draws (test set)
    and its training draws (pretraining set), deconvolved as its data, written to ``out_dir/NET.STA.nc``.
    The samples keep their own crusts. Stations without pre-P noise or with too few events get no file
    (they are then scored by the run's network, as without ``cnn.refine``)."""
    cfg = config["cnn"]
    a = AdaptSettings.from_config(cfg["adapt"])
    n_train = int(cfg["refine"]["training_stations"])
    settings = ImageSettings.from_config(config["images"])
    mapper = DepthMapper(load_model(config["earth_model"]), settings.depths_km)
    test, train = SyntheticSource.read(test_path), SyntheticSource.read(train_path)
    pools = read_pools(noise_files, test.grid_slowness, test.time_s, int(cfg["verdict"]["min_rf"]), a.noise,
                       True, pre_p=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    test_window = crust_window(test, a.crust_window_s) if a.match_crust else None
    train_window = crust_window(train, a.crust_window_s)
    chosen = []
    for pool in with_pre_p(pools, "refine draws", "it is scored by the run's network"):
        seed = station_seed(int(cfg["seed"]), pool.station)
        train_seed = station_seed(int(cfg["seed"]) + TRAIN_SEED_OFFSET, pool.station)
        x_samples = station_samples(pool, test, a, seed, test_window)[1]
        t_samples = (training_samples(pool, train, train_window, n_train, np.random.default_rng(train_seed),
                                      a.crust_window_s) if n_train else np.zeros(0, int))
        chosen.append((pool, seed, x_samples, train_seed, t_samples))
    if not chosen:
        return []
    x_resp = Responses(test_path, config, np.concatenate([c[2] for c in chosen]))
    t_resp = Responses(train_path, config, np.concatenate([c[4] for c in chosen]))
    incidence_of = lqt_incidence(config)
    sect = {k: config[k] for k in ("receiver_function", "rf_processing", "images", "layering", "earth_model")}
    written = []
    for k, (pool, seed, x_samples, train_seed, t_samples) in enumerate(chosen):
        t0 = time.perf_counter()
        incidence = incidence_of(pool.slowness)
        try:
            x_img = _images(x_resp, pool, x_samples, config, np.random.default_rng([seed, X_STREAM]), incidence,
                            mapper, settings)
            t_img = _images(t_resp, pool, t_samples, config, np.random.default_rng([train_seed, TRAIN_STREAM]),
                            incidence, mapper, settings)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:  # one station: keep the others
            log.warning("refine draws: %s: no draws (%s); it is scored by the run's network", pool.station, err)
            continue
        if not (np.all(np.isfinite(x_img)) and np.all(np.isfinite(t_img))):
            log.warning("refine draws: %s: its draws hold NaN or infinite values; it is scored by the run's "
                        "network", pool.station)
            continue
        dims = ("channel", "slowness_bin", "depth")
        ds = xr.Dataset(
            {"x_image": (("x_draw", *dims), as_float32(x_img),
                         {"long_name": "image of an X calibration draw deconvolved as the station's data"}),
             "x_sample": ("x_draw", x_samples.astype(np.int32), {"long_name": "sample of the synthetic test set"}),
             "x_depth_km": ("x_draw", as_float32([test.depth_target(int(i)) for i in x_samples]),
                            {"long_name": "depth of the X conversion (top + half the gradient)", "units": "km"}),
             "x_look_alike": ("x_draw", test.look_alikes(x_samples), LOOK_ALIKE_ATTRS),
             "train_image": (("train_draw", *dims), as_float32(t_img),
                             {"long_name": "image of a training draw deconvolved as the station's data"}),
             "train_sample": ("train_draw", t_samples.astype(np.int32),
                              {"long_name": "sample of the synthetic pretraining set"}),
             "train_label": ("train_draw", train.label[t_samples].astype(np.int8), {"long_name": "1: X, 0: no X"}),
             "train_depth_km": ("train_draw", as_float32([train.depth_target(int(i)) for i in t_samples]),
                                {"long_name": "depth of the X conversion (NaN: no X)", "units": "km"}),
             "train_look_alike": ("train_draw", train.look_alikes(t_samples), LOOK_ALIKE_ATTRS)},
            coords={"station": ((), pool.station)})
        ds.attrs.update(provenance_attrs(
            title=f"refinement draws of {pool.station}",
            source="xdisc refine-draws: synthetic responses (each sample's own crust) with extended sources plus "
                   "the station's pre-P noise spectra at each event's SNR, deconvolved as xdisc rf",
            seed=seed, config_hash=config_hash(sect)))
        ds.attrs.update(n_events=int(pool.grid_index.size), train_seed=train_seed)
        written.append(write_netcdf(ds, out_dir / f"{pool.station}.nc"))
        log.info("refine draws: %s (%d of %d): %d X draws and %d training draws of %d events in %.1f s",
                 pool.station, k + 1, len(chosen), x_samples.size, t_samples.size, pool.grid_index.size,
                 time.perf_counter() - t0)
    return written


def refine(config: dict, model: str | Path, calibration_draws: list, refine_draws: list, out_dir: Path,
           metrics_path: Path, threads: int = 1) -> dict:
    """One network per fold of the stations with draws, fine-tuned from ``model`` on the other folds' draws
    (see the module's docstring); ``out_dir``: ``fold_K.ckpt`` and :data:`FOLDS_FILE`."""
    cfg = config["cnn"]
    r = cfg["refine"]
    a = AdaptSettings.from_config(cfg["adapt"])
    base = load_classifier(model)
    no_x, mine = draw_files(calibration_draws), draw_files(refine_draws)
    stations = sorted(set(no_x) & set(mine))
    n_folds = int(r["folds"])
    balance = bool(r["balance_look_alikes"])
    weight = float(r["interpolation"])
    fold = {code: k % n_folds for k, code in enumerate(stations)}
    seed = int(cfg["seed"])
    result = {"stage": "refine", "stations": len(stations), "folds": n_folds,
              "settings": dict(r), "seed": seed, "versions": software_versions(("torch", "lightning")),
              "per_fold": []}
    out_dir.mkdir(parents=True, exist_ok=True)
    left = sorted(set(mine) ^ set(no_x))
    if left:
        log.warning("refine: %d station(s) with only one kind of draws are scored by the run's network: %s",
                    len(left), ", ".join(left[:10]) + (" ..." if len(left) > 10 else ""))
    if len(stations) < n_folds:
        log.warning("refine: %d station(s) with draws, fewer than cnn.refine.folds (%d): every station is scored "
                    "by the run's network", len(stations), n_folds)
        result["note"] = "fewer stations with draws than folds: nothing refined"
        fold = {}

    def sample(codes: list, k: int, stream: int) -> list:
        """At most max_stations of ``codes`` (a seeded sample: a global run), in their order."""
        if len(codes) <= int(r["max_stations"]):
            return codes
        pick = np.random.default_rng([seed, stream, k]).permutation(len(codes))[: int(r["max_stations"])]
        return [codes[j] for j in np.sort(pick)]

    for k in range(n_folds if fold else 0):
        t0 = time.perf_counter()
        others = sample([c for c in stations if fold[c] != k], k, 53)  # the stations it learns from
        img, y, depth, alike = [], [], [], []
        for code in others:
            nx, d = read_draw_images(no_x[code]), read_refinement_draws(mine[code])
            img += [d["train_image"], nx, d["x_image"]]
            y += [d["train_label"].astype(float), np.zeros(len(nx)), np.ones(len(d["x_image"]))]
            depth += [d["train_depth_km"], np.full(len(nx), np.nan), d["x_depth_km"]]
            if balance:  # in the order of img: training, no-X, X draws
                t_alike, x_alike = read_look_alikes(mine[code], "train_look_alike", "x_look_alike")
                alike += [t_alike, *read_look_alikes(no_x[code], "look_alike"), x_alike]
        img, y, depth = (np.concatenate(v).astype(np.float32) for v in (img, y, depth))
        n_images, n_with_x = len(y), int(y.sum())
        fold_note = {}
        if balance and any(v is None for v in alike):
            log.warning("refine: fold %d: draw files without look-alike flags (made before they existed): the "
                        "fine-tuning set is not balanced (cnn.refine.balance_look_alikes); rerun the draw rules",
                        k + 1)
            fold_note["look_alikes"] = "not balanced: draw files without look-alike flags"
        elif balance:
            alike = np.concatenate(alike)
            before = [float(alike[y == v].mean()) if (y == v).any() else float("nan") for v in (0, 1)]
            keep = balanced_look_alikes(y, alike, np.random.default_rng([seed, 97, k]))
            img, y, depth, alike = img[keep], y[keep], depth[keep], alike[keep]
            after = [float(alike[y == v].mean()) if (y == v).any() else float("nan") for v in (0, 1)]
            fold_note["look_alikes"] = {"without_x_before": before[0], "with_x_before": before[1],
                                        "without_x": after[0], "with_x": after[1]}
            log.info("refine: fold %d: look-alikes of X %.2f of the draws without X and %.2f of those with X, "
                     "resampled to %.2f and %.2f", k + 1, before[0], before[1], after[0], after[1])
        module = XClassifier(base.hparams.net_config, float(r["learning_rate"]), a.weight_decay, int(r["epochs"]),
                             depth_loss_weight=base.hparams.get("depth_loss_weight", 0.0))
        module.load_state_dict(base.state_dict())
        log.info("refine: fold %d of %d: %d station(s) train (%d images, %d with X) for %d epoch(s); %d are scored",
                 k + 1, n_folds, len(others), len(y), int(y.sum()), int(r["epochs"]),
                 sum(v == k for v in fold.values()))
        fit(module, TensorDataset(*(torch.from_numpy(v) for v in (img, y, depth))), int(r["epochs"]),
            int(r["batch_size"]), seed + 53 + k, threads, f"refine fold {k + 1}")
        module = module.cpu().eval()
        nets = {"run": base, "refined": module}
        if weight < 1.0:  # the fine-tuned weights mixed with the run's network's (WiSE-FT)
            nets["fine-tuned"] = copy.deepcopy(module)
            module.load_state_dict(interpolated(module.state_dict(), base.state_dict(), weight))
            log.info("refine: fold %d: weights %g x fine-tuned + %g x the run's network", k + 1, weight, 1 - weight)
        with atomic_output(fold_checkpoint(out_dir, k)) as tmp:
            torch.save(_checkpoint(module), tmp)
        del img, y, depth
        # the fold's own stations (never learnt; at most max_stations of them): their no-X and X draws, by the
        # run's network and by this one (and, where mixed, by the fine-tuned network before the mix)
        scored = [c for c in stations if fold[c] == k]
        held_y, held_p = [], {name: [] for name in nets}
        for code in sample(scored, k, 59):
            nx, xx = read_draw_images(no_x[code]), read_refinement_draws(mine[code], ("x_image",))["x_image"]
            held_y.append(np.r_[np.zeros(len(nx)), np.ones(len(xx))])
            for name, net in nets.items():
                held_p[name].append(np.r_[probabilities(net, nx), probabilities(net, xx)])
        held = {name: metrics.binary_metrics(np.concatenate(held_y), np.concatenate(p)) for name, p in held_p.items()}
        result["per_fold"].append({"fold": k, "training_stations": len(others), "scored_stations": len(scored),
                                   "images": n_images, "images_with_x": n_with_x, **fold_note,
                                   "seconds": time.perf_counter() - t0, "held_out_draws": held})
        log.info("refine: fold %d of %d in %.0f s; its own stations' draws (not learnt): AUC %.3f (run's network "
                 "%.3f), accuracy %.3f (%.3f)", k + 1, n_folds, time.perf_counter() - t0, held["refined"]["roc_auc"],
                 held["run"]["roc_auc"], held["refined"]["accuracy"], held["run"]["accuracy"])
    with atomic_output(out_dir / FOLDS_FILE) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["station", "fold"])
        w.writerows(sorted(fold.items()))
    result["config_hash"] = config_hash({"cnn": {"refine": r}})
    write_json(result, metrics_path)
    return result
