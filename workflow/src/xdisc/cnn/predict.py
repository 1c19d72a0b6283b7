"""CNN verdict per station: calibrated probability of X of each of its images, and present / absent /
undetermined (``xdisc predict``): from the station's own thresholds where the run adapted the network
to its stations (:mod:`xdisc.cnn.adapt`; statistic: the probability of image 0, every receiver
function), else from the global thresholds in ``cnn.verdict`` (statistic: the mean over the images);
where X is present and the network has a depth head, its depth and standard deviation (image 0).

Columns of ``cnn.csv`` with a probability: ``probability`` and ``probability_std``, the mean and spread over
the station's images; ``probability_all``, image 0's; ``verdict_probability``, the one the verdict compared
with its thresholds (image 0's with the station's own thresholds, else the mean). ``network``: which network
scored the station: ``run`` (``finetune.ckpt``), or ``refined fold K`` (``cnn.refine``: :mod:`xdisc.cnn.refine`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from xdisc.cnn.datasets import read_station_images
from xdisc.cnn.folds import judging_network
from xdisc.cnn.module import XClassifier
from xdisc.core.verdicts import ABSENT, PRESENT, UNDETERMINED

PREDICTION_COLUMNS = ("station", "latitude", "longitude", "n_rf", "n_images", "probability", "probability_std",
                      "probability_all", "verdict_probability", "present_threshold", "absent_threshold",
                      "detection_rate", "verdict", "cnn_x_depth_km", "cnn_x_depth_err_km", "network", "reason")


@torch.no_grad()
def predict_station(module: XClassifier, images: np.ndarray) -> np.ndarray:
    """Calibrated probability of X for each image (image, channel, bin, depth)."""
    if len(images) == 0:
        return np.zeros(0)
    return module.probability(torch.from_numpy(np.asarray(images, np.float32))).numpy().astype(float)


def _too_few(prob: np.ndarray, n_rf: int, cfg: dict) -> str:
    """Why a station has no verdict for lack of data (its receiver functions, then its images); empty if it has
    enough."""
    if n_rf < cfg["min_rf"]:
        return f"{n_rf} receiver functions < {cfg['min_rf']}"
    if len(prob) == 0:
        return "no image (too few receiver functions)"
    return ""


def station_verdict(prob: np.ndarray, n_rf: int, cfg: dict) -> tuple[str, str]:
    """present / absent / undetermined from the probabilities of a station's images."""
    too_few = _too_few(prob, n_rf, cfg)
    if too_few:
        return UNDETERMINED, too_few
    mean, std = float(np.mean(prob)), float(np.std(prob))
    if std > cfg["max_probability_std"]:
        return UNDETERMINED, f"images disagree (probability std {std:.2f} > {cfg['max_probability_std']})"
    if mean >= cfg["present_probability"]:
        return PRESENT, ""
    if mean <= cfg["absent_probability"]:
        return ABSENT, ""
    return UNDETERMINED, (f"probability {mean:.2f} between {cfg['absent_probability']} and "
                            f"{cfg['present_probability']}")


def calibrated_verdict(prob: np.ndarray, n_rf: int, thresholds: dict, cfg: dict) -> tuple[str, str]:
    """present / absent / undetermined from the probability of image 0 and the station's own thresholds
    (a row of the table of :func:`xdisc.cnn.adapt.calibrate`). ``present`` is checked first: where the
    station's draws without and with X separate, its absent threshold can lie above its present one."""
    too_few = _too_few(prob, n_rf, cfg)
    if too_few:
        return UNDETERMINED, too_few
    p, hi, lo = float(prob[0]), float(thresholds["present_threshold"]), float(thresholds["absent_threshold"])
    if p >= hi:
        return PRESENT, ""
    if p <= lo:
        # the threshold comes from the station's X draws, so an absent probability can exceed one half
        return ABSENT, (f"probability {p:.3f} at or below the station's absent threshold {lo:.3f} (set by its "
                        "calibration draws with X: X would have scored higher)")
    if math.isinf(lo) or math.isinf(hi):  # its draws tie where a threshold would be (calibration.py)
        return UNDETERMINED, (f"probability {p:.2f}; the station's draws tie at their extreme scores, so "
                              f"{'no absent' if math.isinf(lo) else 'no present'} threshold keeps its rate")
    return UNDETERMINED, (f"probability {p:.2f} between the station's thresholds {lo:.2f} and {hi:.2f} "
                          f"(detection rate of X at its threshold {float(thresholds['detection_rate']):.2f})")


def read_calibration(path: str | Path | None) -> dict[str, dict]:
    """The per-station thresholds of ``xdisc calibrate`` by station code (empty without a file)."""
    if path is None:
        return {}
    import pandas as pd

    table = pd.read_csv(path, dtype={"station": str})
    return {row["station"]: row for row in table.to_dict("records")}


def check_networks(calibration: dict[str, dict], refined: dict | None) -> None:
    """Raise ValueError where a station's thresholds (``network`` of ``xdisc calibrate``; tables written before
    2026-12-06 have none) were set by another network than the one that would judge it (``refined``: station
    code -> (network, name) of :func:`xdisc.cnn.folds.fold_networks`)."""
    judge = {code: judging_network(refined, code, None)[1] for code in calibration}
    wrong = [f"{code} ({row['network']} -> {judge[code]})" for code, row in calibration.items()
             if isinstance(row.get("network"), str) and row["network"] != judge[code]]
    if wrong:
        raise ValueError(f"the thresholds of {len(wrong)} station(s) were set by another network than the one that "
                         f"would judge them (calibrate and predict need the same --refined): {', '.join(wrong[:5])}")


def prediction_row(module: XClassifier, image_file: str | Path, cfg: dict, calibration: dict | None = None,
                   refined: dict | None = None) -> dict:
    """One row of ``cnn.csv``. ``refined``: station code -> (the network of its fold, its name), for the
    stations that :mod:`xdisc.cnn.refine` refined; the others are scored by ``module``."""
    st = read_station_images(image_file)
    module, network = judging_network(refined, st["station"], module)
    prob = predict_station(module, st["images"])
    n_rf = st["n_rf_station"]
    mean = float(np.mean(prob)) if len(prob) else math.nan
    first = float(prob[0]) if len(prob) else math.nan
    own = (calibration or {}).get(st["station"])
    if own is not None:
        verdict, reason = calibrated_verdict(prob, n_rf, own, cfg)
    else:
        verdict, reason = station_verdict(prob, n_rf, cfg)
        if calibration:
            reason = "; ".join(r for r in (reason, "no own-noise thresholds (too few noise traces)") if r)
    statistic = mean if own is None else first  # what the verdict compared with its thresholds
    own = own or {}
    depth, depth_err = math.nan, math.nan
    if verdict == PRESENT and module.net.depth_branch is not None:
        with torch.no_grad():
            mu, sigma = module.net.depth(torch.from_numpy(np.asarray(st["images"][:1], np.float32)))
        depth, depth_err = float(mu[0]), float(sigma[0])
    return {"station": st["station"], "latitude": st["latitude"], "longitude": st["longitude"], "n_rf": n_rf,
            "n_images": len(prob), "probability": mean,
            "probability_std": float(np.std(prob)) if len(prob) else math.nan,
            "probability_all": first, "verdict_probability": statistic,
            "present_threshold": own.get("present_threshold", math.nan),
            "absent_threshold": own.get("absent_threshold", math.nan),
            "detection_rate": own.get("detection_rate", math.nan), "verdict": verdict, "cnn_x_depth_km": depth,
            "cnn_x_depth_err_km": depth_err, "network": network, "reason": reason}
