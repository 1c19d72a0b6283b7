"""CNN training with PyTorch Lightning: pretrain on synthetic stations (:func:`pretrain`), fine-tune
on labelled real images (:func:`finetune`); the datasets are in :mod:`xdisc.cnn.datasets`, the
LightningModule in :mod:`xdisc.cnn.module`, prediction in :mod:`xdisc.cnn.predict`.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xdisc.cnn.datasets import ArrayImages, SyntheticImages, XDataModule, labelled_images
from xdisc.cnn.images import ImageSettings
from xdisc.cnn.module import XClassifier, depths_of, logits_of
from xdisc.cnn.synthetic_set import SyntheticSource
from xdisc.config import config_hash
from xdisc.core import metrics
from xdisc.core.artifacts import atomic_output, software_versions, write_json
from xdisc.core.deconvolution import RFSettings
from xdisc.synth.stations import StationDraw

log = logging.getLogger(__name__)


class EpochLog(L.Callback):
    """One log line per epoch (progress for non-interactive runs, e.g. Snakemake logs)."""

    def __init__(self, label: str):
        self.label, self.t0 = label, time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):  # runs after the epoch's validation
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        log.info("%s epoch %d/%d: train loss %.4f, val loss %.4f, val acc %.3f, val AUC %.4f (%.0f s)", self.label,
                 trainer.current_epoch + 1, trainer.max_epochs, m.get("train/loss", math.nan),
                 m.get("val/loss", math.nan), m.get("val/acc", math.nan), m.get("val/auc", math.nan),
                 time.perf_counter() - self.t0)


def _loggers(cfg: dict, out_dir: Path, name: str) -> list:
    """CSV logs always (results/cnn/logs/NAME/metrics.csv); TensorBoard too when asked for and installed."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(str(out_dir / "logs"), name=name, version="")]
    if cfg.get("tensorboard"):
        try:
            loggers.append(TensorBoardLogger(str(out_dir / "logs" / "tensorboard"), name=name))
        except ModuleNotFoundError as exc:
            log.warning("cnn.tensorboard is set but TensorBoard is not installed (%s); CSV logs only", exc)
    return loggers


def _trainer(cfg: dict, out_dir: Path, name: str, max_epochs: int, patience: int, threads: int) -> L.Trainer:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    torch.set_num_threads(max(1, threads))
    ckpt = ModelCheckpoint(dirpath=out_dir / f"{name}_checkpoints", filename="best", monitor="val/loss",
                           mode="min", save_top_k=1, enable_version_counter=False)
    callbacks = [ckpt, EarlyStopping(monitor="val/loss", mode="min", patience=patience), EpochLog(name)]
    return L.Trainer(max_epochs=max_epochs, accelerator="auto", devices=1, deterministic=True,
                     callbacks=callbacks, logger=_loggers(cfg, out_dir, name),
                     enable_progress_bar=sys.stderr.isatty(), enable_model_summary=False, log_every_n_steps=10,
                     default_root_dir=str(out_dir), num_sanity_val_steps=0)


# ----------------------------------------------------------------------------- evaluation
def evaluate(logits: np.ndarray, y: np.ndarray, temperature: float) -> dict:
    """Metrics of calibrated probabilities, plus ROC curve and reliability bins for the figures."""
    prob = 1.0 / (1.0 + np.exp(-logits / temperature))
    out = metrics.binary_metrics(y, prob)
    out["tpr_at_5pct_fpr"] = float(metrics.tpr_at_fpr(y, prob, 0.05)) if len(np.unique(y)) == 2 else math.nan
    out["confusion"] = metrics.confusion(y, (prob >= 0.5).astype(int)).tolist()
    out["ece_uncalibrated"] = float(metrics.expected_calibration_error(y, 1.0 / (1.0 + np.exp(-logits))))
    return out


def _finalise(trainer: L.Trainer, module: XClassifier, val_set: Dataset, out: Path) -> tuple[XClassifier, float]:
    """Load the best checkpoint, fit the temperature on validation, save to ``out`` atomically."""
    best = trainer.checkpoint_callback.best_model_path
    if best:
        module = XClassifier.load_from_checkpoint(best, map_location="cpu")
    logits, y = logits_of(module, val_set)
    temperature = float(metrics.fit_temperature(logits, y)) if len(np.unique(y)) == 2 else 1.0
    if not np.isfinite(temperature) or temperature <= 0:
        temperature = 1.0
    module.temperature.fill_(temperature)
    trainer.strategy.connect(module)
    with atomic_output(out) as tmp:
        trainer.save_checkpoint(str(tmp), weights_only=False)
    return module, temperature


