"""The CNN adapted to the stations being judged (``xdisc adapt``), and each station's own thresholds
(``xdisc calibrate``).

A network pretrained on synthetic noise ranks real stations well but its probabilities shift with the
noise it meets. Neither step needs labels. Both build **own-noise stations**: a synthetic sample's
noise-free receiver functions (with or without X), taken at the slownesses of one real station's
events, plus that station's own receiver-function noise (its noise pool, :mod:`xdisc.synth.noise_pool`:
transverse receiver functions of its events, shuffled across events with random sign), imaged exactly
as the station's real data.

* :func:`adapt` fine-tunes the pretrained network on own-noise stations of every station of the run
  (training samples of the synthetic set, fresh shuffles every epoch) and reports how the pretrained
  and the adapted network score held-out own-noise stations.
* :func:`calibrate` scores, for every station, ``calibration_draws`` own-noise stations without X and
  as many with X of dVs >= ``absent_dvs`` (samples of the separately seeded synthetic test set, none
  seen in training) with the final model, and sets the station's thresholds: ``present`` needs a
  probability at or above ``present_probability`` (0.9, the same at every station; the share of the
  station's no-X draws that reach it is reported), or, where that is None, at or above the conformal
  ``1 - false_alarm_rate`` order statistic of that station's own no-X scores (its false-alarm rate is
  bounded where it was measured: on its own noise, slownesses and number of events), and at least 0.5;
  ``absent`` needs one at or below the ``miss_rate`` order
  statistic of its scores with X (X of that size would have scored higher), whether or not that is
  below 0.5; ``present`` is checked first. In between: ``undetermined``.
* With ``match_crust``, a station's calibration draws are the samples whose crustal part
  (``crust_window_s`` around P: direct P, sediment and Moho conversions, the first multiples) is
  closest to the station's own mean receiver function at each slowness, so that a station on
  sediments or a thick crust is calibrated on reverberations like its own; and :func:`adapt` draws
  half of its training samples from each station's nearest crusts.

The verdict statistic is the probability of the station's image of every receiver function
(image 0): the image whose distribution the calibration measures.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from xdisc.cnn.calibration import (
    NO_X_DRAWS,
    AdaptSettings,
    Pool,
    calibration_pairs,
    crust_distances,
    crust_window,
    read_pools,
    station_thresholds,
)
from xdisc.cnn.folds import RUN_NETWORK, fold_networks, judging_network, probabilities, read_refinement_draws
from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
from xdisc.cnn.module import XClassifier, logits_of
from xdisc.cnn.synthetic_set import SyntheticSource
from xdisc.config import CALIBRATION_DRAW_KEYS, CNN_THRESHOLD_KEYS
from xdisc.core import metrics
from xdisc.core.artifacts import atomic_output, open_netcdf, software_versions, write_csv, write_json
from xdisc.core.deconvolution import normalise_by_p
from xdisc.core.earthmodel import load_model

log = logging.getLogger(__name__)

CALIBRATION_COLUMNS = ("station", "n_rf", "present_threshold", "absent_threshold", "false_alarm_rate",
                       "detection_rate", "miss_rate", "n_draws", "no_x_draws", "x_draws", "network")


def own_noise_image(clean: np.ndarray, grid_slowness: np.ndarray, pool: Pool, rng: np.random.Generator,
                    time_s: np.ndarray, mapper: DepthMapper, settings: ImageSettings,
                    subset_fraction: float | None = None) -> np.ndarray:
    """Image of one own-noise station: ``clean`` (slowness, time) noise-free receiver functions of a
    synthetic sample at the station's event slownesses, normalised by their direct P, plus the station's
    noise traces shuffled across events with random sign; optionally a random subset of the events."""
    traces = normalise_by_p(np.asarray(clean, float)[pool.grid_index], time_s)
    n = traces.shape[0]
    sign = rng.choice((-1.0, 1.0), size=n)[:, None]
    rf = traces + sign * pool.noise[rng.permutation(n)]
    p = np.asarray(grid_slowness, float)[pool.grid_index]
    if subset_fraction is not None:
        sel = np.sort(rng.choice(n, size=max(settings.min_rf, round(subset_fraction * n)), replace=False))
        rf, p = rf[sel], p[sel]
    return build_image(rf, time_s, p, mapper, settings)[0]


class OwnNoiseImages(Dataset):
    """Own-noise station images: item j pairs station ``pairs[j][0]`` with sample ``pairs[j][1]`` of
    ``source``; a fresh noise shuffle (and subset) per epoch unless ``fixed``."""

    def __init__(self, source: SyntheticSource, pools: list[Pool], pairs: np.ndarray, settings: ImageSettings,
                 model_name: str, seed: int, subset_probability: float = 0.0, subset_fraction: float = 0.7,
                 fixed: bool = False):
        self.source, self.pools, self.pairs = source, pools, np.asarray(pairs, int).reshape(-1, 2)
        self.settings, self.model_name, self.seed = settings, model_name, seed
        self.subset_probability, self.subset_fraction, self.fixed = subset_probability, subset_fraction, fixed
        self.epoch = 0
        self._mapper: DepthMapper | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, j: int):
        if self._mapper is None:
            self._mapper = DepthMapper(load_model(self.model_name), self.settings.depths_km)
        s, i = (int(v) for v in self.pairs[j])
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch, j])
        subset = self.subset_fraction if rng.random() < self.subset_probability else None
        img = own_noise_image(self.source.clean[i], self.source.grid_slowness, self.pools[s], rng,
                              self.source.time_s, self._mapper, self.settings, subset)
        label, depth = float(self.source.label[i]), self.source.depth_target(i)
        return torch.from_numpy(img), torch.tensor(label), torch.tensor(depth)


class _Epochs(L.Callback):
    def __init__(self, label: str):
        self.label, self.t0 = label, time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        loss = float(trainer.callback_metrics.get("train/loss", math.nan))
        log.info("%s epoch %d/%d: train loss %.4f (%.0f s)", self.label, trainer.current_epoch + 1,
                 trainer.max_epochs, loss, time.perf_counter() - self.t0)


def _training_pairs(pools: list[Pool], source: SyntheticSource, n: int, seed: int,
                    crust_window_s: tuple | None = None, nearest: int = 50) -> np.ndarray:
    """``n`` (station, sample) pairs: stations in turn, samples at random; with ``crust_window_s``,
    half of each station's samples come from its ``nearest`` crusts of each class
    (:func:`crust_distances`), so that the network also learns this station's reverberations under its
    own noise, with and without X."""
    rng = np.random.default_rng([seed, 21])
    stations = np.arange(n) % len(pools)
    samples = rng.integers(0, source.label.size, n)
    if crust_window_s is None:
        return np.stack([stations, samples], axis=1)
    normalised = crust_window(source, crust_window_s)
    matched = rng.random(n) < 0.5
    classes = [np.flatnonzero(source.label == c) for c in (0, 1)]
    for s, pool in enumerate(pools):
        dist = crust_distances(pool, source, crust_window_s, normalised)
        mine = np.flatnonzero((stations == s) & matched)
        if dist is None or mine.size == 0:
            continue
        near = [idx[np.argsort(dist[idx], kind="stable")[:nearest]] for idx in classes if idx.size]
        pick = rng.integers(0, len(near), mine.size)
        samples[mine] = [near[c][rng.integers(0, near[c].size)] for c in pick]
    return np.stack([stations, samples], axis=1)


def fit(module: XClassifier, data, epochs: int, batch_size: int, seed: int, threads: int, label: str) -> None:
    """Fine-tune ``module`` in place on ``data`` (a dataset of image, label, depth), reproducibly: seeded
    shuffles, deterministic kernels, no validation, one log line per epoch (``label``)."""
    torch.set_num_threads(max(1, threads))
    L.seed_everything(seed, workers=True, verbose=False)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    trainer = L.Trainer(max_epochs=epochs, accelerator="auto", devices=1, deterministic=True, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[_Epochs(label)])
    trainer.fit(module, train_dataloaders=loader)


def adapt(config: dict, pretrained: str | Path, train_path: str, test_path: str, noise_files: list, out: Path,
          metrics_path: Path, threads: int = 1) -> dict:
    """Fine-tune the pretrained network on own-noise stations of the run; report how both networks score
    held-out own-noise stations (synthetic test set) of every station."""
    cfg = config["cnn"]
    a = AdaptSettings.from_config(cfg["adapt"])
    settings = ImageSettings.from_config(config["images"])
    train, test = SyntheticSource.read(train_path), SyntheticSource.read(test_path)
    pools = read_pools(noise_files, train.grid_slowness, train.time_s, int(cfg["verdict"]["min_rf"]), a.noise,
                       a.match_crust)
    base = XClassifier.load_from_checkpoint(str(pretrained), map_location="cpu")
    seed = int(cfg["seed"])
    result = {"stage": "adapt", "stations": len(noise_files), "stations_with_noise": len(pools),
              "settings": {k: v for k, v in a.__dict__.items()
                           if k not in CNN_THRESHOLD_KEYS + CALIBRATION_DRAW_KEYS},
              "seed": seed, "versions": software_versions(("torch", "lightning"))}
    if not a.enabled or not pools or a.epochs == 0:
        why = ("cnn.adapt.enabled is false" if not a.enabled else "cnn.adapt.epochs is 0" if a.epochs == 0
               else "no station has enough noise traces (cnn.verdict.min_rf)")
        log.warning("adapt: %s: the adapted model is the pretrained one", why)
        result["note"] = f"{why}: adapted model = pretrained model"
        with atomic_output(out) as tmp:
            torch.save(_checkpoint(base), tmp)
        write_json(result, metrics_path)
        return result
    train_pools = pools
    if len(pools) > a.max_stations:  # a global run: a seeded sample of stations trains
        keep = np.sort(np.random.default_rng([seed, 29]).permutation(len(pools))[: a.max_stations])
        train_pools = [pools[k] for k in keep]
    module = XClassifier(base.hparams.net_config, a.learning_rate, a.weight_decay, a.epochs,
                         depth_loss_weight=base.hparams.get("depth_loss_weight", 0.0))
    module.load_state_dict(base.state_dict())
    pairs = _training_pairs(train_pools, train, a.images_per_epoch, seed, a.crust_window_s if a.match_crust else None)
    data = OwnNoiseImages(train, train_pools, pairs, settings, config["earth_model"], seed, a.subset_probability,
                          settings.subset_fraction)
    log.info("adapt: %d station(s) with their own noise (%d train), %d images per epoch, %d epoch(s)",
             len(pools), len(train_pools), a.images_per_epoch, a.epochs)
    t0 = time.perf_counter()
    fit(module, data, a.epochs, a.batch_size, seed, threads, "adapt")
    result["fit_seconds"] = time.perf_counter() - t0
    # held-out own-noise stations: how the pretrained and the adapted network score them
    pairs, _ = calibration_pairs(pools, test, max(5, a.calibration_draws // 4), a.absent_dvs, seed + 5)
    held_out = OwnNoiseImages(test, pools, pairs, settings, config["earth_model"], seed + 5, fixed=True)
    logits, y = logits_of(module, held_out)
    temperature = float(metrics.fit_temperature(logits, y))
    module.temperature.fill_(temperature if np.isfinite(temperature) and temperature > 0 else 1.0)
    base_logits, _ = logits_of(base, held_out)
    result["temperature"] = float(module.temperature)
    result["held_out"] = {
        "images": len(y), "note": "own-noise stations of every station: no X, and X of dVs >= absent_dvs "
                                       "(synthetic test set samples)",
        "adapted": metrics.binary_metrics(y, _sigmoid(logits / float(module.temperature))),
        "pretrained": metrics.binary_metrics(y, _sigmoid(base_logits / float(base.temperature)))}
    log.info("adapt: held-out own-noise stations: accuracy %.3f (pretrained %.3f), AUC %.3f (%.3f)",
             result["held_out"]["adapted"]["accuracy"], result["held_out"]["pretrained"]["accuracy"],
             result["held_out"]["adapted"]["roc_auc"], result["held_out"]["pretrained"]["roc_auc"])
    with atomic_output(out) as tmp:
        torch.save(_checkpoint(module), tmp)
    write_json(result, metrics_path)
    return result


def calibrate(config: dict, model: str | Path, test_path: str, noise_files: list, out: Path,
              metrics_path: Path, draws: list | None = None, refined: Path | None = None,
              refine_draws: list | None = None) -> dict:
    """Each station's present / absent thresholds (:func:`xdisc.cnn.calibration.station_thresholds`) from the
    model's probabilities on ``calibration_draws`` own-noise stations without X and with X (synthetic test
    set). ``draws``: files or folders of :func:`xdisc.cnn.redecon.calibration_draws`; a station found there
    takes its no-X scores from those images (deconvolved as its data) instead of own-noise stations.
    ``refined``: the folder of :func:`xdisc.cnn.refine.refine`; a station of its folds is scored by its fold's
    network, its X draws taken from ``refine_draws`` (files or folders of
    :func:`xdisc.cnn.refine.refinement_draws`: deconvolved as its data too)."""
    cfg = config["cnn"]
    a = AdaptSettings.from_config(cfg["adapt"])
    settings = ImageSettings.from_config(config["images"])
    test = SyntheticSource.read(test_path)
    pools = read_pools(noise_files, test.grid_slowness, test.time_s, int(cfg["verdict"]["min_rf"]), a.noise,
                       a.match_crust)
    module = XClassifier.load_from_checkpoint(str(model), map_location="cpu")
    result = {"stage": "calibrate", "stations": len(noise_files), "stations_calibrated": 0,
              "settings": dict(a.__dict__), "seed": int(cfg["seed"])}
    rows: list[dict] = []
    if a.enabled and pools:
        t0 = time.perf_counter()
        pairs, kind = calibration_pairs(pools, test, a.calibration_draws, a.absent_dvs, int(cfg["seed"]),
                                        a.crust_window_s if a.match_crust else None, a.hard_fraction)
        redecon = draw_files(draws or [])
        nets, x_files = fold_networks(refined), draw_files(refine_draws or [])
        lacking = sorted(c for c in nets if c not in x_files or c not in redecon)
        if lacking:  # predict would judge them with their fold's network: their thresholds must come from it
            raise ValueError(f"{len(lacking)} station(s) of the folds of {refined} lack their no-X (--draws) or X "
                             f"draws (--refine-draws): {', '.join(lacking[:5])}")
        # own-noise draws only where no draw deconvolved as the data replaces them (each keeps its random
        # stream: an item's noise is seeded by its place in ``pairs``)
        code = np.array([pool.station for pool in pools])[pairs[:, 0]]
        replaced = np.where(kind == 0, np.isin(code, list(redecon)), np.isin(code, list(nets)))
        needed = np.flatnonzero(~replaced)
        data = OwnNoiseImages(test, pools, pairs, settings, config["earth_model"], int(cfg["seed"]) + 1, fixed=True)
        prob = np.full(len(pairs), np.nan)
        if needed.size:
            prob[needed] = _sigmoid(logits_of(module, Subset(data, needed))[0] / float(module.temperature))
        for s, pool in enumerate(pools):
            mine = pairs[:, 0] == s
            no_x, how, with_x, x_how = prob[mine & (kind == 0)], "own-noise", prob[mine & (kind == 1)], "own-noise"
            net, network = judging_network(nets, pool.station, module)
            if pool.station in nets:
                x_images = read_refinement_draws(x_files[pool.station], ("x_image",))["x_image"]
                with_x, x_how = probabilities(net, x_images), "redeconvolved"
            if pool.station in redecon:
                no_x, how = probabilities(net, read_draw_images(redecon[pool.station])), "redeconvolved"
            rows.append({"station": pool.station, "n_rf": int(pool.noise.shape[0]),
                         **station_thresholds(no_x, with_x, a), "no_x_draws": how, "x_draws": x_how,
                         "network": network})
        result["no_x_draws"] = {k: sum(r["no_x_draws"] == k for r in rows) for k in NO_X_DRAWS}
        result["refined_stations"] = sum(r["network"] != RUN_NETWORK for r in rows)
        result["own_noise_draws"] = {"scored": int(needed.size), "replaced": int(replaced.sum())}
        result.update(stations_calibrated=len(rows), seconds=time.perf_counter() - t0,
                      median_present_threshold=float(np.median([r["present_threshold"] for r in rows])),
                      median_absent_threshold=float(np.median([r["absent_threshold"] for r in rows])),
                      median_detection_rate=float(np.median([r["detection_rate"] for r in rows])))
        log.info("calibrate: %d station(s) in %.0f s; median thresholds: present %.2f, absent %.2f; median "
                 "detection rate of X (dVs >= %.3g) at the present threshold %.2f", len(rows), result["seconds"],
                 result["median_present_threshold"], result["median_absent_threshold"], a.absent_dvs,
                 result["median_detection_rate"])
    else:
        result["note"] = "cnn.adapt.enabled is false" if not a.enabled else "no station has enough noise traces"
        log.warning("calibrate: %s: every station gets the global thresholds of cnn.verdict", result["note"])
    write_csv(rows, CALIBRATION_COLUMNS, out)
    write_json(result, metrics_path)
    return result


def draw_files(paths: list) -> dict[str, Path]:
    """Station code (NET.STA, the file name) -> file of :func:`xdisc.cnn.redecon.calibration_draws`, from
    files or folders of them."""
    files = []
    for path in paths:
        path = Path(path)
        files += sorted(path.glob("*.nc")) if path.is_dir() else [path]
    return {f.stem: f for f in files}


def read_draw_images(path: Path) -> np.ndarray:
    """The images (draw, channel, bin, depth) of one station's calibration draws."""
    with open_netcdf(path) as ds:
        return ds["image"].values.astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def _checkpoint(module: XClassifier) -> dict:
    return {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": L.__version__}
