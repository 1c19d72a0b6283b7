"""CNN verdict per station: calibrated probability of X of each of its images, and present / absent /
undetermined from the thresholds in ``cnn.verdict`` (``xdisc predict``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from xdisc.cnn.datasets import read_station_images
from xdisc.cnn.module import XClassifier
from xdisc.core.verdicts import ABSENT, PRESENT, UNDETERMINED

PREDICTION_COLUMNS = ("station", "latitude", "longitude", "n_rf", "n_images", "probability", "probability_std",
                      "verdict", "reason")


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
            "n_images": len(prob), "probability": float(np.mean(prob)) if len(prob) else math.nan,
            "probability_std": float(np.std(prob)) if len(prob) else math.nan, "verdict": verdict, "reason": reason}