def depth_metrics(module: XClassifier, data: Dataset, logits: np.ndarray | None = None) -> dict:
    """How well the depth head places X on the stations with X of ``data``: median absolute error (km),
    fraction within one and two of its standard deviations, and the same at the stations the classifier
    calls X (probability >= 0.5, given ``logits``)."""
    mu, sigma, truth = depths_of(module, data)
    has_x = np.isfinite(truth)
    if not has_x.any() or not np.isfinite(mu).any():
        return {"n": int(has_x.sum()), "median_abs_error_km": math.nan}
    err = np.abs(mu - truth)
    out = {"n": int(has_x.sum()), "median_abs_error_km": float(np.median(err[has_x])),
           "mean_abs_error_km": float(np.mean(err[has_x])),
           "within_1_sigma": float(np.mean(err[has_x] <= sigma[has_x])),
           "within_2_sigma": float(np.mean(err[has_x] <= 2 * sigma[has_x])),
           "median_sigma_km": float(np.median(sigma[has_x]))}
    if logits is not None:
        found = has_x & (np.asarray(logits) >= 0)
        out["detected"] = {"n": int(found.sum()),
                           "median_abs_error_km": float(np.median(err[found])) if found.any() else math.nan}
    return out


def model_settings(cfg: dict, settings: ImageSettings) -> dict:
    return {"n_channels": settings.shape[0], "n_slowness_bins": settings.shape[1], "n_depth": settings.shape[2],
            "depth_range_km": tuple(settings.depth_range_km), **cfg["network"]}


def pretrain(config: dict, train_path: str, test_path: str | None, out: Path, metrics_path: Path,
             threads: int = 1, train_models: list[str] | None = None, test_models: list[str] | None = None,
             num_workers: int = 0) -> dict:
    """Train :class:`XClassifier` on synthetic stations; evaluate on a separately seeded test set."""
    cfg = config["cnn"]
    settings = ImageSettings.from_config(config["images"])
    draw = StationDraw.from_config(config["synthetics"], cfg)
    pc = cfg["pretrain"]
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    dm = XDataModule(train_path, test_path, settings, draw, config["earth_model"], cfg["seed"], pc["batch_size"],
                     cfg["val_fraction"], train_models, test_models,
                     config["synthetics"]["noise"].get("real_noise_file"), num_workers,
                     RFSettings(**config["receiver_function"]), pc.get("snr"))
    dm.setup("fit")
    module = XClassifier(model_settings(cfg, settings), pc["learning_rate"], pc["weight_decay"], pc["max_epochs"],
                         depth_loss_weight=pc["depth_loss_weight"])
    out_dir = Path(out).parent
    t0 = time.perf_counter()
    trainer = _trainer(cfg, out_dir, "pretrain", pc["max_epochs"], pc["patience"], threads)
    log.info("pretrain: %d training / %d validation samples (%s), %d parameters, %d thread(s)",
             len(dm.train_set), len(dm.val_set), ", ".join(sorted(set(dm.train_set.source.model))),
             sum(p.numel() for p in module.parameters()), threads)
    trainer.fit(module, datamodule=dm)
    fit_s = time.perf_counter() - t0
    module, temperature = _finalise(trainer, module, dm.val_set, out)
    result = {"stage": "pretrain", "train_samples": len(dm.train_set), "val_samples": len(dm.val_set),
              "epochs": trainer.current_epoch, "fit_seconds": fit_s, "temperature": temperature,
              "threads": threads, "train_models": sorted(set(dm.train_set.source.model)),
              "parameters": sum(p.numel() for p in module.parameters()), "seed": cfg["seed"],
              "config_hash": config_hash({k: config[k] for k in ("cnn", "images", "synthetics")}),
              "versions": software_versions(("torch", "lightning")),
              "metrics_csv": str(out_dir / "logs" / "pretrain" / "metrics.csv")}
    vl, vy = logits_of(module, dm.val_set)
    result["validation"] = evaluate(vl, vy, temperature)
    if dm.test_set is not None:
        tl, ty = logits_of(module, dm.test_set)
        result["test"] = evaluate(tl, ty, temperature)
        result["test_models"] = sorted(set(dm.test_set.source.model))
        result["test"]["per_model"] = {
            m: evaluate(tl[dm.test_set.source.model == m], ty[dm.test_set.source.model == m], temperature)["accuracy"]
            for m in sorted(set(dm.test_set.source.model))}
        result["test"]["depth"] = depth_metrics(module, dm.test_set, tl / temperature)
        result["_test_logits"] = tl
        result["_test_labels"] = ty
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    write_json(public, metrics_path)
    shutil.rmtree(out_dir / "pretrain_checkpoints", ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- real images
def _fit_fixed(module: XClassifier, data: Dataset, epochs: int, batch_size: int, seed: int, threads: int,
               out_dir: Path, name: str) -> XClassifier:
    """Fine-tuning fit: a fixed number of epochs, no validation split (labelled data are scarce)."""
    from lightning.pytorch.loggers import CSVLogger

    torch.set_num_threads(max(1, threads))
    L.seed_everything(seed, workers=True, verbose=False)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen)
    trainer = L.Trainer(max_epochs=epochs, accelerator="auto", devices=1, deterministic=True,
                        logger=CSVLogger(str(out_dir / "logs"), name=name, version="") if name else False,
                        enable_checkpointing=False, enable_progress_bar=sys.stderr.isatty(),
                        enable_model_summary=False, limit_val_batches=0, log_every_n_steps=1,
                        default_root_dir=str(out_dir))
    trainer.fit(module, train_dataloaders=loader)
    return module


