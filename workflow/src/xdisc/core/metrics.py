"""Classification metrics for the CNN and agreement statistics between two sets of verdicts.

Pure numpy/scipy, so the report and the tests can use them without torch. Definitions follow
scikit-learn (the test oracle) wherever it has one.

Conventions shared by every function here:

- ``y_true`` holds binary labels (``0``/``1`` or booleans, 1 = X present). Any other value, or
  arrays of different lengths, raise :class:`ValueError` at once.
- ``prob`` holds probabilities in [0, 1] (values outside raise :class:`ValueError`), ``score``
  any real number where larger means "more likely present" (a probability or a logit).
- A quantity that the data do not define is ``NaN``, never an exception: no samples, a rate
  whose denominator is zero (precision without predicted positives, recall without positives,
  AUC with one class only), or any ``NaN`` among the probabilities or scores. A ``NaN``
  probability is *not* silently dropped: it makes every metric that depends on it ``NaN``, so
  that a broken prediction shows up in the report; drop such samples beforehand if intended.
  Counts (``n``, ``n_positive``, confusion matrices) stay defined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

TEMPERATURE_BOUNDS = (1e-2, 1e2)  # search interval of fit_temperature


class Reliability(NamedTuple):
    """Reliability-diagram bins: ``n_bins + 1`` edges; per bin mean probability, frequency of
    positives (``NaN`` for an empty bin) and number of samples."""

    edges: np.ndarray
    mean_prob: np.ndarray
    frequency: np.ndarray
    counts: np.ndarray


# --------------------------------------------------------------------------------------------------
# input checks


def _labels(y_true) -> np.ndarray:
    y = np.asarray(y_true)
    if y.dtype == bool:
        return y.ravel()
    y = np.asarray(y, dtype=float).ravel()
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"labels must be 0 or 1, got {np.unique(y[bad])[:5].tolist()}")
    return y.astype(bool)


def _pair(y_true, score) -> tuple[np.ndarray, np.ndarray]:
    y = _labels(y_true)
    s = np.asarray(score, dtype=float).ravel()
    if s.shape != y.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} and {s.size}")
    return y, s


def _probabilities(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    y, p = _pair(y_true, prob)
    if ((p < 0.0) | (p > 1.0)).any():  # NaN compares False and passes
        raise ValueError("probabilities must lie in [0, 1]")
    return y, p


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


# --------------------------------------------------------------------------------------------------
# threshold metrics


def confusion(y_true, y_pred) -> np.ndarray:
    """2x2 count matrix ``[[TN, FP], [FN, TP]]``: rows true label 0/1, columns predicted 0/1.

    Same layout as ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=[0, 1])``; all zeros
    when there are no samples."""
    y, p = _labels(y_true), _labels(y_pred)
    if y.shape != p.shape:
        raise ValueError(f"true and predicted labels differ in length: {y.size} and {p.size}")
    return np.array([[np.sum(~y & ~p), np.sum(~y & p)], [np.sum(y & ~p), np.sum(y & p)]], dtype=int)


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict:
    """Scores of probabilities ``prob`` against ``y_true``; ``prob >= threshold`` is a positive.

    Returns accuracy, precision, recall (= sensitivity, true-positive rate), f1, specificity
    (true-negative rate), roc_auc, n, n_positive, ece (10 equal-width bins), brier and the
    threshold. ``f1 = 2 TP / (2 TP + FP + FN)`` (0 when there are positives but none is found).
    Undefined values are ``NaN`` (see the module docstring)."""
    y, p = _probabilities(y_true, prob)
    n, n_pos = int(y.size), int(y.sum())
    out = {"accuracy": math.nan, "precision": math.nan, "recall": math.nan, "f1": math.nan,
           "specificity": math.nan, "roc_auc": math.nan, "n": n, "n_positive": n_pos, "ece": math.nan,
           "brier": math.nan, "threshold": float(threshold)}
    if n == 0 or np.isnan(p).any():
        return out
    (tn, fp), (fn, tp) = confusion(y, p >= threshold)
    out.update(accuracy=_ratio(tp + tn, n), precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn),
               f1=_ratio(2 * tp, 2 * tp + fp + fn), specificity=_ratio(tn, tn + fp), roc_auc=roc_auc(y, p),
               ece=expected_calibration_error(y, p), brier=brier_score(y, p))
    return out


def brier_score(y_true, prob) -> float:
    """Mean squared difference between probability and label (``NaN`` without samples)."""
    y, p = _probabilities(y_true, prob)
    return float(np.mean((p - y) ** 2)) if y.size else math.nan


# --------------------------------------------------------------------------------------------------
# ranking metrics


def roc_curve(y_true, score, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic: false-positive rate, true-positive rate, thresholds.

    As ``sklearn.metrics.roc_curve``: one point per distinct score (tied scores move the curve
    diagonally, never in steps that depend on the sample order), decreasing thresholds, the first
    one ``inf`` (nothing predicted positive, point (0, 0)); ``drop_intermediate`` removes points
    on straight segments. A sample is positive at threshold ``t`` when ``score >= t``.
    Without samples, with one class only or with a ``NaN`` score the curve is undefined and all
    three arrays are ``[nan]``."""
    y, s = _pair(y_true, score)
    n_pos = int(y.sum())
    if y.size == 0 or n_pos in (0, y.size) or np.isnan(s).any():
        nan = np.array([math.nan])
        return nan, nan.copy(), nan.copy()
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # last index of each run of equal scores
    tps = np.cumsum(y)[last].astype(float)
    fps = (last + 1) - tps
    thresholds = s[last]
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fpr = np.r_[0.0, fps] / fps[-1]
    tpr = np.r_[0.0, tps] / tps[-1]
    return fpr, tpr, np.r_[np.inf, thresholds]


