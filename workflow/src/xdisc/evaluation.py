"""CNN and stacking side by side on the same synthetic test stations (``xdisc evaluate``).

Every sample of the held-out synthetic test set becomes one synthetic station per noise level
(``cnn.evaluation.n_rf`` receiver functions, every trace at the same SNR, other augmentation as in training,
seeded); the CNN gives its calibrated probability (present at >= 0.5) and the stacking method
its verdict (present / absent / undetermined, counted as not detected) on the *same* traces.
Results: accuracy against SNR, detection rate against dVs (at the middle SNR level), false
positives, for both methods, as JSON and figures.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from xdisc.earthmodel import load_model
from xdisc.images import DepthMapper, ImageSettings, StationDraw, build_image, synthetic_station
from xdisc.moveout import distance_for_slowness
from xdisc.stacking import stack_station

log = logging.getLogger("xdisc.evaluation")

DVS_BINS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.0601)


def evaluate_methods(module, test_path: str, config: dict, seed: int | None = None, progress=None) -> dict:
    """Accuracy of the CNN and of stacking against SNR and dVs on synthetic test stations
    (``cnn.evaluation``: receiver functions per station, SNR levels, number of samples)."""
    from xdisc.training import SyntheticSource, predict_station

    ev = config["cnn"]["evaluation"]
    n_rf, snr_levels = ev["n_rf"], tuple(ev["snr_levels"])
    src = SyntheticSource.read(test_path)
    if ev["max_samples"] and ev["max_samples"] < src.label.size:
        keep = np.sort(np.random.default_rng([config["cnn"]["seed"], 17]).choice(src.label.size, ev["max_samples"],
                                                                                   replace=False))
        src = SyntheticSource(src.clean[keep], src.label[keep], src.model[keep], src.x_dvs[keep], src.grid_slowness,
                              src.time_s, src.dt, src.gaussian_width_hz)
    settings = ImageSettings.from_config(config["images"])
    draw = StationDraw.from_config(config["synthetics"], config["cnn"])
    mapper = DepthMapper(load_model(config["earth_model"]), settings.depths_km)
    ref = load_model(config["earth_model"])
    seed = config["cnn"]["seed"] + 3 if seed is None else seed
    n = src.label.size
    prob = np.full((len(snr_levels), n), np.nan)
    stack = np.empty((len(snr_levels), n), dtype=object)
    t0 = time.perf_counter()
    for a, snr in enumerate(snr_levels):
        for i in range(n):
            rng = np.random.default_rng([seed, a, i])
            rf, p = synthetic_station(src.clean[i], src.grid_slowness, src.time_s, src.dt, src.gaussian_width_hz,
                                      draw, rng, n_rf=n_rf, snr=float(snr), model_name=str(src.model[i]))
            prob[a, i] = predict_station(module, build_image(rf, src.time_s, p, mapper, settings)[0][None])[0]
            stack[a, i] = stack_station(rf, src.time_s, p, distance_for_slowness(p, str(src.model[i])), ref,
                                        config["stacking"]).attrs["verdict"]
        if progress is not None:
            progress((a + 1) * n, len(snr_levels) * n, time.perf_counter() - t0, "stations")
    y = src.label.astype(bool)
    cnn_pos = prob >= 0.5
    stack_pos = stack == "present"
    out = {"n_samples": int(n), "n_rf": int(n_rf), "snr_levels": list(map(float, snr_levels)), "seed": int(seed),
           "cnn": {"accuracy": _acc(cnn_pos, y), "false_positive": _rate(cnn_pos[:, ~y]),
                   "true_positive": _rate(cnn_pos[:, y])},
           "stacking": {"accuracy": _acc(stack_pos, y), "false_positive": _rate(stack_pos[:, ~y]),
                        "true_positive": _rate(stack_pos[:, y]),
                        "undetermined": _rate(stack == "undetermined")}}
    mid = int(np.argmin(np.abs(np.asarray(snr_levels) - 10.0)))
    centres, cnn_tpr, stack_tpr, counts = [], [], [], []
    for lo, hi in zip(DVS_BINS[:-1], DVS_BINS[1:]):
        sel = y & (src.x_dvs >= lo) & (src.x_dvs < hi)
        centres.append(0.5 * (lo + hi))
        counts.append(int(sel.sum()))
        cnn_tpr.append(float(cnn_pos[mid, sel].mean()) if sel.any() else np.nan)
        stack_tpr.append(float(stack_pos[mid, sel].mean()) if sel.any() else np.nan)
    out["by_dvs"] = {"snr": float(snr_levels[mid]), "dvs_bin_centre": centres, "count": counts,
                     "cnn_true_positive": cnn_tpr, "stacking_true_positive": stack_tpr,
                     "cnn_false_positive": float(cnn_pos[mid, ~y].mean()),
                     "stacking_false_positive": float(stack_pos[mid, ~y].mean())}
    return out


def _acc(pred: np.ndarray, y: np.ndarray) -> list[float]:
    return [float(v) for v in (pred == y[None, :]).mean(axis=1)]


def _rate(pred: np.ndarray) -> list[float]:
    return [float(v) if pred.shape[1] else float("nan") for v in (pred.mean(axis=1) if pred.shape[1] else
                                                                  np.full(pred.shape[0], np.nan))]


def plot_evaluation(result: dict, folder) -> list:
    """accuracy_vs_snr.png and detection_vs_dvs.png from :func:`evaluate_methods`'s result."""
    from pathlib import Path

    from xdisc.ml_figures import plot_accuracy_vs

    folder = Path(folder)
    snr = result["snr_levels"]
    paths = [plot_accuracy_vs(snr, {"CNN": result["cnn"]["accuracy"], "stacking": result["stacking"]["accuracy"],
                                    "CNN false positives": result["cnn"]["false_positive"],
                                    "stacking false positives": result["stacking"]["false_positive"]},
                              folder / "accuracy_vs_snr.png", xlabel="SNR of every receiver function (P / noise std)",
                              ylabel="accuracy / false-positive rate", xscale="log",
                              title=f"Synthetic test stations ({result['n_samples']}, {result['n_rf']} RFs each)")]
    d = result["by_dvs"]
    x = [100 * c for c in d["dvs_bin_centre"]]
    paths.append(plot_accuracy_vs(x, {"CNN": d["cnn_true_positive"], "stacking": d["stacking_true_positive"]},
                                  folder / "detection_vs_dvs.png", xlabel="dVs of X (%), bin centre",
                                  ylabel="detection rate", chance=None,
                                  title=f"Detection of X at SNR {d['snr']:g} (false positives: CNN "
                                        f"{100 * d['cnn_false_positive']:.0f} %, stacking "
                                        f"{100 * d['stacking_false_positive']:.0f} %)"))
    return paths
