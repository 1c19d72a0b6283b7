"""CNN training with PyTorch Lightning: pretrain on synthetic stations, fine-tune on labelled
real images, predict per station.

* :class:`SyntheticImages` turns each sample of a synthetic dataset (noise-free receiver
  functions on a slowness grid) into a synthetic station image on the fly: a fresh noisy,
  augmented draw every epoch (seeded by seed, epoch and sample), a fixed draw for validation
  and test. :class:`XDataModule` reads the NetCDF files in ``setup`` and splits samples with a
  seeded permutation.
* :class:`XClassifier` holds an :class:`~xdisc.cnn.model.XNet` built from the hyperparameters
  saved in the checkpoint, one ``model_step`` for train/val/test, and a temperature (fitted on
  the validation set after training) that calibrates its probabilities.
* :func:`pretrain`, :func:`finetune` and :func:`predict_station` are what the CLI calls.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xdisc.cnn.images import DepthMapper, ImageSettings, StationDraw, build_image, synthetic_station
from xdisc.cnn.model import XNet
from xdisc.config import config_hash
from xdisc.core import metrics
from xdisc.core.artifacts import atomic_output, open_netcdf, software_versions, write_json
from xdisc.core.deconvolution import RFSettings
from xdisc.core.earthmodel import load_model
from xdisc.core.verdicts import ABSENT, PRESENT, UNDETERMINED
from xdisc.synth.synthetics import load_noise_pool

log = logging.getLogger(__name__)
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no tips; our EpochLog reports progress

LABELS = {PRESENT: 1, ABSENT: 0}


# ----------------------------------------------------------------------------- data

@dataclass
class SyntheticSource:
    """Noise-free receiver functions of a synthetic dataset, in memory."""

    clean: np.ndarray          # (sample, slowness, time) float32
    label: np.ndarray          # (sample,)
    model: np.ndarray          # (sample,) reference model name
    x_dvs: np.ndarray          # (sample,)
    grid_slowness: np.ndarray
    time_s: np.ndarray
    dt: float
    gaussian_width_hz: float

    @classmethod
    def read(cls, path: str | Path, models: list[str] | None = None) -> SyntheticSource:
        with open_netcdf(path) as ds:
            keep = np.ones(ds.sizes["sample"], bool)
            if models:
                keep = np.isin(ds["model"].values.astype(str), models)
                if not keep.any():
                    raise ValueError(f"{path}: no sample of model(s) {', '.join(models)}")
            time_s = ds["time"].values
            return cls(clean=np.ascontiguousarray(ds["rf_clean"].values[keep], dtype=np.float32),
                       label=ds["label"].values[keep].astype(int), model=ds["model"].values[keep].astype(str),
                       x_dvs=ds["x_dvs"].values[keep].astype(float), grid_slowness=ds["slowness"].values.astype(float),
                       time_s=time_s, dt=float(time_s[1] - time_s[0]),
                       gaussian_width_hz=float(ds.attrs["rf_gaussian_width_hz"]))


class SyntheticImages(Dataset):
    """Synthetic station images of some samples: a new noise draw per epoch unless ``fixed``."""

    def __init__(self, source: SyntheticSource, indices: np.ndarray, settings: ImageSettings, draw: StationDraw,
                 model_name: str, seed: int, fixed: bool = False, noise_pool: np.ndarray | None = None,
                 n_rf: int | None = None, snr=None):
        self.source, self.indices = source, np.asarray(indices)
        self.settings, self.draw, self.seed, self.fixed = settings, draw, seed, fixed
        self.model_name, self.noise_pool, self.n_rf, self.snr = model_name, noise_pool, n_rf, snr
        self.epoch = 0
        self._mapper: DepthMapper | None = None
        self._cache: dict[int, np.ndarray] = {}  # fixed draws are built once

    def __len__(self) -> int:
        return self.indices.size

    def image(self, j: int, epoch: int) -> np.ndarray:
        if self._mapper is None:  # built lazily: cheap to pickle into DataLoader workers
            self._mapper = DepthMapper(load_model(self.model_name), self.settings.depths_km)
        i = int(self.indices[j])
        s = self.source
        rng = np.random.default_rng([self.seed, epoch, i])
        rf, p = synthetic_station(s.clean[i], s.grid_slowness, s.time_s, s.dt, s.gaussian_width_hz, self.draw, rng,
                                  n_rf=self.n_rf, snr=self.snr, noise_pool=self.noise_pool,
                                  model_name=self.model_name)
        return build_image(rf, s.time_s, p, self._mapper, self.settings)[0]

    def __getitem__(self, j: int):
        i = int(self.indices[j])
        if self.fixed:
            if j not in self._cache:
                self._cache[j] = self.image(j, 10**6)
            img = self._cache[j]
        else:
            img = self.image(j, self.epoch)
        return torch.from_numpy(img), torch.tensor(float(self.source.label[i]))


class ArrayImages(Dataset):
    """Images already built (real stations): (image, channel, bin, depth) and labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, j: int):
        return self.images[j], self.labels[j]


