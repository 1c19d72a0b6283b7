"""What :mod:`xdisc.cnn.refine` writes, read back: the station -> fold table, each fold's network, a station's
refinement draws (``xdisc calibrate``, ``xdisc predict`` and ``xdisc detectability`` with ``--refined``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from xdisc.cnn.module import XClassifier, load_classifier
from xdisc.core.artifacts import open_netcdf

FOLDS_FILE = "folds.csv"
RUN_NETWORK = "run"  # the name of the run's own network in station_thresholds.csv and cnn.csv (column network)


def fold_checkpoint(folder: str | Path, fold: int) -> Path:
    return Path(folder) / f"fold_{fold}.ckpt"


DRAW_VARIABLES = ("x_image", "x_depth_km", "train_image", "train_label", "train_depth_km")


def read_refinement_draws(path: Path, names: tuple = DRAW_VARIABLES) -> dict:
    """Arrays ``names`` of one station's file of :func:`refinement_draws`."""
    with open_netcdf(path) as ds:
        return {k: ds[k].values for k in names}


def read_folds(folder: str | Path | None) -> dict[str, int]:
    """Station code -> its fold, from the table of :func:`refine` (empty without a folder)."""
    if folder is None:
        return {}
    with open(Path(folder) / FOLDS_FILE, newline="") as f:
        return {row["station"]: int(row["fold"]) for row in csv.DictReader(f)}


def fold_networks(folder: str | Path | None) -> dict[str, tuple[XClassifier, str]]:
    """Station code -> (the network of its fold, its name: 'refined fold K', K from 1); each fold's checkpoint
    loaded once; empty without a folder."""
    folds = read_folds(folder)
    nets = {k: load_classifier(fold_checkpoint(folder, k)) for k in sorted(set(folds.values()))}
    return {code: (nets[k], f"refined fold {k + 1}") for code, k in folds.items()}


def judging_network(refined: dict | None, code: str, module: XClassifier | None) -> tuple[XClassifier | None, str]:
    """(network, name) that calibrates and judges station ``code``: its fold's (``refined``: :func:`fold_networks`)
    where it has one, else ``module``, the run's (:data:`RUN_NETWORK`)."""
    return (refined or {}).get(code, (module, RUN_NETWORK))


@torch.no_grad()
def probabilities(module: XClassifier, images: np.ndarray) -> np.ndarray:
    if len(images) == 0:
        return np.zeros(0)
    module.eval()
    out = [module.probability(torch.from_numpy(np.asarray(images[a:a + 256], np.float32))).numpy()
           for a in range(0, len(images), 256)]
    return np.concatenate(out).astype(float)
