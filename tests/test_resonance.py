"""The resonance filter of a sediment layer's ringing (xdisc.stack.resonance), against its closed form.

A layer whose base reflects r0 makes every conversion ring: copies (-r0)^n delayed by n dt. The
normalised autocorrelation of such a series is -r0 at lag dt, and rf(t) + r0 rf(t - dt) is its exact
inverse (Yu et al. 2015, eq. 3): what is left is the conversions alone.
"""

import numpy as np
import pytest
from xdisc.stack import resonance

TIME = np.arange(-10.0, 120.0, 0.1)


def _pulse(t0, amp=1.0, width=0.5):
    return amp * np.exp(-(((TIME - t0) / width) ** 2))


def _ringing(conversions, dt_s, r0, orders=12):
    """Conversions (time, amplitude), each followed by its copies (-r0)^n at n dt."""
    return sum(_pulse(t + n * dt_s, a * (-r0) ** n) for t, a in conversions for n in range(orders))


CONVERSIONS = [(0.0, 1.0), (4.5, 0.25), (30.0, 0.04)]  # P, the Moho's Ps, X


@pytest.mark.parametrize("dt_s, r0", [(1.2, 0.6), (2.5, 0.45)])
def test_ringing_is_measured_and_removed_and_the_conversions_stay(dt_s, r0):
    rf = np.tile(_ringing(CONVERSIONS, dt_s, r0), (5, 1))
    est_dt, est_r0 = resonance.estimate(rf, TIME)
    assert est_dt == pytest.approx(dt_s, abs=0.15)
    assert est_r0 == pytest.approx(r0, abs=0.1)
    out = resonance.apply(rf, TIME, est_dt, est_r0)[0]
    clean = sum(_pulse(t, a) for t, a in CONVERSIONS)
    # the first copy of X (at 30 s + dt) was -r0 of it; what is left there is a small part of that
    copy = np.abs(TIME - (30.0 + dt_s)) < 0.3
    assert np.max(np.abs(out[copy])) < 0.3 * r0 * 0.04 + 0.003
    # X keeps its amplitude within 15 %, and in the X window (20-40 s) the filtered trace is the clean one
    # to within a third of what the ringing put there (the estimate is biased by the Moho's own ringing)
    at_x = np.abs(TIME - 30.0) < 0.3
    assert out[at_x].max() == pytest.approx(0.04, rel=0.15)
    window = (TIME > 20.0) & (TIME < 40.0)
    assert np.max(np.abs(out - clean)[window]) < np.max(np.abs(rf[0] - clean)[window]) / 3


def test_a_station_without_ringing_shows_no_trough():
    rf = np.tile(sum(_pulse(t, a) for t, a in CONVERSIONS) + _pulse(14.5, 0.08) + _pulse(17.8, -0.07), (5, 1))
    _, r0 = resonance.estimate(rf, TIME)
    assert r0 < 0.2  # below the default min_strength (0.3): the stack leaves it as it is


def test_nothing_to_filter_changes_nothing():
    rf = np.tile(_pulse(0.0), (3, 1))
    assert np.array_equal(resonance.apply(rf, TIME, float("nan"), 0.5), rf)
    assert np.isnan(resonance.estimate(np.full((2, TIME.size), np.nan), TIME)[0])
