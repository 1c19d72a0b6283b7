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
    Ps stays (> 80 % of its amplitude)."""
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
    assert after_ps > 0.8 * 0.04, (before_ps, after_ps)
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
    assert _aligned(out.rf, p, t_ps) > 0.85 * _aligned(rf, p, t_ps)
    removed = out.removed[out.removed != 0]
    assert np.sqrt(np.mean(removed ** 2)) < 0.005 and np.abs(removed).max() < 0.03  # noise 0.01


def test_too_few_receiver_functions_are_left_alone():
    p = np.array([0.05, 0.06, 0.07])
    rf = _pulse(multiple_times(H, KAPPA, VP, p, (1, 1)), 0.1)
    out = suppress_multiples(rf, TIME, p, H, KAPPA, VP)
    np.testing.assert_array_equal(out.rf, rf)


def test_a_multiple_whose_amplitude_grows_with_slowness_is_removed_at_every_slowness():
    """PpPs from 0.05 of P at 0.04 s/km to 0.11 at 0.08 s/km: one median waveform would leave a third of it
    at the ends of the slowness range; scaled by the fitted line in slowness, less than 15 % is left."""
    rng = np.random.default_rng(6)
    p = np.sort(rng.uniform(0.04, 0.08, 40))
    amp = 0.05 + 1.5 * (p - 0.04)
    t_m = multiple_times(H, KAPPA, VP, p, FIRST_ORDER["PpPs"])
    rf = _pulse(np.zeros_like(p), 1.0) + np.array([_pulse([t], a)[0] for t, a in zip(t_m, amp, strict=True)])
    phases = {"PpPs": FIRST_ORDER["PpPs"]}
    for scaled, limit in ((False, None), (True, 0.15)):
        out = suppress_multiples(rf, TIME, p, H, KAPPA, VP, phases=phases, scale_with_slowness=scaled)
        left = np.array([np.interp(t, TIME, r) for r, t in zip(out.rf, t_m, strict=True)]) / amp
        if limit is None:
            assert np.abs(left[[0, -1]]).max() > 0.2  # the plain median leaves the ends
        else:
            assert np.abs(left).max() < limit, left


def test_a_narrow_slowness_range_gets_one_scale_without_warnings():
    """Slownesses within 0.005 s/km: no line in slowness to fit; the multiple is still removed."""
    import warnings

    p = np.linspace(0.060, 0.065, 12)
    t_m = multiple_times(H, KAPPA, VP, p, FIRST_ORDER["PpPs"])
    rf = _pulse(np.zeros_like(p), 1.0) + _pulse(t_m, 0.08)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = suppress_multiples(rf, TIME, p, H, KAPPA, VP, phases={"PpPs": FIRST_ORDER["PpPs"]})
    assert abs(_aligned(out.rf, p, t_m)) < 0.01


def test_stack_station_subtracts_the_orders_it_is_told():
    """stacking.multiples.order 3 subtracts the first-, second- and third-order reverberations; the stack
    file keeps the receiver functions as they were, and the default subtracts nothing."""
    from xdisc import config as cfgmod
    from xdisc.core.earthmodel import load_model
    from xdisc.stack.stacking import stack_station

    cfg = cfgmod.validate({"stacking": {"multiples": {"suppress": True, "method": "predicted",
                                                            "order": 3}}})["stacking"]
    rng = np.random.default_rng(9)
    p = rng.uniform(0.04, 0.08, 20)
    rf = _pulse(np.zeros_like(p), 1.0) + _pulse(crust_times(35.0, 1.75, 6.08, p)[0], 0.2) \
        + 0.01 * rng.standard_normal((20, TIME.size))
    ds = stack_station(rf, TIME, p, None, load_model("ak135"), cfg)
    note = ds.attrs["multiples_note"]
    assert note.startswith("subtracted: PpPs, PpSs, PpPpPs") and "s6" in note, note
    from xdisc.core.deconvolution import normalise_by_p

    shown = normalise_by_p(rf, TIME).astype(np.float32)  # the file shows them as they are
    np.testing.assert_array_equal(ds["rf"].values, shown)
    off = stack_station(rf, TIME, p, None, load_model("ak135"),
                        cfgmod.validate({"stacking": {"multiples": {"suppress": False}}})["stacking"])
    assert off.attrs["multiples_note"] == ""
    # the file keeps the depth stack of what was subtracted (NaN where nothing was)
    assert np.all(np.isfinite(ds["multiples_depth_stack"].values)) and np.abs(ds["multiples_depth_stack"]).max() > 0
    assert np.all(np.isnan(off["multiples_depth_stack"].values))


def test_residual_floor_drops_what_the_subtraction_leaves_and_keeps_x_under_a_multiple():
    """60 receiver functions of a 25-km crust (Ps, PpPs, PpSs), the 410 and 660, little noise (0.002 of P),
    and a third-order reverberation (P3s3, 0.1 of P) that arrives with Ps from 300 km. With the multiples
    subtracted, what the subtraction leaves (under 0.001 of P) passes as X on its own (present), and
    ``multiples.residual_fraction`` 0.5 (the default) makes it absent. A real X of 0.03 under the same
    multiple stays present at 0.5; at 1.0 the floor is above it, and the reason says why."""
    from xdisc import config as cfgmod
    from xdisc.core.earthmodel import load_model
    from xdisc.core.moveout import delay_table
    from xdisc.stack.multiples import THIRD_ORDER
    from xdisc.stack.stacking import stack_station

    ref = load_model("ak135")
    rng = np.random.default_rng(3)
    p = rng.uniform(0.045, 0.078, 60)
    h, kappa, vp = 25.0, 1.75, 6.08
    ps, ppps, ppss = crust_times(h, kappa, vp, p)
    t_x, t410, t660 = delay_table(ref, [300.0, 410.0, 660.0], p).T
    t_m = multiple_times(h, kappa, vp, p, THIRD_ORDER["P3s3"])
    base = _pulse(np.zeros_like(p), 1.0) + _pulse(ps, 0.15) + _pulse(ppps, 0.06) - _pulse(ppss, 0.04) \
        + _pulse(t410, 0.03) + _pulse(t660, 0.05) + _pulse(t_m, 0.1)
    assert cfgmod.validate({})["stacking"]["multiples"]["residual_fraction"] == 0.5
    out = {}
    for x in (0.0, 0.03):
        rf = base + _pulse(t_x, x) + 0.002 * rng.standard_normal((p.size, TIME.size))
        for fraction in (0.0, 0.5, 1.0):
            # the mantle's pulses sit at the earth model's delays: its depth conversion, not the 25-km crust's
            # no amplitude floor (min_x_amplitude): it would drop the residue too, and this is the residual floor
            cfg = cfgmod.validate({"stacking": {"crust": {"depth_conversion": False}, "min_x_amplitude": 0.0,
                                                "multiples": {"suppress": True, "method": "predicted",
                                                              "order": 3,
                                                              "residual_fraction": fraction}}})["stacking"]
            out[x, fraction] = stack_station(rf, TIME, p, None, ref, cfg).attrs
    assert out[0.0, 0.0]["verdict"] == "present" and out[0.0, 0.0]["x_amp"] < 0.001, out[0.0, 0.0]
    assert out[0.0, 0.5]["verdict"] == "absent"
    assert "not amplitude > 0.5 x the multiples subtracted there" in out[0.0, 0.5]["reason"]
    assert out[0.03, 0.5]["verdict"] == "present" and abs(out[0.03, 0.5]["x_depth_km"] - 300) <= 3
    assert out[0.03, 1.0]["verdict"] == "absent"
    assert out[0.03, 1.0]["reason"] == "not amplitude > 1 x the multiples subtracted there"


def test_a_robust_refit_left_at_one_slowness_keeps_the_line():
    """Six events at one slowness agree exactly with the first fitted line and the other four lie far off it:
    the robust refit would keep only events at one slowness, where a line is undetermined (numpy's fit then
    warns or fails). The scale stays the first fit, without warnings."""
    import warnings

    from xdisc.stack.multiples import _slowness_trend

    p = np.array([0.05] * 6 + [0.04, 0.06, 0.03, 0.07])
    amp = np.array([1.0] * 6 + [7.0, -5.0, -5.0, 7.0])  # centred on (0.05, 1): the first line passes through it
    template = np.array([1.0, 2.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scale = _slowness_trend(amp[:, None] * template[None, :], template, p)
    first = np.polyfit(p - p.mean(), amp, 1)
    np.testing.assert_allclose(scale, np.clip(np.polyval(first, p - p.mean()), 0.0, 3.0))