def _from_pretrained(path: str | Path, fc: dict, epochs: int) -> XClassifier:
    base = XClassifier.load_from_checkpoint(str(path), map_location="cpu")
    module = XClassifier(base.hparams.net_config, fc["learning_rate"], fc["weight_decay"], epochs,
                         freeze_features=fc["freeze_features"])
    module.load_state_dict(base.state_dict())
    return module


def _replay(config: dict, src: SyntheticSource | None, n: int, seed: int) -> Dataset | None:
    """``n`` synthetic station images (fresh noise per epoch) mixed into fine-tuning, so the
    network does not forget what pretraining taught it when real labels are few or one-sided."""
    if src is None or n <= 0:
        return None
    idx = np.sort(np.random.default_rng([seed, 11]).choice(src.label.size, size=min(n, src.label.size),
                                                           replace=False))
    return SyntheticImages(src, idx, ImageSettings.from_config(config["images"]),
                           StationDraw.from_config(config["synthetics"], config["cnn"]), config["earth_model"], seed)


def _grouped_folds(groups: np.ndarray, k: int, seed: int, y: np.ndarray | None = None) -> list[np.ndarray]:
    """Station-grouped folds from scikit-learn: every station's images in exactly one test fold; with
    labels ``y`` of both classes stratified (``StratifiedGroupKFold``: present and absent spread over the
    folds), else ``GroupKFold``; shuffled with ``seed``, so the same input gives the same folds."""
    import warnings

    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    groups = np.asarray(groups)
    rows = np.zeros((groups.size, 1))
    with warnings.catch_warnings():  # few labelled stations: a class with fewer images than folds is expected
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        if y is not None and np.unique(y).size == 2:
            splits = list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(rows, y, groups))
        else:
            splits = list(GroupKFold(k, shuffle=True, random_state=seed).split(rows, groups=groups))
    return [np.sort(test) for _, test in splits if test.size]


def _label_counts(y: np.ndarray, groups: np.ndarray) -> dict:
    return {"stations": len(set(groups.tolist())), "images": len(y), "present": int((y == 1).sum()),
            "absent": int((y == 0).sum())}


def _listing(counts: dict, most: int = 10) -> str:
    items = [f"{k} ({v})" for k, v in counts.items()]
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


CV_GAIN_P = 0.05  # cnn.finetune.require_cv_gain: the sign test's one-sided level


def station_gain(finetuned_logits: np.ndarray, pretrained_logits: np.ndarray, y: np.ndarray,
                 groups: np.ndarray) -> dict:
    """Does fine-tuning help at held-out stations? Per labelled station, the images each network gets right
    (a probability above one half for ``present``, at most one half for ``absent``: out-of-fold logits of the
    fine-tuned folds, the pretrained network's logits); the stations where the fine-tuned network is right
    more often (``better``) and less often (``worse``), and the one-sided sign test of ``better`` among them
    (ties left out): the stations are the independent units, their images are not."""
    from scipy.stats import binomtest

    right_ft = (np.asarray(finetuned_logits) > 0) == (np.asarray(y) == 1)
    right_pre = (np.asarray(pretrained_logits) > 0) == (np.asarray(y) == 1)
    _, station = np.unique(groups, return_inverse=True)
    d = np.bincount(station, right_ft) - np.bincount(station, right_pre)  # per station: images right, ft - pre
    better, worse = int(np.sum(d > 0)), int(np.sum(d < 0))
    p = float(binomtest(better, better + worse, 0.5, alternative="greater").pvalue) if better + worse else 1.0
    return {"better": better, "worse": worse, "same": d.size - better - worse, "p_value": p}


