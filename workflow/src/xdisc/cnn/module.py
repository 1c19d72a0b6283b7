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

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no tips; our EpochLog reports progress


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
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        out.append(module(x.to(device)).cpu().numpy())
        labels.append(y.numpy())
    if not out:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(out).astype(float), np.concatenate(labels).astype(int)
