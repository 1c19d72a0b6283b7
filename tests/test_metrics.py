"""The metrics module: what it adds to scikit-learn (the NaN policy, reliability bins and ECE, temperature
scaling, the TPR at a given FPR, kappa over a subset of categories), on hand-worked cases and degenerate
inputs. The counting and the ROC itself are scikit-learn's and are not re-tested here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit
from xdisc.core import metrics as M

# --------------------------------------------------------------------------------------------------
# hand-made cases


def test_roc_hand_made():
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    fpr, tpr, thr = M.roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])
    assert M.roc_auc(y, s) == pytest.approx(0.75)
    assert M.tpr_at_fpr(y, s, 0.05) == pytest.approx(0.5)
    assert M.tpr_at_fpr(y, s, 0.0) == pytest.approx(0.5)
    assert M.tpr_at_fpr(y, s, 0.5) == pytest.approx(1.0)


def test_tied_scores_move_the_curve_diagonally():
    # scores 0.9 (+), 0.5 (+ and -), 0.1 (-): the tie is one point, never half of it
    y, s = [0, 1, 1, 0], [0.5, 0.5, 0.9, 0.1]
    fpr, tpr, thr = M.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.5, 0.1])
    assert M.roc_auc(y, s) == pytest.approx(0.875)  # 3 wins and 1 tie out of 4 pairs
    assert M.tpr_at_fpr(y, s, 0.25) == pytest.approx(0.5)  # the tie cannot be split by a threshold
    # the order of tied samples does not matter
    assert M.roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.1]) == pytest.approx(0.875)


def test_perfect_and_inverted_ranking():
    y = [0, 0, 1, 1]
    assert M.roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert M.roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert M.tpr_at_fpr(y, [0.1, 0.2, 0.8, 0.9], 0.0) == 1.0


def test_binary_metrics_hand_made():
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [0.9, 0.6, 0.4, 0.2, 0.7, 0.1, 0.5, 0.5]  # 0.5 counts as present (>= threshold)
    got = M.binary_metrics(y, p)
    # TP: 0.9, 0.6, 0.5 -> 3; FN: 0.4 -> 1; FP: 0.7, 0.5 -> 2; TN: 0.2, 0.1 -> 2
    np.testing.assert_array_equal(M.confusion(y, np.asarray(p) >= 0.5), [[2, 2], [1, 3]])
    assert got["accuracy"] == pytest.approx(5 / 8)
    assert got["precision"] == pytest.approx(3 / 5)
    assert got["recall"] == pytest.approx(3 / 4)
    assert got["specificity"] == pytest.approx(2 / 4)
    assert got["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert got["brier"] == pytest.approx(np.mean((np.asarray(p) - np.asarray(y)) ** 2))
    assert (got["n"], got["n_positive"]) == (8, 4)


def test_reliability_bins_and_ece_by_hand():
    y = [0, 1, 1, 0, 1]
    p = [0.0, 0.05, 0.5, 0.55, 1.0]  # 0.5 opens bin [0.5, 0.6); 1.0 closes the last bin
    bins = M.reliability(y, p, n_bins=10)
    np.testing.assert_allclose(bins.edges, np.linspace(0, 1, 11))
    np.testing.assert_array_equal(bins.counts, [2, 0, 0, 0, 0, 2, 0, 0, 0, 1])
    np.testing.assert_allclose(bins.mean_prob[[0, 5, 9]], [0.025, 0.525, 1.0])
    np.testing.assert_allclose(bins.frequency[[0, 5, 9]], [0.5, 0.5, 1.0])
    assert np.isnan(bins.mean_prob[1]) and np.isnan(bins.frequency[1])
    want = (2 * abs(0.5 - 0.025) + 2 * abs(0.5 - 0.525) + 1 * 0.0) / 5
    assert M.expected_calibration_error(y, p) == pytest.approx(want)
    assert M.reliability(y, p, n_bins=1).counts.tolist() == [5]


def test_ece_of_a_calibrated_set_is_small_and_of_an_overconfident_one_large():
    rng = np.random.default_rng(11)
    p = rng.random(20000)
    y = rng.random(p.size) < p
    assert M.expected_calibration_error(y, p) < 0.03
    overconfident = np.clip(0.5 + 1.8 * (p - 0.5), 0, 1)
    assert M.expected_calibration_error(y, overconfident) > 0.1


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(t_true):
    # calibrated log-odds z; the network reports logit = t_true * z, so sigmoid(logit / t_true) is calibrated
    rng = np.random.default_rng(5)
    z = rng.normal(0.0, 2.0, 50000)
    y = rng.random(z.size) < expit(z)
    logits = t_true * z
    t = M.fit_temperature(logits, y)
    assert t == pytest.approx(t_true, rel=0.05)
    before = M.expected_calibration_error(y, expit(logits))
    after = M.expected_calibration_error(y, M.apply_temperature(logits, t))
    assert after < 0.02 < before


def test_temperature_of_calibrated_logits_is_one():
    rng = np.random.default_rng(6)
    z = rng.normal(0.0, 1.5, 40000)
    y = rng.random(z.size) < expit(z)
    assert M.fit_temperature(z, y) == pytest.approx(1.0, rel=0.05)


# --------------------------------------------------------------------------------------------------
# degenerate inputs: NaN, never an exception deep in numpy, never a warning


@pytest.mark.filterwarnings("error")
def test_empty_input():
    got = M.binary_metrics([], [])
    assert got["n"] == 0 and got["n_positive"] == 0
    for key in ("accuracy", "precision", "recall", "f1", "specificity", "roc_auc", "ece", "brier"):
        assert math.isnan(got[key]), key
    np.testing.assert_array_equal(M.confusion([], []), [[0, 0], [0, 0]])
    assert all(np.isnan(a).all() for a in M.roc_curve([], []))
    assert math.isnan(M.roc_auc([], [])) and math.isnan(M.tpr_at_fpr([], []))
    assert M.reliability([], []).counts.sum() == 0
    assert math.isnan(M.expected_calibration_error([], []))
    assert M.fit_temperature([], []) == 1.0
    assert math.isnan(M.cohen_kappa([], [], ["present", "absent"]))
    s = M.agreement_summary([], [], ["present", "absent"])
    assert s["n"] == 0 and math.isnan(s["agreement"]) and math.isnan(s["kappa"])
    assert s["confusion"] == {"present": {"present": 0, "absent": 0}, "absent": {"present": 0, "absent": 0}}


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("label", [0, 1])
def test_one_class_only(label):
    y = [label] * 5
    p = [0.1, 0.4, 0.6, 0.8, 0.9]
    got = M.binary_metrics(y, p)
    assert math.isnan(got["roc_auc"])
    assert math.isfinite(got["accuracy"]) and math.isfinite(got["brier"]) and math.isfinite(got["ece"])
    if label == 1:
        assert got["recall"] == pytest.approx(3 / 5) and math.isnan(got["specificity"])
    else:
        assert got["specificity"] == pytest.approx(2 / 5) and math.isnan(got["recall"])
        assert got["precision"] == 0.0 and got["f1"] == 0.0
    assert all(np.isnan(a).all() for a in M.roc_curve(y, p))
    assert math.isnan(M.tpr_at_fpr(y, p))
    assert M.fit_temperature(np.log(np.divide(p, np.subtract(1, p))), y) == 1.0


@pytest.mark.filterwarnings("error")
def test_no_predicted_positive_gives_nan_precision():
    got = M.binary_metrics([1, 0, 1], [0.1, 0.2, 0.3])
    assert math.isnan(got["precision"]) and got["recall"] == 0.0 and got["f1"] == 0.0
    assert got["specificity"] == 1.0


@pytest.mark.filterwarnings("error")
def test_nan_probability_makes_the_scores_nan():
    y, p = [0, 1, 1, 0], [0.2, np.nan, 0.7, 0.1]
    got = M.binary_metrics(y, p)
    assert got["n"] == 4 and got["n_positive"] == 2
    for key in ("accuracy", "precision", "recall", "f1", "specificity", "roc_auc", "ece", "brier"):
        assert math.isnan(got[key]), key
    assert math.isnan(M.roc_auc(y, p)) and math.isnan(M.tpr_at_fpr(y, p))
    assert all(np.isnan(a).all() for a in M.roc_curve(y, p))
    bins = M.reliability(y, p)
    assert np.isnan(bins.mean_prob).all() and bins.counts.sum() == 3
    assert math.isnan(M.expected_calibration_error(y, p))
    assert math.isnan(M.fit_temperature([0.1, np.nan, 2.0, -1.0], y))


@pytest.mark.filterwarnings("error")
def test_kappa_undefined_when_both_raters_use_one_category():
    a = b = ["present"] * 4
    assert math.isnan(M.cohen_kappa(a, b, ["present", "absent"]))
    s = M.agreement_summary(a, b, ["present", "absent"])
    assert s["agreement"] == 1.0 and math.isnan(s["kappa"])


def test_all_zero_logits_and_separable_logits():
    assert M.fit_temperature([0.0, 0.0, 0.0], [0, 1, 1]) == 1.0
    t = M.fit_temperature([-3.0, -1.0, 2.0, 4.0], [0, 0, 1, 1])  # separable: T as small as allowed
    assert t == pytest.approx(M.TEMPERATURE_BOUNDS[0], rel=1e-3)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        M.binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        M.roc_auc([0, np.nan], [0.1, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        M.binary_metrics([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.binary_metrics([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="differ in length"):
        M.cohen_kappa(["present"], [], ["present"])
    with pytest.raises(ValueError, match="fpr"):
        M.tpr_at_fpr([0, 1], [0.1, 0.2], fpr=1.5)
    with pytest.raises(ValueError, match="n_bins"):
        M.reliability([0, 1], [0.1, 0.2], n_bins=0)


def test_boolean_labels_are_accepted():
    y = np.array([True, False, True])
    assert M.roc_auc(y, [0.9, 0.1, 0.8]) == 1.0
    np.testing.assert_array_equal(M.confusion(y, [True, True, False]), [[0, 1], [1, 1]])


def test_kappa_and_confusion_over_a_subset_of_categories_by_hand():
    a = ["present", "present", "absent", "absent", "undetermined", "present"]
    b = ["present", "absent", "absent", "absent", "present", "undetermined"]
    # kept: (p, p), (p, a), (a, a), (a, a): observed 3/4; rows p 2, a 2; columns p 1, a 3: chance (2 + 6) / 16
    assert M.cohen_kappa(a, b, ["present", "absent"]) == pytest.approx((0.75 - 0.5) / (1 - 0.5))
    s = M.agreement_summary(a, b, ["present", "absent"])
    assert (s["n"], s["n_agree"], s["agreement"]) == (4, 3, 0.75)
    assert s["confusion"] == {"present": {"present": 1, "absent": 1}, "absent": {"present": 0, "absent": 2}}
    full = M.agreement_summary(a, b, ["present", "absent", "undetermined"])
    assert full["n"] == 6 and full["confusion"]["undetermined"] == {"present": 1, "absent": 0, "undetermined": 0}


@pytest.mark.filterwarnings("error")
def test_infinite_scores_are_ranked_not_refused():
    # saturated logits: +inf above everything, -inf below; 3 wins out of 4 pairs
    y, s = [0, 0, 1, 1], [-np.inf, 0.2, 0.1, np.inf]
    assert M.roc_auc(y, s) == pytest.approx(0.75)
    fpr, tpr, thr = M.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, np.inf, 0.2, 0.1, -np.inf])
    assert M.tpr_at_fpr(y, s, 0.0) == pytest.approx(0.5)