def roc_auc(y_true, score) -> float:
    """Area under the ROC curve (trapezoid rule over :func:`roc_curve`).

    Equals the Mann-Whitney probability that a random positive scores higher than a random
    negative, ties counting one half. ``NaN`` for one class, no samples or a ``NaN`` score."""
    fpr, tpr, _ = roc_curve(y_true, score, drop_intermediate=False)
    if np.isnan(fpr).any():
        return math.nan
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(y_true, score, fpr: float = 0.05) -> float:
    """Highest true-positive rate reachable with a score threshold whose false-positive rate is
    at most ``fpr`` (a vertex of the ROC curve, no interpolation between thresholds).

    ``NaN`` where :func:`roc_curve` is undefined."""
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must lie in [0, 1], got {fpr}")
    rates_fp, rates_tp, _ = roc_curve(y_true, score, drop_intermediate=False)
    if np.isnan(rates_fp).any():
        return math.nan
    return float(rates_tp[rates_fp <= fpr + 1e-12].max())


# --------------------------------------------------------------------------------------------------
# calibration


def reliability(y_true, prob, n_bins: int = 10) -> Reliability:
    """Bin probabilities into ``n_bins`` equal-width bins on [0, 1] (each bin ``[lo, hi)``, the
    last one closed); per bin the mean probability, the frequency of positives and the count.

    Empty bins have ``NaN`` mean and frequency. A ``NaN`` probability makes every mean and
    frequency ``NaN``; the counts then count the finite probabilities."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    y, p = _probabilities(y_true, prob)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    finite = ~np.isnan(p)
    idx = np.clip(np.searchsorted(edges, p[finite], side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    mean_prob = np.full(n_bins, math.nan)
    frequency = np.full(n_bins, math.nan)
    if finite.all():
        filled = counts > 0
        mean_prob[filled] = np.bincount(idx, weights=p, minlength=n_bins)[filled] / counts[filled]
        frequency[filled] = np.bincount(idx, weights=y.astype(float), minlength=n_bins)[filled] / counts[filled]
    return Reliability(edges, mean_prob, frequency, counts)


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """Expected calibration error: ``sum_b (n_b / n) |frequency_b - mean_prob_b|`` over the bins
    of :func:`reliability`. ``NaN`` without samples or with a ``NaN`` probability."""
    bins = reliability(y_true, prob, n_bins)
    n = bins.counts.sum()
    if n == 0 or np.isnan(bins.mean_prob[bins.counts > 0]).any():
        return math.nan
    filled = bins.counts > 0
    gap = np.abs(bins.frequency[filled] - bins.mean_prob[filled])
    return float(np.sum(bins.counts[filled] * gap) / n)


def fit_temperature(logits, y_true) -> float:
    """Temperature ``T > 0`` that minimises the negative log-likelihood of ``sigmoid(logit / T)``.

    ``T > 1`` softens over-confident logits. The search runs over ``log T`` within
    :data:`TEMPERATURE_BOUNDS` (a perfectly separated set drives ``T`` to the lower bound).
    Returns ``1.0`` (no change) when the data hold no calibration information: no samples,
    labels of one class only, or all logits zero; ``NaN`` when a logit is ``NaN``."""
    y, z = _pair(y_true, logits)
    if np.isnan(z).any():
        return math.nan
    n_pos = int(y.sum())
    if n_pos in (0, y.size) or not np.any(z != 0.0):
        return 1.0
    yf = y.astype(float)

    def nll(log_t: float) -> float:
        u = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, u) - yf * u))  # -log sigmoid, stable for large |u|

    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
    return float(math.exp(res.x))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logit / T)``."""
    return expit(np.asarray(logits, dtype=float) / temperature)