def _worker_init(_):
    torch.set_num_threads(1)


class XDataModule(L.LightningDataModule):
    """Synthetic pretraining data: seeded train/validation split of one file, a separate test file."""

    def __init__(self, train_path: str, test_path: str | None, settings: ImageSettings, draw: StationDraw,
                 model_name: str, seed: int, batch_size: int = 64, val_fraction: float = 0.15,
                 train_models: list[str] | None = None, test_models: list[str] | None = None,
                 noise_file: str | None = None, num_workers: int = 0, rf: RFSettings | None = None):
        super().__init__()
        self.train_path, self.test_path = train_path, test_path
        self.settings, self.draw, self.model_name, self.seed = settings, draw, model_name, seed
        self.batch_size, self.val_fraction, self.num_workers = batch_size, val_fraction, num_workers
        self.train_models, self.test_models, self.noise_file, self.rf = train_models, test_models, noise_file, rf

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        pool = load_noise_pool(self.noise_file, self.rf) if self.noise_file else None
        src = SyntheticSource.read(self.train_path, self.train_models)
        order = np.random.default_rng([self.seed, 7]).permutation(src.label.size)
        n_val = max(1, int(round(self.val_fraction * order.size)))
        common = dict(settings=self.settings, draw=self.draw, model_name=self.model_name, noise_pool=pool)
        self.train_set = SyntheticImages(src, np.sort(order[n_val:]), seed=self.seed, **common)
        self.val_set = SyntheticImages(src, np.sort(order[:n_val]), seed=self.seed + 1, fixed=True, **common)
        self.test_set = None
        if self.test_path:
            test = SyntheticSource.read(self.test_path, self.test_models)
            self.test_set = SyntheticImages(test, np.arange(test.label.size), seed=self.seed + 2, fixed=True,
                                            **common)

    def _loader(self, data, shuffle: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, generator=gen if shuffle else None,
                          num_workers=self.num_workers, worker_init_fn=_worker_init if self.num_workers else None)

    def train_dataloader(self):
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        return self._loader(self.val_set, False)

    def test_dataloader(self):
        return self._loader(self.test_set, False)


# ----------------------------------------------------------------------------- model

