"""Classification metrics for the CNN and agreement statistics between two sets of verdicts.

The counting and the ranking are scikit-learn's (``sklearn.metrics``); this module adds what it does
not do the same way: one NaN policy for undefined values (below), reliability bins closed on the
left with the expected calibration error, and temperature scaling. No torch, so the report and the
tests can use it on their own.

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
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

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
    """2x2 count matrix ``[[TN, FP], [FN, TP]]``: rows true label 0/1, columns predicted 0/1
    (``sklearn.metrics.confusion_matrix`` with ``labels=[0, 1]``); all zeros without samples."""
    y, p = _labels(y_true), _labels(y_pred)
    if y.shape != p.shape:
        raise ValueError(f"true and predicted labels differ in length: {y.size} and {p.size}")
    if y.size == 0:
        return np.zeros((2, 2), dtype=int)
    return skm.confusion_matrix(y, p, labels=[False, True]).astype(int)


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict:
    """Scores of probabilities ``prob`` against ``y_true``; ``prob >= threshold`` is a positive.

    Returns accuracy, precision, recall (= sensitivity, true-positive rate), f1, specificity
    (true-negative rate, the recall of the negatives), roc_auc, n, n_positive, ece (10 equal-width
    bins), brier and the threshold. ``f1 = 2 TP / (2 TP + FP + FN)`` (0 when there are positives but
    none is found). Undefined values are ``NaN`` (see the module docstring)."""
    y, p = _probabilities(y_true, prob)
    n, n_pos = int(y.size), int(y.sum())
    out = {"accuracy": math.nan, "precision": math.nan, "recall": math.nan, "f1": math.nan,
           "specificity": math.nan, "roc_auc": math.nan, "n": n, "n_positive": n_pos, "ece": math.nan,
           "brier": math.nan, "threshold": float(threshold)}
    if n == 0 or np.isnan(p).any():
        return out
    pred = p >= threshold
    rates = {key: float(fn(y, pred, zero_division=math.nan))
             for key, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score))}
    out.update(accuracy=float(skm.accuracy_score(y, pred)), **rates,
               specificity=float(skm.recall_score(~y, ~pred, zero_division=math.nan)), roc_auc=roc_auc(y, p),
               ece=expected_calibration_error(y, p), brier=brier_score(y, p))
    return out


def brier_score(y_true, prob) -> float:
    """Mean squared difference between probability and label (``NaN`` without samples or with a
    ``NaN`` probability).

    ``sklearn.metrics.mean_squared_error``: ``brier_score_loss`` gives the same number computed
    over two columns, which can differ in the last bit."""
    y, p = _probabilities(y_true, prob)
    return math.nan if y.size == 0 or np.isnan(p).any() else float(skm.mean_squared_error(y, p))


# --------------------------------------------------------------------------------------------------
# ranking metrics


def _one_class(y: np.ndarray, s: np.ndarray) -> bool:
    """True where ROC quantities are undefined: no samples, one class only or a ``NaN`` score."""
    return y.size == 0 or int(y.sum()) in (0, y.size) or bool(np.isnan(s).any())


def roc_curve(y_true, score, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic (``sklearn.metrics.roc_curve``): false-positive rate,
    true-positive rate and decreasing thresholds, the first one ``inf``; tied scores move the curve
    diagonally. A sample is positive at threshold ``t`` when ``score >= t``; scores may be infinite.
    Without samples, with one class only or with a ``NaN`` score the curve is undefined and all
    three arrays are ``[nan]``."""
    y, s = _pair(y_true, score)
    if _one_class(y, s):
        nan = np.array([math.nan])
        return nan, nan.copy(), nan.copy()
    # sklearn refuses infinite scores (a saturated logit); the curve depends on the order only
    values, rank = np.unique(s, return_inverse=True)
    fpr, tpr, thresholds = skm.roc_curve(y, rank, drop_intermediate=drop_intermediate)
    return fpr, tpr, np.r_[np.inf, values[thresholds[1:].astype(int)]]


def roc_auc(y_true, score) -> float:
    """Area under the ROC curve (the Mann-Whitney probability that a random positive scores higher
    than a random negative, ties counting one half). ``NaN`` for one class, no samples or a ``NaN``
    score.

    The trapezoid rule (``sklearn.metrics.auc``) over every distinct score; ``roc_auc_score`` drops
    the collinear points first and can differ in the last bit."""
    fpr, tpr, _ = roc_curve(y_true, score, drop_intermediate=False)
    return math.nan if np.isnan(fpr).any() else float(skm.auc(fpr, tpr))


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


def _rated(a: Sequence, b: Sequence, categories: Sequence) -> tuple[list, list]:
    """The pairs of ``a`` and ``b`` whose labels are both among ``categories``, as two lists."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"the two sets of verdicts differ in length: {len(a)} and {len(b)}")
    if len(set(categories)) != len(categories):
        raise ValueError(f"categories must be distinct: {list(categories)}")
    kept = [(u, v) for u, v in zip(a, b, strict=True) if u in categories and v in categories]
    return [u for u, _ in kept], [v for _, v in kept]


@contextmanager
def _quiet():
    """No sklearn warning for what this module defines: kappa when both raters use one and the same
    category (``NaN``), a 1x1 table when a single category is asked for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", "A single label was found", UserWarning)
        yield


def _kappa(a: list, b: list, categories: Sequence) -> float:
    if not a:
        return math.nan
    with _quiet():
        return float(skm.cohen_kappa_score(a, b, labels=list(categories), replace_undefined_by=math.nan))


def cohen_kappa(a: Sequence, b: Sequence, categories: Sequence) -> float:
    """Cohen's kappa of two raters over ``categories`` (``sklearn.metrics.cohen_kappa_score``).

    Pairs in which either label is not one of ``categories`` are left out. ``NaN`` when no pair is
    left or when both raters put every pair in the same single category (chance agreement 1)."""
    return _kappa(*_rated(a, b, categories), categories)


def agreement_summary(a: Sequence, b: Sequence, categories: Sequence) -> dict:
    """Agreement of two raters over the pairs whose labels are both in ``categories``.

    Returns ``n`` (pairs counted), ``n_agree``, ``agreement`` (fraction, ``NaN`` when ``n`` is 0),
    ``kappa`` (:func:`cohen_kappa`) and ``confusion``: nested dict ``{label_a: {label_b: count}}``
    over every category, in the given order."""
    a, b = _rated(a, b, categories)
    k = len(categories)
    with _quiet():
        table = skm.confusion_matrix(a, b, labels=list(categories)) if a else np.zeros((k, k), dtype=int)
    n, n_agree = len(a), int(np.trace(table))
    return {
        "n": n, "n_agree": n_agree, "agreement": _ratio(n_agree, n), "kappa": _kappa(a, b, categories),
        "confusion": {str(ca): {str(cb): int(table[i, j]) for j, cb in enumerate(categories)}
                      for i, ca in enumerate(categories)},
    }
