"""CNN and stacking side by side on the same synthetic test stations (``xdisc evaluate``).

Every sample of the held-out synthetic test set becomes one synthetic station per noise level
(``cnn.evaluation.n_rf`` receiver functions, every trace at the same SNR, other augmentation as in training,
seeded); the CNN gives its calibrated probability (present at >= 0.5) and the stacking method
its verdict (present / absent / undetermined, counted as not detected) on the *same* traces.
Results: accuracy against SNR, detection rate against dVs (at the middle SNR level), false
positives, and both broken down by the structure of the test stations (Moho depth, depth and
gradient of X, distractor kind) at every SNR level, for both methods, as JSON and figures. At high
SNR the breakdown shows what limits a detector once noise does not: weak, gradual X and crustal
multiples of thick crusts arriving in the X window.

The CNN's **verdicts** (``cnn_verdict``) are scored as the pipeline makes them with per-station
thresholds (:mod:`xdisc.cnn.adapt`): at each SNR level, half of the test stations (seeded) calibrate
the thresholds of that level (:func:`xdisc.cnn.calibration.station_thresholds`: present at or above
``cnn.adapt.present_probability``, or where that is null the conformal ``1 - cnn.adapt.false_alarm_rate``
order statistic of their scores without X; absent at or below the conformal ``cnn.adapt.miss_rate`` order
statistic of their scores with X of dVs >= ``cnn.adapt.absent_dvs``), and
the other half is scored: false alarms (present without X), detections, undetermined and accuracy
(undetermined counts as wrong).
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np

from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
from xdisc.core.earthmodel import load_model
from xdisc.core.moveout import distance_for_slowness
from xdisc.core.verdicts import PRESENT, UNDETERMINED
from xdisc.stack.stacking import stack_station
from xdisc.synth.stations import StationDraw, synthetic_station

log = logging.getLogger(__name__)

DVS_BINS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.0601)
# test-set parameters of the structure breakdown: (which samples carry the value, kind)
STRUCTURE = {"moho_km": ("all", "bins"), "x_depth_km": ("x", "bins"), "x_gradient_km": ("x", "bins"),
             "distractor": ("all", "categories")}
N_STRUCTURE_BINS = 5


def evaluation_samples(test_path: str, config: dict):
    """The synthetic test samples ``xdisc evaluate`` judges (at most ``cnn.evaluation.max_samples``, a seeded
    choice) and their indices in the test set."""
    from xdisc.cnn.synthetic_set import SyntheticSource

    ev = config["cnn"]["evaluation"]
    src = SyntheticSource.read(test_path)
    keep = np.arange(src.label.size)
    if ev["max_samples"] and ev["max_samples"] < src.label.size:
        keep = np.sort(np.random.default_rng([config["cnn"]["seed"], 17]).choice(src.label.size, ev["max_samples"],
                                                                                   replace=False))
        src = SyntheticSource(src.clean[keep], src.label[keep], src.model[keep], src.x_dvs[keep], src.grid_slowness,
                              src.time_s, src.dt, src.gaussian_width_hz)
    return src, keep


def evaluation_stations(src, config: dict, seed: int):
    """Every test station of ``xdisc evaluate``: for each SNR level (index ``a``) and sample ``i`` of ``src``,
    ``cnn.evaluation.n_rf`` receiver functions at that SNR, seeded by (seed, a, i). Yields (a, i, receiver
    functions, their slownesses)."""
    ev = config["cnn"]["evaluation"]
    draw = StationDraw.from_config(config["synthetics"], config["cnn"])
    for a, snr in enumerate(ev["snr_levels"]):
        for i in range(src.label.size):
            rng = np.random.default_rng([seed, a, i])
            rf, p = synthetic_station(src.clean[i], src.grid_slowness, src.time_s, src.dt, src.gaussian_width_hz,
                                      draw, rng, n_rf=ev["n_rf"], snr=float(snr), model_name=str(src.model[i]))
            yield a, i, rf, p


def evaluate_methods(module, test_path: str, config: dict, seed: int | None = None, progress=None) -> dict:
    """Accuracy of the CNN and of stacking against SNR and dVs on synthetic test stations
    (``cnn.evaluation``: receiver functions per station, SNR levels, number of samples)."""
    from xdisc.cnn.predict import predict_station

    ev = config["cnn"]["evaluation"]
    n_rf, snr_levels = ev["n_rf"], tuple(ev["snr_levels"])
    src, keep = evaluation_samples(test_path, config)
    settings = ImageSettings.from_config(config["images"])
    mapper = DepthMapper(load_model(config["earth_model"]), settings.depths_km)
    ref = load_model(config["earth_model"])
    seed = config["cnn"]["seed"] + 3 if seed is None else seed
    n = src.label.size
    prob = np.full((len(snr_levels), n), np.nan)
    stack = np.empty((len(snr_levels), n), dtype=object)
    t0 = time.perf_counter()
    for a, i, rf, p in evaluation_stations(src, config, seed):
        prob[a, i] = predict_station(module, build_image(rf, src.time_s, p, mapper, settings)[0][None])[0]
        stack[a, i] = stack_station(rf, src.time_s, p, distance_for_slowness(p, str(src.model[i])), ref,
                                    config["stacking"]).attrs["verdict"]
        if progress is not None and i == n - 1:
            progress((a + 1) * n, len(snr_levels) * n, time.perf_counter() - t0, "stations")
    y = src.label.astype(bool)
    cnn_pos = prob >= 0.5
    stack_pos = stack == PRESENT
    out = {"n_samples": int(n), "n_rf": int(n_rf), "snr_levels": list(map(float, snr_levels)), "seed": int(seed),
           "cnn": {"accuracy": _acc(cnn_pos, y), "false_positive": _rate(cnn_pos[:, ~y]),
                   "true_positive": _rate(cnn_pos[:, y])},
           "stacking": {"accuracy": _acc(stack_pos, y), "false_positive": _rate(stack_pos[:, ~y]),
                        "true_positive": _rate(stack_pos[:, y]),
                        "undetermined": _rate(stack == UNDETERMINED)}}
    out["cnn_verdict"] = level_verdicts(prob, y, src.x_dvs, config["cnn"]["adapt"], seed)
    mid = int(np.argmin(np.abs(np.asarray(snr_levels) - 10.0)))
    centres, cnn_tpr, stack_tpr, counts = [], [], [], []
    for lo, hi in itertools.pairwise(DVS_BINS):
        sel = y & (src.x_dvs >= lo) & (src.x_dvs < hi)
        centres.append(0.5 * (lo + hi))
        counts.append(int(sel.sum()))
        cnn_tpr.append(float(cnn_pos[mid, sel].mean()) if sel.any() else np.nan)
        stack_tpr.append(float(stack_pos[mid, sel].mean()) if sel.any() else np.nan)
    out["by_dvs"] = {"snr": float(snr_levels[mid]), "dvs_bin_centre": centres, "count": counts,
                     "cnn_true_positive": cnn_tpr, "stacking_true_positive": stack_tpr,
                     "cnn_false_positive": float(cnn_pos[mid, ~y].mean()),
                     "stacking_false_positive": float(stack_pos[mid, ~y].mean())}
    structure = _structure_parameters(test_path, keep)
    out["by_structure"] = {name: rates_by(values, y, {"cnn": cnn_pos, "stacking": stack_pos},
                                          categorical=STRUCTURE[name][1] == "categories",
                                          x_only=STRUCTURE[name][0] == "x")
                           for name, values in structure.items()}
    return out


def level_verdicts(prob: np.ndarray, y: np.ndarray, x_dvs: np.ndarray, adapt_cfg: dict, seed: int) -> dict:
    """CNN verdicts of (level, sample) probabilities with thresholds calibrated per level on a seeded half
    of the samples, scored on the other half (see the module docstring)."""
    from xdisc.cnn.calibration import AdaptSettings, station_thresholds

    a = AdaptSettings.from_config(adapt_cfg)
    n = y.size
    order = np.random.default_rng([seed, 31]).permutation(n)
    cal, test = np.zeros(n, bool), np.zeros(n, bool)
    cal[order[: n // 2]] = True
    test[order[n // 2:]] = True
    strong = y & (np.asarray(x_dvs, float) >= a.absent_dvs - 1e-9)
    out = {key: [] for key in ("present_threshold", "absent_threshold", "false_alarm", "detection",
                               "undetermined", "accuracy")}
    out.update(n_calibration=int(cal.sum()), n_scored=int(test.sum()),
               note="per SNR level: thresholds from the calibration half, rates on the scored half")
    for row in prob:
        if not (cal & ~y).any() or not (cal & strong).any() or not test.any():
            for key in out:
                if isinstance(out[key], list):
                    out[key].append(float("nan"))
            continue
        t = station_thresholds(row[cal & ~y], row[cal & strong], a)
        present = row >= t["present_threshold"]
        absent = (row <= t["absent_threshold"]) & ~present
        right = np.where(y, present, absent)
        out["present_threshold"].append(t["present_threshold"])
        out["absent_threshold"].append(t["absent_threshold"])
        out["false_alarm"].append(_mean(present[test & ~y]))
        out["detection"].append(_mean(present[test & y]))
        out["undetermined"].append(_mean((~present & ~absent)[test]))
        out["accuracy"].append(_mean(right[test]))
    return out


def _structure_parameters(test_path: str, keep: np.ndarray) -> dict[str, np.ndarray]:
    """The generating parameters of the breakdown (those the test file has) for samples ``keep``:
    read lazily, only these variables (the receiver functions were read by SyntheticSource)."""
    import xarray as xr

    with xr.open_dataset(test_path, engine="netcdf4") as ds:
        return {name: ds[name].values[keep] for name in STRUCTURE if name in ds}


def rates_by(values: np.ndarray, y: np.ndarray, positive: dict[str, np.ndarray], categorical: bool = False,
             x_only: bool = False, n_bins: int = N_STRUCTURE_BINS) -> dict:
    """Detection (true-positive) and false-positive rates of each method per bin of ``values``.

    ``positive``: method -> (level, sample) booleans; ``y``: (sample,) labels. Numeric values go
    into at most ``n_bins`` equal bins with round edges (:func:`nice_edges`) around their range
    (the range of the samples with X when ``x_only``: a property of X, which samples without X do
    not have; then there are no false-positive rates); ``categorical`` values get one bin each.
    Empty bins give NaN."""
    y = np.asarray(y, bool)
    values = np.asarray(values)
    owners = y if x_only else np.ones_like(y)
    if categorical:
        text = values.astype(str)
        labels = [str(v) for v in np.unique(text[owners])]
        member = [text == lab for lab in labels]
        out = {"bins": labels}
    else:
        v = values.astype(float)
        finite = owners & np.isfinite(v)
        lo, hi = (float(v[finite].min()), float(v[finite].max())) if finite.any() else (0.0, 0.0)
        edges = nice_edges(lo, hi, n_bins)
        index = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, edges.size - 2)
        member = [finite & (index == b) for b in range(edges.size - 1)]
        out = {"bin_edges": [float(e) for e in edges]}
    out["count_x"] = [int((m & y).sum()) for m in member]
    if not x_only:
        out["count_no_x"] = [int((m & ~y).sum()) for m in member]
    for method, pos in positive.items():
        pos = np.asarray(pos, bool)
        out[f"{method}_true_positive"] = [[_mean(row[m & y]) for m in member] for row in pos]
        if not x_only:
            out[f"{method}_false_positive"] = [[_mean(row[m & ~y]) for m in member] for row in pos]
    return out


def nice_edges(lo: float, hi: float, n_bins: int) -> np.ndarray:
    """At most ``n_bins`` equal bins with round edges (a step of 1, 2, 2.5 or 5 times a power of
    ten) that cover [lo, hi]: 251.9-349.6 in 4 bins gives 250, 275, 300, 325, 350."""
    if not hi > lo:
        return np.array([lo, lo + 1.0]) if np.isfinite(lo) else np.array([0.0, 1.0])
    raw = (hi - lo) / n_bins
    power = 10.0 ** np.floor(np.log10(raw))
    for step in (m * power * 10.0**k for k in (0, 1) for m in (1.0, 2.0, 2.5, 5.0)):
        if step < raw * (1 - 1e-9):
            continue
        start = np.floor(lo / step) * step
        count = max(1, int(np.ceil((hi - start) / step - 1e-9)))
        if count <= n_bins:
            return start + step * np.arange(count + 1)
    return np.linspace(lo, hi, n_bins + 1)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _acc(pred: np.ndarray, y: np.ndarray) -> list[float]:
    return [float(v) for v in (pred == y[None, :]).mean(axis=1)]


def _rate(pred: np.ndarray) -> list[float]:
    return [float(v) if pred.shape[1] else float("nan") for v in (pred.mean(axis=1) if pred.shape[1] else
                                                                  np.full(pred.shape[0], np.nan))]