def finetune(config: dict, pretrained: str | Path, image_files: list, label_files: list, out: Path,
             metrics_path: Path, threads: int = 1, synthetic_path: str | None = None,
             stacking_path: str | Path | None = None) -> dict:
    """Fine-tune the pretrained classifier on labelled real images (station-grouped cross-validation
    first, when at least two stations are labelled; then a final fit on every label).

    Labels: the rows of ``label_files`` (later files override earlier ones; station labels expanded to
    every image, labels of single images override them) and, with ``cnn.finetune.weak_labels.enabled``,
    weak station labels from the stacking table ``stacking_path`` (:func:`xdisc.labels.weak_labels`).
    Labels of stations without an image file here are listed in ``unmatched_labels``; every such
    problem is a WARNING log line starting ``finetune:`` and an entry of ``warnings`` in the metrics.

    With ``cnn.finetune.require_cv_gain`` the fine-tuned network is kept only where the cross-validation shows
    it right more often at significantly more held-out stations than the pretrained one
    (:func:`station_gain`, one-sided p ≤ ``CV_GAIN_P``); otherwise the output is the pretrained network,
    ``fine_tuned`` is false and a warning says why."""
    from collections import Counter

    from torch.utils.data import ConcatDataset

    from xdisc.labels import WEAK_SOURCE, read_label_rows, weak_labels

    cfg = config["cnn"]
    fc = cfg["finetune"]
    wc = fc["weak_labels"]
    warned: list[str] = []

    def warn(message: str) -> None:
        log.warning("finetune: %s", message)
        warned.append(message)

    rows: dict = {}
    for path in label_files:
        if Path(path).is_file():
            rows.update(read_label_rows(path))
        else:
            warn(f"label file {path} does not exist; left out")
    weak: dict = {}
    if wc["enabled"]:
        if stacking_path is None:
            raise ValueError("cnn.finetune.weak_labels.enabled needs the stacking verdicts (xdisc train finetune "
                             "--stacking results/verdicts/stacking.csv)")
        weak = weak_labels(stacking_path, wc, {station for station, _ in rows})
        log.info("finetune: %d weak station label(s) from %s", len(weak), stacking_path)
    elif stacking_path is not None:
        log.info("finetune: cnn.finetune.weak_labels.enabled is false; %s not used", stacking_path)
    data = labelled_images(image_files, {**weak, **rows})
    x, y, groups = data.x, data.y, data.groups
    source = np.where(data.source == WEAK_SOURCE, WEAK_SOURCE, "manual")
    unmatched = dict(sorted(Counter(st for st, _ in rows if st not in data.n_images).items()))
    if unmatched:
        warn(f"{sum(unmatched.values())} label(s) of {len(unmatched)} station(s) are NOT used: their station is not "
             f"among the {len(data.n_images)} station(s) of this run: {_listing(unmatched)}; check the station "
             "codes (NET.STA) in the label files against the run's stations")
    imageless = dict(sorted(Counter(st for st, _ in rows if data.n_images.get(st) == 0).items()))
    if imageless:
        warn(f"label(s) of {len(imageless)} station(s) without an image (too few receiver functions) are not "
             f"used: {_listing(imageless)}")
    out_dir = Path(out).parent
    base = XClassifier.load_from_checkpoint(str(pretrained), map_location="cpu")
    base_temperature = float(base.temperature)
    by_source = {src: _label_counts(y[source == src], groups[source == src]) for src in ("manual", WEAK_SOURCE)}
    result = {"stage": "finetune", "fine_tuned": len(y) > 0, "n_images": len(y), "n_present": int((y == 1).sum()),
              "n_absent": int((y == 0).sum()), "stations": sorted(set(groups.tolist())), "labels": by_source,
              "labelled_stations": {st: {"source": str(source[groups == st][0]),
                                         **_label_counts(y[groups == st], groups[groups == st])}
                                    for st in sorted(set(groups.tolist()))},
              "unmatched_labels": unmatched, "labels_without_images": imageless,
              "weak_labels": {**wc, "stacking": str(stacking_path) if wc["enabled"] else None,
                              "stations": sorted(st for st, _ in weak)},
              "label_files": [str(p) for p in label_files], "seed": cfg["seed"],
              "versions": software_versions(("torch", "lightning")), "cross_validation": None, "warnings": warned}
    def keep_pretrained(note: str) -> dict:
        result.update(fine_tuned=False, note=note)
        with atomic_output(out) as tmp:
            shutil.copyfile(pretrained, tmp)
        write_json(result, metrics_path)
        return result

    if len(y) == 0:
        warn(f"no image carries a present/absent label ({len(rows)} manual label row(s) read, {len(weak)} weak "
             "label(s)): NOTHING WAS FINE-TUNED, the fine-tuned model is the pretrained one")
        result["cross_validation_note"] = "no labelled images"
        return keep_pretrained("no present/absent labels: fine-tuned model = pretrained model")
    log.info("finetune: %s", ", ".join(f"{src}: {c['images']} image(s) of {c['stations']} station(s)"
                                       for src, c in by_source.items() if c["images"]))

    replay_source = SyntheticSource.read(synthetic_path) if synthetic_path and fc["synthetic_replay"] > 0 else None

    def dataset(sel, seed):
        real = ArrayImages(x[sel], y[sel])
        rep = _replay(config, replay_source, round(fc["synthetic_replay"] * len(sel)), seed)
        return real if rep is None else ConcatDataset([real, rep])

    n_groups = len(set(groups.tolist()))
    k = min(fc["n_folds"], n_groups)
    if k >= 2:
        oof = np.full(len(y), np.nan)
        folds = _grouped_folds(groups, k, cfg["seed"], y)
        for f, test_idx in enumerate(folds):
            train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
            module = _from_pretrained(pretrained, fc, fc["max_epochs"])
            _fit_fixed(module, dataset(train_idx, cfg["seed"] + f), fc["max_epochs"], fc["batch_size"],
                       cfg["seed"] + f, threads, out_dir, "")
            oof[test_idx] = logits_of(module, ArrayImages(x[test_idx], y[test_idx]))[0]
            log.info("finetune: fold %d/%d done (%d test images from %d station(s))", f + 1, len(folds),
                     len(test_idx), len(set(groups[test_idx].tolist())))
        pre_logits = logits_of(base, ArrayImages(x, y))[0]
        temperature = float(metrics.fit_temperature(oof, y)) if len(np.unique(y)) == 2 else base_temperature
        if not np.isfinite(temperature) or temperature <= 0:
            temperature = base_temperature
        result["cross_validation"] = {"folds": len(folds), "grouped_by": "station",
                                      "finetuned": evaluate(oof, y, temperature),
                                      "pretrained_only": evaluate(pre_logits, y, base_temperature)}
        if by_source[WEAK_SOURCE]["images"]:  # the same out-of-fold predictions, scored per label source
            result["cross_validation"]["by_source"] = {
                src: {"finetuned": evaluate(oof[source == src], y[source == src], temperature),
                      "pretrained_only": evaluate(pre_logits[source == src], y[source == src], base_temperature)}
                for src in ("manual", WEAK_SOURCE) if by_source[src]["images"]}
        gain = station_gain(oof, pre_logits, y, groups)
        result["cross_validation"]["station_gain"] = gain
        if fc["require_cv_gain"] and gain["p_value"] > CV_GAIN_P:
            note = (f"held out, the fine-tuned network was right at more images than the pretrained one at "
                    f"{gain['better']} labelled station(s) and at fewer at {gain['worse']} (sign test p = "
                    f"{gain['p_value']:.2f} > {CV_GAIN_P}): NOT FINE-TUNED, the fine-tuned model is the pretrained "
                    "one (cnn.finetune.require_cv_gain)")
            warn(note)
            return keep_pretrained(note)
    else:
        temperature = base_temperature
        result["note"] = result["cross_validation_note"] = (
            f"{n_groups} labelled station(s): station-grouped cross-validation needs at least 2; "
            "the model is fine-tuned on every label without a held-out estimate")
        warn(result["note"])
    module = _from_pretrained(pretrained, fc, fc["max_epochs"])
    _fit_fixed(module, dataset(np.arange(len(y)), cfg["seed"]), fc["max_epochs"], fc["batch_size"], cfg["seed"],
               threads, out_dir, "finetune")
    module.temperature.fill_(temperature)
    result["temperature"] = temperature
    result["metrics_csv"] = str(out_dir / "logs" / "finetune" / "metrics.csv")
    with atomic_output(out) as tmp:
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                    "pytorch-lightning_version": L.__version__}, tmp)
    write_json(result, metrics_path)
    return result
