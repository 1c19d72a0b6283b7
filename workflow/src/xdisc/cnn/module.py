"""The LightningModule of the CNN: an :class:`~xdisc.cnn.model.XNet` built from the hyperparameters
saved in the checkpoint, one ``model_step`` for train/val/test, and a temperature (fitted on the
validation set after training) that calibrates its probabilities."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xdisc.cnn.model import XNet
from xdisc.core import metrics

DEPTH_TARGET_KM = 10.0  # width of the depth head's training target around the true depth of X

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no tips; our EpochLog reports progress


class XClassifier(L.LightningModule):
    """Lightning wrapper of :class:`XNet`: loss, metrics, optimiser, calibration temperature."""

    def __init__(self, net_config: dict, learning_rate: float = 2e-3, weight_decay: float = 1e-4,
                 max_epochs: int = 30, freeze_features: bool = False, depth_loss_weight: float = 0.0):
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
        """Loss, logits and labels of a batch (image, label[, X depth]): the classification loss, plus
        (with a depth head and ``depth_loss_weight``) at the stations with X the cross-entropy of the depth
        head's probabilities against a Gaussian of ``DEPTH_TARGET_KM`` around the true depth."""
        x, y = batch[0], batch[1]
        logits, logp = self.net.forward_all(x)
        loss = self.loss(logits, y)
        weight = self.hparams.get("depth_loss_weight", 0.0)
        if logp is not None and weight > 0 and len(batch) > 2:
            depth = batch[2]
            m = torch.isfinite(depth) & (y > 0.5)
            if m.any():
                z = self.net.depth_centres_km
                target = torch.exp(-0.5 * ((z[None, :] - depth[m][:, None]) / DEPTH_TARGET_KM) ** 2)
                target = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
                ce = -(target * logp[m]).sum(-1).mean()
                loss = loss + weight * ce
                self.log("train/depth_ce" if self.training else "val/depth_ce", ce, on_epoch=True, on_step=False,
                         batch_size=int(m.sum()))
        return loss, logits, y

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
            logits, y = (torch.cat(t).numpy() for t in zip(*self._val, strict=True))
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


def load_classifier(path: str | Path) -> XClassifier:
    module = XClassifier.load_from_checkpoint(str(path), map_location="cpu")
    module.eval()
    return module


@torch.no_grad()
def logits_of(module: XClassifier, data: Dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits and labels of every item of ``data`` (eval mode, no temperature)."""
    module.eval()
    device = next(module.parameters()).device
    out, labels = [], []
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        out.append(module(batch[0].to(device)).cpu().numpy())
        labels.append(batch[1].numpy())
    if not out:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(out).astype(float), np.concatenate(labels).astype(int)


@torch.no_grad()
def depths_of(module: XClassifier, data: Dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray]:
    """Depth estimates of X (km), their standard deviations and the true depths (NaN: none) of every
    item of ``data``; NaN estimates without a depth head."""
    module.eval()
    device = next(module.parameters()).device
    mus, sigmas, truth = [], [], []
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
        _, logp = module.net.forward_all(batch[0].to(device))
        mu, sigma = (None, None) if logp is None else module.net.depth_moments(logp)
        n = len(batch[0])
        mus.append(np.full(n, np.nan) if mu is None else mu.cpu().numpy())
        sigmas.append(np.full(n, np.nan) if sigma is None else sigma.cpu().numpy())
        truth.append(batch[2].numpy() if len(batch) > 2 else np.full(n, np.nan))
    if not mus:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return tuple(np.concatenate(v).astype(float) for v in (mus, sigmas, truth))