# --------------------------------------------------------------------------------------------------
# agreement between two raters (stacking and CNN verdicts)


def _crosstab(a: Sequence, b: Sequence, categories: Sequence) -> np.ndarray:
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"the two sets of verdicts differ in length: {len(a)} and {len(b)}")
    index = {c: i for i, c in enumerate(categories)}
    if len(index) != len(categories):
        raise ValueError(f"categories must be distinct: {list(categories)}")
    table = np.zeros((len(index), len(index)), dtype=int)
    for u, v in zip(a, b, strict=True):
        if u in index and v in index:
            table[index[u], index[v]] += 1
    return table


def _kappa(table: np.ndarray) -> float:
    n = table.sum()
    if n == 0:
        return math.nan
    observed = np.trace(table) / n
    expected = float(table.sum(axis=1) @ table.sum(axis=0)) / n**2
    return float((observed - expected) / (1.0 - expected)) if expected < 1.0 else math.nan


def cohen_kappa(a: Sequence, b: Sequence, categories: Sequence) -> float:
    """Cohen's kappa of two raters over ``categories``.

    Pairs in which either label is not one of ``categories`` are left out (as with the
    ``labels`` argument of ``sklearn.metrics.cohen_kappa_score``). ``NaN`` when no pair is left
    or when both raters put every pair in the same single category (chance agreement 1)."""
    return _kappa(_crosstab(a, b, categories))


def agreement_summary(a: Sequence, b: Sequence, categories: Sequence) -> dict:
    """Agreement of two raters over the pairs whose labels are both in ``categories``.

    Returns ``n`` (pairs counted), ``n_agree``, ``agreement`` (fraction, ``NaN`` when ``n`` is 0),
    ``kappa`` (:func:`cohen_kappa`) and ``confusion``: nested dict ``{label_a: {label_b: count}}``
    over every category, in the given order."""
    table = _crosstab(a, b, categories)
    n, n_agree = int(table.sum()), int(np.trace(table))
    return {
        "n": n, "n_agree": n_agree, "agreement": _ratio(n_agree, n), "kappa": _kappa(table),
        "confusion": {str(ca): {str(cb): int(table[i, j]) for j, cb in enumerate(categories)}
                      for i, ca in enumerate(categories)},
    }