class XClassifier(L.LightningModule):
    """Lightning wrapper of :class:`XNet`: loss, metrics, optimiser, calibration temperature."""

    def __init__(self, net_config: dict, learning_rate: float = 2e-3, weight_decay: float = 1e-4,
                 max_epochs: int = 30, freeze_features: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.net = XNet(**net_config)
        self.register_buffer("temperature", torch.ones(()))
        self.loss = torch.nn.BCEWithLogitsLoss()
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        if freeze_features:
            for p in self.net.features.parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated probability of X (logit / temperature)."""
        return torch.sigmoid(self.net(x) / self.temperature)

    def model_step(self, batch):
        x, y = batch
        logits = self.net(x)
        return self.loss(logits, y), logits, y

    def training_step(self, batch, batch_idx):
        loss, logits, y = self.model_step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("train/acc", ((logits > 0).float() == y).float().mean(), on_step=False, on_epoch=True,
                 batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, logits, y = self.model_step(batch)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val/acc", ((logits > 0).float() == y).float().mean(), on_epoch=True, prog_bar=True,
                 batch_size=len(y))
        self._val.append((logits.detach().cpu(), y.detach().cpu()))

    def on_validation_epoch_end(self):
        if self._val:
            logits, y = (torch.cat(t).numpy() for t in zip(*self._val))
            self._val.clear()
            self.log("val/auc", float(metrics.roc_auc(y, logits)))

    def test_step(self, batch, batch_idx):
        loss, logits, y = self.model_step(batch)
        self.log("test/loss", loss, batch_size=len(y))
        self.log("test/acc", ((logits > 0).float() == y).float().mean(), batch_size=len(y))

    def on_train_batch_start(self, batch, batch_idx):
        if self.hparams.freeze_features:  # a frozen encoder also keeps its batch-norm statistics
            self.net.features.eval()

    def on_train_epoch_start(self):
        loader = self.trainer.train_dataloader
        data = getattr(loader, "dataset", None)
        if hasattr(data, "epoch"):
            data.epoch = self.current_epoch

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.max_epochs))
        return {"optimizer": opt, "lr_scheduler": sched}


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

@torch.no_grad()
def logits_of(module: XClassifier, data: Dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits and labels of every item of ``data`` (eval mode, no temperature)."""
    module.eval()
    device = next(module.parameters()).device
    out, labels = [], []
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        out.append(module(x.to(device)).cpu().numpy())
        labels.append(y.numpy())
    if not out:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(out).astype(float), np.concatenate(labels).astype(int)


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


def model_settings(cfg: dict, settings: ImageSettings) -> dict:
    return {"n_channels": settings.shape[0], "n_slowness_bins": settings.shape[1], "n_depth": settings.shape[2],
            **cfg["network"]}


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
                     RFSettings(**config["receiver_function"]))
    dm.setup("fit")
    module = XClassifier(model_settings(cfg, settings), pc["learning_rate"], pc["weight_decay"], pc["max_epochs"])
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
        result["_test_logits"] = tl
        result["_test_labels"] = ty
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    write_json(public, metrics_path)
    shutil.rmtree(out_dir / "pretrain_checkpoints", ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- real images

def read_station_images(path: str | Path) -> dict:
    """Images of one station (from ``xdisc images``) as plain arrays."""
    with open_netcdf(path) as ds:
        return {"station": f"{ds['network'].item()}.{ds['station'].item()}", "images": ds["rf_image"].values,
                "n_rf": ds["n_rf"].values, "latitude": float(ds["latitude"]), "longitude": float(ds["longitude"])}


def labelled_images(image_files: list[str | Path], labels: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images with a present/absent label, their labels (1/0) and station codes (for grouping)."""
    from xdisc.labels import labels_for_images

    xs, ys, groups = [], [], []
    for path in image_files:
        st = read_station_images(path)
        for j, lab in enumerate(labels_for_images(labels, st["station"], len(st["images"]))):
            if lab in LABELS:
                xs.append(st["images"][j])
                ys.append(LABELS[lab])
                groups.append(st["station"])
    if not xs:
        return np.zeros((0,)), np.zeros(0, int), np.zeros(0, str)
    return np.stack(xs), np.array(ys), np.array(groups)


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


def _grouped_folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Station-grouped folds: every station's images in exactly one test fold."""
    stations = np.array(sorted(set(groups)))
    order = np.random.default_rng([seed, 13]).permutation(stations.size)
    return [np.flatnonzero(np.isin(groups, stations[order[f::k]])) for f in range(k)]


def finetune(config: dict, pretrained: str | Path, image_files: list, label_files: list, out: Path,
             metrics_path: Path, threads: int = 1, synthetic_path: str | None = None) -> dict:
    """Fine-tune the pretrained classifier on labelled real images (station-grouped cross-validation
    first, when at least two stations are labelled; then a final fit on every label)."""
    from torch.utils.data import ConcatDataset

    from xdisc.labels import read_labels

    cfg = config["cnn"]
    fc = cfg["finetune"]
    labels: dict = {}
    for path in label_files:
        if Path(path).is_file():
            labels.update(read_labels(path))
        else:
            log.warning("finetune: label file %s does not exist; left out", path)
    x, y, groups = labelled_images(image_files, labels)
    out_dir = Path(out).parent
    base = XClassifier.load_from_checkpoint(str(pretrained), map_location="cpu")
    base_temperature = float(base.temperature)
    result = {"stage": "finetune", "n_images": int(len(y)), "n_present": int((y == 1).sum()),
              "n_absent": int((y == 0).sum()), "stations": sorted(set(groups.tolist())),
              "label_files": [str(p) for p in label_files], "seed": cfg["seed"],
              "versions": software_versions(("torch", "lightning")), "cross_validation": None}
    if len(y) == 0:
        log.warning("finetune: no image carries a present/absent label; the fine-tuned model is the pretrained one")
        result["note"] = "no present/absent labels: fine-tuned model = pretrained model"
        with atomic_output(out) as tmp:
            shutil.copyfile(pretrained, tmp)
        write_json(result, metrics_path)
        return result

    replay_source = SyntheticSource.read(synthetic_path) if synthetic_path and fc["synthetic_replay"] > 0 else None

    def dataset(sel, seed):
        real = ArrayImages(x[sel], y[sel])
        rep = _replay(config, replay_source, int(round(fc["synthetic_replay"] * len(sel))), seed)
        return real if rep is None else ConcatDataset([real, rep])

    n_groups = len(set(groups.tolist()))
    k = min(fc["n_folds"], n_groups)
    if k >= 2:
        oof = np.full(len(y), np.nan)
        for f, test_idx in enumerate(_grouped_folds(groups, k, cfg["seed"])):
            train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
            module = _from_pretrained(pretrained, fc, fc["max_epochs"])
            _fit_fixed(module, dataset(train_idx, cfg["seed"] + f), fc["max_epochs"], fc["batch_size"],
                       cfg["seed"] + f, threads, out_dir, "")
            oof[test_idx] = logits_of(module, ArrayImages(x[test_idx], y[test_idx]))[0]
            log.info("finetune: fold %d/%d done (%d test images from %d station(s))", f + 1, k, len(test_idx),
                     len(set(groups[test_idx].tolist())))
        pre_logits = logits_of(base, ArrayImages(x, y))[0]
        temperature = float(metrics.fit_temperature(oof, y)) if len(np.unique(y)) == 2 else base_temperature
        if not np.isfinite(temperature) or temperature <= 0:
            temperature = base_temperature
        result["cross_validation"] = {"folds": k, "grouped_by": "station",
                                      "finetuned": evaluate(oof, y, temperature),
                                      "pretrained_only": evaluate(pre_logits, y, base_temperature)}
    else:
        temperature = base_temperature
        result["note"] = (f"{n_groups} labelled station(s): station-grouped cross-validation needs at least 2; "
                          "the model is fine-tuned on every label without a held-out estimate")
        log.warning("finetune: %s", result["note"])
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


# ----------------------------------------------------------------------------- prediction

PREDICTION_COLUMNS = ("station", "latitude", "longitude", "n_rf", "n_images", "probability", "probability_std",
                      "verdict", "reason")


def load_classifier(path: str | Path) -> XClassifier:
    module = XClassifier.load_from_checkpoint(str(path), map_location="cpu")
    module.eval()
    return module


@torch.no_grad()
def predict_station(module: XClassifier, images: np.ndarray) -> np.ndarray:
    """Calibrated probability of X for each image (image, channel, bin, depth)."""
    if len(images) == 0:
        return np.zeros(0)
    return module.probability(torch.from_numpy(np.asarray(images, np.float32))).numpy().astype(float)


def station_verdict(prob: np.ndarray, n_rf: int, cfg: dict) -> tuple[str, str]:
    """present / absent / undetermined from the probabilities of a station's images."""
    if len(prob) == 0:
        return UNDETERMINED, "no image (too few receiver functions)"
    if n_rf < cfg["min_rf"]:
        return UNDETERMINED, f"{n_rf} receiver functions < {cfg['min_rf']}"
    mean, std = float(np.mean(prob)), float(np.std(prob))
    if std > cfg["max_probability_std"]:
        return UNDETERMINED, f"images disagree (probability std {std:.2f} > {cfg['max_probability_std']})"
    if mean >= cfg["present_probability"]:
        return PRESENT, ""
    if mean <= cfg["absent_probability"]:
        return ABSENT, ""
    return UNDETERMINED, (f"probability {mean:.2f} between {cfg['absent_probability']} and "
                            f"{cfg['present_probability']}")


def prediction_row(module: XClassifier, image_file: str | Path, cfg: dict) -> dict:
    st = read_station_images(image_file)
    prob = predict_station(module, st["images"])
    n_rf = int(st["n_rf"][0]) if len(st["n_rf"]) else 0
    verdict, reason = station_verdict(prob, n_rf, cfg)
    return {"station": st["station"], "latitude": st["latitude"], "longitude": st["longitude"], "n_rf": n_rf,
            "n_images": int(len(prob)), "probability": float(np.mean(prob)) if len(prob) else math.nan,
            "probability_std": float(np.std(prob)) if len(prob) else math.nan, "verdict": verdict, "reason": reason}
