"""Crustal multiples predicted from the crust and subtracted (xdisc.stack.multiples)."""

import numpy as np
import pytest
from xdisc.stack.hk import crust_times
from xdisc.stack.multiples import FIRST_ORDER, multiple_times, suppress_multiples

DT = 0.1
TIME = np.round(np.arange(-10.0, 120.0 + 1e-9, DT), 6)
H, KAPPA, VP = 60.0, 1.75, 6.3


def _pulse(t0, amp, width=0.5):
    return amp * np.exp(-0.5 * ((TIME[None, :] - np.asarray(t0)[:, None]) / width) ** 2)


def _aligned(rf, p, delay):
    """Mean over events of each trace at its own delay (what a moveout-corrected stack sees)."""
    return np.mean([np.interp(d, TIME, r) for r, d in zip(rf, delay, strict=True)])


def test_multiple_times_are_those_of_hk():
    p = np.linspace(0.04, 0.08, 5)
    _, ppps, ppss = crust_times(H, KAPPA, VP, p)
    np.testing.assert_allclose(multiple_times(H, KAPPA, VP, p, FIRST_ORDER["PpPs"]), ppps)
    np.testing.assert_allclose(multiple_times(H, KAPPA, VP, p, FIRST_ORDER["PpSs"]), ppss)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_removes_a_ppps_and_keeps_a_ps_of_the_same_time(noise):
    """40 receiver functions: the PpPs of a 60-km crust (0.08 of P) and a Ps conversion (0.04) that arrives
    at the same time at slowness 0.06 s/km but moves out the other way (70 s per s/km, about that of a Ps
    from 300 km). After the subtraction the PpPs is gone (its aligned stack < 15 % of what it was) and the
    Ps stays (> 85 % of its amplitude)."""
    rng = np.random.default_rng(4)
    p = rng.uniform(0.04, 0.08, 40)
    t_m = multiple_times(H, KAPPA, VP, p, FIRST_ORDER["PpPs"])
    t_ps = multiple_times(H, KAPPA, VP, np.array([0.06]), FIRST_ORDER["PpPs"])[0] + 70.0 * (p - 0.06)
    rf = _pulse(np.zeros_like(p), 1.0) + _pulse(t_m, 0.08) + _pulse(t_ps, 0.04)
    rf += noise * rng.standard_normal(rf.shape)
    out = suppress_multiples(rf, TIME, p, H, KAPPA, VP, phases={"PpPs": FIRST_ORDER["PpPs"]})
    before_m, after_m = _aligned(rf, p, t_m), _aligned(out.rf, p, t_m)
    before_ps, after_ps = _aligned(rf, p, t_ps), _aligned(out.rf, p, t_ps)
    assert abs(after_m) < 0.15 * before_m, (before_m, after_m)
    assert after_ps > 0.85 * 0.04, (before_ps, after_ps)
    # the direct P and everything far from the multiple are untouched
    far = np.abs(TIME[None, :] - t_m[:, None]) > 2.5
    np.testing.assert_array_equal(out.removed[far], 0.0)
    assert out.templates["PpPs"].max() == pytest.approx(0.08, rel=0.2)


def test_without_multiples_nothing_much_is_removed():
    """Only a Ps conversion (from about 300 km) and noise, every multiple of a 35-km crust subtracted (one
    of them arrives with the Ps): the median of the aligned windows is small, the Ps stays."""
    rng = np.random.default_rng(5)
    p = rng.uniform(0.04, 0.08, 40)
    t_ps = 29.5 + 70.0 * (p - 0.06)
    rf = _pulse(np.zeros_like(p), 1.0) + _pulse(t_ps, 0.04) + 0.01 * rng.standard_normal((40, TIME.size))
    out = suppress_multiples(rf, TIME, p, 35.0, 1.75, VP)
    assert _aligned(out.rf, p, t_ps) > 0.9 * _aligned(rf, p, t_ps)
    assert np.abs(out.removed).max() < 0.02


def test_too_few_receiver_functions_are_left_alone():
    p = np.array([0.05, 0.06, 0.07])
    rf = _pulse(multiple_times(H, KAPPA, VP, p, (1, 1)), 0.1)
    out = suppress_multiples(rf, TIME, p, H, KAPPA, VP)
    np.testing.assert_array_equal(out.rf, rf)
