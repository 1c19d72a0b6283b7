"""The structure breakdown of ``xdisc evaluate``: detection and false-positive rates per bin of a
test-set parameter, on a table worked out by hand; the CNN verdicts per SNR level."""

from __future__ import annotations

import math

import numpy as np
import pytest
from xdisc.evaluate import level_verdicts, nice_edges, rates_by


@pytest.mark.parametrize(("lo", "hi", "n", "edges"), [
    (251.9, 349.6, 5, [250, 275, 300, 325, 350]),      # X depths of the default synthetics
    (21.55, 69.5, 5, [20, 30, 40, 50, 60, 70]),         # Moho depths
    (0.6, 19.8, 5, [0, 5, 10, 15, 20]),                 # X gradients
    (0.01, 0.06, 4, [0.0, 0.02, 0.04, 0.06]),
    (5.0, 5.0, 5, [5.0, 6.0]),                          # one value: one bin
])
def test_nice_edges_are_round_and_cover_the_range(lo, hi, n, edges):
    got = nice_edges(lo, hi, n)
    np.testing.assert_allclose(got, edges, atol=1e-12)
    assert got[0] <= lo and got[-1] >= hi and got.size - 1 <= n


def test_rates_by_a_numeric_parameter_of_every_station():
    # Moho depths 25 (2 with X, 1 without) and 45 km (1 with X, 2 without); two SNR levels
    moho = np.array([25.0, 25.0, 25.0, 45.0, 45.0, 45.0])
    y = np.array([1, 1, 0, 1, 0, 0])
    cnn = np.array([[1, 0, 1, 1, 0, 1],
                    [1, 1, 0, 1, 0, 0]], bool)
    r = rates_by(moho, y, {"cnn": cnn}, n_bins=2)
    assert r["bin_edges"] == [20.0, 40.0, 60.0]
    assert r["count_x"] == [2, 1] and r["count_no_x"] == [1, 2]
    assert r["cnn_true_positive"] == [[0.5, 1.0], [1.0, 1.0]]
    assert r["cnn_false_positive"] == [[1.0, 0.5], [0.0, 0.0]]


def test_rates_by_a_property_of_x_ignores_stations_without_x():
    # stations without X carry no X gradient (0 or NaN in the test file): they set neither the
    # bins nor any rate, and there is no false-positive rate
    grad = np.array([2.0, 18.0, 0.0, np.nan])
    y = np.array([1, 1, 0, 0])
    r = rates_by(grad, y, {"cnn": np.array([[True, False, True, True]])}, x_only=True, n_bins=4)
    assert r["bin_edges"] == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert r["count_x"] == [1, 0, 0, 1] and "count_no_x" not in r and "cnn_false_positive" not in r
    tp = r["cnn_true_positive"][0]
    assert tp[0] == 1.0 and tp[3] == 0.0 and math.isnan(tp[1]) and math.isnan(tp[2])  # empty bins: NaN


def test_rates_by_categories():
    kind = np.array(["none", "deep", "none", "deep", "lvz"])
    y = np.array([1, 0, 0, 1, 0])
    r = rates_by(kind, y, {"cnn": np.array([[1, 1, 0, 0, 0]], bool),
                           "stacking": np.array([[0, 0, 1, 1, 0]], bool)}, categorical=True)
    assert r["bins"] == ["deep", "lvz", "none"]
    assert r["count_x"] == [1, 0, 1] and r["count_no_x"] == [1, 1, 1]
    assert r["cnn_false_positive"] == [[1.0, 0.0, 0.0]] and r["stacking_false_positive"] == [[0.0, 0.0, 1.0]]
    assert r["stacking_true_positive"][0][0] == 1.0 and math.isnan(r["stacking_true_positive"][0][1])


def test_cnn_verdicts_per_level_bound_false_alarms_and_leave_the_unclear_undetermined(default_config):
    """Per SNR level: thresholds from one half of the stations, rates on the other. With the station's own
    conformal present threshold (cnn.adapt.present_probability null): where the scores separate the
    classes, few false alarms and few undetermined; where they do not (pure noise), the verdict is mostly
    undetermined and the false alarms stay near the configured rate. With the default present probability
    (0.9) the same cut at every level."""
    rng = np.random.default_rng(0)
    n = 2000
    y = np.arange(n) % 2 == 1
    dvs = np.where(y, 0.05, 0.0)
    clear = np.where(y, rng.uniform(0.7, 1.0, n), rng.uniform(0.0, 0.3, n))
    blind = rng.uniform(0.0, 1.0, n)
    default = level_verdicts(np.stack([blind, clear]), y, dvs, default_config["cnn"]["adapt"], seed=3)
    assert default["present_threshold"] == [0.9, 0.9] and default["false_alarm"][1] == 0.0
    # uniform scores are no calibrated probability: 10 % of the blind level's no-X scores reach 0.9
    assert default["false_alarm"][0] == pytest.approx(0.1, abs=0.03)
    own = {**default_config["cnn"]["adapt"], "present_probability": None}
    out = level_verdicts(np.stack([blind, clear]), y, dvs, own, seed=3)
    assert out["n_calibration"] + out["n_scored"] == n
    # scores that do not separate are decided at the configured rates only: 5 % present, 20 % absent
    assert out["false_alarm"][0] <= 0.08 and out["undetermined"][0] >= 0.7
    assert out["false_alarm"][1] == 0.0 and out["undetermined"][1] <= 0.01 and out["accuracy"][1] >= 0.99
    # absent: the 20th percentile (miss_rate) of the calibration half's X scores (uniform in 0.7-1), above 0.5
    assert out["present_threshold"][1] == 0.5 and out["absent_threshold"][1] == pytest.approx(0.76, abs=0.01)
