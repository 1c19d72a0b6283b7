"""What :mod:`xdisc.cnn.refine` writes, read back: the station -> fold table, each fold's network, a station's
refinement draws (``xdisc calibrate``, ``xdisc predict`` and ``xdisc detectability`` with ``--refined``), and the
one rule of which network judges a station (:func:`judging_network`)."""

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


def read_look_alikes(path: Path, *names: str) -> list[np.ndarray | None]:
    """Variables ``names`` of a draw file (``look_alike`` of calibration draws, ``x_look_alike`` and
    ``train_look_alike`` of refinement draws) as booleans: which draws are look-alikes of X; None for a
    variable the file does not hold (written before it existed)."""
    with open_netcdf(path) as ds:
        return [ds[name].values.astype(bool) if name in ds else None for name in names]


def read_folds(folder: str | Path | None) -> dict[str, int]:
    """Station code -> its fold, from the table of :func:`refine` (empty without a folder)."""
    if folder is None:
        return {}
    with open(Path(folder) / FOLDS_FILE, newline="") as f:
        return {row["station"]: int(row["fold"]) for row in csv.DictReader(f)}


def fold_name(fold: int) -> str:
    """The name of fold ``fold``'s network in station_thresholds.csv, cnn.csv and the detectability files."""
    return f"refined fold {fold + 1}"


def fold_checkpoints(folder: str | Path | None) -> dict[str, tuple[Path, str]]:
    """Station code -> (the checkpoint of its fold's network, its name: :func:`fold_name`), nothing loaded;
    empty without a folder."""
    return {code: (fold_checkpoint(folder, k), fold_name(k)) for code, k in read_folds(folder).items()}


def fold_networks(folder: str | Path | None) -> dict[str, tuple[XClassifier, str]]:
    """Station code -> (the network of its fold, its name: :func:`fold_name`); each fold's checkpoint loaded
    once; empty without a folder."""
    checkpoints = fold_checkpoints(folder)
    nets = {path: load_classifier(path) for path in sorted({path for path, _ in checkpoints.values()})}
    return {code: (nets[path], name) for code, (path, name) in checkpoints.items()}


def judging_network(refined: dict | None, code: str, run_network=None) -> tuple:
    """(network, name) that calibrates and judges station ``code``: its fold's where it has one (``refined``:
    :func:`fold_networks`, or :func:`fold_checkpoints` for checkpoints), else ``run_network``, the run's
    (:data:`RUN_NETWORK`)."""
    return (refined or {}).get(code, (run_network, RUN_NETWORK))


@torch.no_grad()
def probabilities(module: XClassifier, images: np.ndarray) -> np.ndarray:
    if len(images) == 0:
        return np.zeros(0)
    module.eval()
    out = [module.probability(torch.from_numpy(np.asarray(images[a:a + 256], np.float32))).numpy()
           for a in range(0, len(images), 256)]
    return np.concatenate(out).astype(float)
