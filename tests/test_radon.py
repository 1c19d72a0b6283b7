"""Reverberations removed in a sparse slant stack (xdisc.stack.radon)."""

import numpy as np
import pytest
from xdisc.core.earthmodel import load_model
from xdisc.core.moveout import delay_table, slowness_for_distance
from xdisc.stack.multiples import FIRST_ORDER, multiple_times
from xdisc.stack.radon import _SlantStack, remove_reverberations, squared_slowness_offsets
from xdisc.stack.stacking import ps_slowness_by_time, stack_station

DT = 0.1
TIME = np.round(np.arange(-10.0, 120.0 + 1e-9, DT), 6)
REL_S = np.round(np.arange(-0.3, 0.3 + 1e-9, 0.01), 6)
MODEL = load_model("ak135")


def _pulse(t0, amp, width=0.9):
    return amp * np.exp(-(((TIME[None, :] - np.asarray(t0)[:, None]) / width) ** 2))


def _aligned(rf, delay):
    """Mean over events of each trace at its own delay (what a moveout-corrected stack sees)."""
    return float(np.mean([np.interp(d, TIME, r) for r, d in zip(rf, delay, strict=True)]))


def _gather(seed, n=60):
    rng = np.random.default_rng(seed)
    dist = rng.uniform(32.0, 90.0, n)
    p = slowness_for_distance(dist, "ak135")
    ref, p_ref = float(np.median(dist)), float(np.median(p))
    return rng, dist, p, ref, p_ref


def test_the_adjoint_is_exact():
    """<L m, d> = <m, L^T d> for random m, d: FISTA's gradient is the true one."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-30, 30, 25)
    op = _SlantStack(TIME.size, DT, x, REL_S, rng.uniform(0.5, 2.0, 25))
    m = rng.standard_normal((REL_S.size, TIME.size))
    d = rng.standard_normal((25, TIME.size))
    assert np.vdot(op.forward(m), d) == pytest.approx(np.vdot(m, op.adjoint(d)), rel=1e-5)   # single precision
    assert op.lipschitz() >= np.linalg.norm(op.adjoint(op.forward(m))) / np.linalg.norm(m)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_removes_a_ppps_and_keeps_a_ps_of_the_same_time(noise):
    """60 receiver functions at 32-90 deg: the PpPs of a 77.5-km crust (0.08 of P, its amplitude growing
    with slowness) arrives at the reference slowness together with the Ps from 300 km (0.04; ak135 delays).
    After the subtraction the PpPs is gone (< 15 % of it stacked along its own moveout) and the Ps stays
    (within 15 % of its amplitude); the direct P and the crust before the fit's
    window (``start_s`` less its taper) are untouched."""
    rng, _dist, p, ref, p_ref = _gather(1)
    t_ps = delay_table(MODEL, [300.0], p)[:, 0]
    t_ref = delay_table(MODEL, [300.0], [p_ref])[0, 0]
    h = np.arange(40.0, 90.0, 0.05)
    h = h[np.argmin(np.abs(multiple_times(h, 1.75, 6.3, p_ref, FIRST_ORDER["PpPs"]) - t_ref))]
    t_m = multiple_times(h, 1.75, 6.3, p, FIRST_ORDER["PpPs"])
    amp_m = 0.08 * (1 + 5.0 * (p - p_ref))     # multiples grow with the angle of incidence
    rf = _pulse(np.zeros_like(p), 1.0) + _pulse(t_ps, 0.04) + amp_m[:, None] * _pulse(t_m, 1.0)
    rf += noise * rng.standard_normal(rf.shape)
    ps_u = ps_slowness_by_time(MODEL, TIME, p_ref, ref, np.arange(0.0, 800.0, 2.0))
    out = remove_reverberations(rf, TIME, squared_slowness_offsets(p, ref), REL_S, ps_u)
    assert abs(_aligned(out.removed, t_m) - _aligned(amp_m[:, None] * _pulse(t_m, 1.0), t_m)) < 0.15 * 0.08
    assert _aligned(out.rf, t_ps) == pytest.approx(0.04, rel=0.15)
    np.testing.assert_array_equal(out.removed[:, TIME < 12.0], 0.0)   # start_s 15 s less the 3-s taper
    assert out.rf[:, np.argmin(np.abs(TIME))].mean() == pytest.approx(1.0, abs=0.02)


def test_a_ps_alone_is_left_as_it_is():
    """A Ps conversion from 280 km and noise, nothing reverberating: almost nothing is subtracted."""
    rng, _dist, p, ref, p_ref = _gather(2)
    t_ps = delay_table(MODEL, [280.0], p)[:, 0]
    rf = _pulse(np.zeros_like(p), 1.0) + _pulse(t_ps, 0.04) + 0.01 * rng.standard_normal((p.size, TIME.size))
    ps_u = ps_slowness_by_time(MODEL, TIME, p_ref, ref, np.arange(0.0, 800.0, 2.0))
    out = remove_reverberations(rf, TIME, squared_slowness_offsets(p, ref), REL_S, ps_u)
    assert _aligned(out.rf, t_ps) > 0.9 * _aligned(rf, t_ps)
    assert np.abs(out.removed).max() < 0.01


def test_too_few_receiver_functions_are_left_alone():
    rng, dist, _p, ref, _p_ref = _gather(3, n=5)
    rf = rng.standard_normal((5, TIME.size))
    out = remove_reverberations(rf, TIME, dist - ref, REL_S, np.full(TIME.size, -0.05))
    np.testing.assert_array_equal(out.rf, rf)
    assert "5 receiver functions" in out.note


def test_stack_station_with_method_radon_takes_the_multiple_out_of_the_x_window():
    """stack_station with multiples.method radon: the PpPs of a thick crust that lands at 250-260 km in the
    depth stack is no longer there, the stack file says what was removed, and a Ps from 300 km stays."""
    from xdisc import config as cfgmod

    rng, dist, p, _ref, p_ref = _gather(4)
    t_ref = delay_table(MODEL, [255.0], [p_ref])[0, 0]
    h = np.arange(40.0, 90.0, 0.05)
    h = h[np.argmin(np.abs(multiple_times(h, 1.75, 6.3, p_ref, FIRST_ORDER["PpPs"]) - t_ref))]
    t_m = multiple_times(h, 1.75, 6.3, p, FIRST_ORDER["PpPs"])
    t_ps = delay_table(MODEL, [300.0], p)[:, 0]
    rf = (_pulse(np.zeros_like(p), 1.0) + _pulse(t_m, 0.1) + _pulse(t_ps, 0.04)
          + 0.005 * rng.standard_normal((p.size, TIME.size)))
    cfg = cfgmod.validate({})["stacking"]
    cfg["multiples"].update(suppress=False)
    plain = stack_station(rf, TIME, p, dist, MODEL, cfg)
    cfg["multiples"].update(suppress=True, method="radon", residual_fraction=0.0, radon_max_ringing=None)
    radon = stack_station(rf, TIME, p, dist, MODEL, cfg)
    z = plain["depth"].values
    near_m = (z >= 245) & (z <= 265)
    near_x = (z >= 295) & (z <= 305)
    assert plain["depth_stack"].values[near_m].max() > 0.03     # the PpPs, smeared along Ps moveout
    assert radon["depth_stack"].values[near_m].max() < 0.25 * plain["depth_stack"].values[near_m].max()
    assert radon["depth_stack"].values[near_x].max() == pytest.approx(plain["depth_stack"].values[near_x].max(),
                                                                      rel=0.2)
    assert np.nanmax(np.abs(radon["multiples_depth_stack"].values[near_m])) > 0.03
    assert "sparse slant stack" in radon.attrs["multiples_note"]
    assert radon.attrs["verdict"] == "present" and abs(radon.attrs["x_depth_km"] - 300) <= 5


def test_the_coherence_check_drops_leakage_of_a_scattered_reverberation_and_keeps_x():
    """A PpPs of 0.12 of P whose amplitude scatters by 80 % from event to event (30 receiver functions; the
    independent test networks' noisy single traces) arrives with Ps from 300 km. The sparse model cannot fit the
    scatter, and what it leaves along Ps moveout passes the verdict's other checks at some stations without X.
    With ``radon_coherent_fraction`` 0.5 (X must be held by the sparse model at a conversion's slownesses) fewer
    of them are called X, and every station with a Ps of 0.03 of P still is."""
    from xdisc import config as cfgmod

    cfg = cfgmod.validate({})["stacking"]
    cfg["crust"]["depth_conversion"] = False
    cfg["min_x_amplitude"] = 0.0  # the amplitude floor drops much of the leakage too; this is the coherence check
    cfg["multiples"].update(suppress=True, method="radon", residual_fraction=0.0, radon_max_ringing=None,
                            radon_noise_factor=None)
    called = {}
    for seed in range(40, 46):
        rng, dist, p, _ref, p_ref = _gather(seed, n=30)
        t_ref = delay_table(MODEL, [300.0], [p_ref])[0, 0]
        h = np.arange(40.0, 90.0, 0.05)
        h = h[np.argmin(np.abs(multiple_times(h, 1.75, 6.3, p_ref, FIRST_ORDER["PpPs"]) - t_ref))]
        t_m = multiple_times(h, 1.75, 6.3, p, FIRST_ORDER["PpPs"])
        t410, t660 = delay_table(MODEL, [410.0, 660.0], p).T
        amp = 0.12 * (1 + 0.8 * rng.standard_normal(p.size))
        rf = (_pulse(np.zeros_like(p), 1.0) + amp[:, None] * _pulse(t_m, 1.0) + _pulse(t410, 0.05)
              + _pulse(t660, 0.05) + 0.01 * rng.standard_normal((p.size, TIME.size)))
        for x in (False, True):
            data = rf + (_pulse(delay_table(MODEL, [300.0], p)[:, 0], 0.03) if x else 0.0)
            for held in (0.0, 0.5):
                cfg["multiples"]["radon_coherent_fraction"] = held
                called[seed, x, held] = stack_station(data, TIME, p, dist, MODEL, cfg).attrs["verdict"] == "present"
    without_x = {held: sum(called[s, False, held] for s in range(40, 46)) for held in (0.0, 0.5)}
    assert without_x[0.0] >= 3 and without_x[0.5] < without_x[0.0]    # leakage called X, then less often
    assert all(called[s, True, 0.5] for s in range(40, 46))


def _ringing_gather(seed, r0, dt_s=1.6, n=40):
    """P, the Moho's Ps, the 410, the 660 and a Ps from 300 km (ak135 delays at each event's slowness), each
    followed by a sediment layer's ringing: copies (-r0)^k at k dt_s (r0 = 0: none)."""
    rng, dist, p, _ref, _p_ref = _gather(seed, n=n)
    t300, t410, t660 = delay_table(MODEL, [300.0, 410.0, 660.0], p).T
    arrivals = [(np.zeros_like(p), 1.0), (np.full(p.size, 4.5), 0.2), (t300, 0.04), (t410, 0.05), (t660, 0.05)]
    rf = sum(_pulse(t + k * dt_s, a * (-r0) ** k) for t, a in arrivals for k in range(10))
    return rf + 0.005 * rng.standard_normal((p.size, TIME.size)), p, dist


def test_radon_max_ringing_keeps_the_plain_stack_at_a_ringing_station_and_the_slant_stack_elsewhere():
    """multiples.radon_max_ringing 0.3: at a station whose receiver functions ring like soft sediment (r0 0.5)
    the slant stack is not used: nothing is subtracted, the stack is the plain one, the file says why; at a
    station that does not ring it is (something subtracted, the sparse slant stack's note). The station's
    ringing strength is in the file either way."""
    from xdisc import config as cfgmod

    cfg = cfgmod.validate({})["stacking"]
    cfg["multiples"].update(suppress=True, method="radon", radon_max_ringing=0.3)
    plain_cfg = cfgmod.validate({"stacking": {"multiples": {"suppress": False}}})["stacking"]
    ringing, p, dist = _ringing_gather(5, r0=0.5)
    gated = stack_station(ringing, TIME, p, dist, MODEL, cfg)
    plain = stack_station(ringing, TIME, p, dist, MODEL, plain_cfg)
    assert gated.attrs["ringing_r0"] == pytest.approx(0.5, abs=0.12)
    assert "the station rings" in gated.attrs["multiples_note"]
    assert np.all(np.isnan(gated["multiples_depth_stack"].values))
    np.testing.assert_array_equal(gated["depth_stack"].values, plain["depth_stack"].values)
    assert gated.attrs["verdict"] == plain.attrs["verdict"] and gated.attrs["reason"] == plain.attrs["reason"]
    quiet, p, dist = _ringing_gather(5, r0=0.0)
    used = stack_station(quiet, TIME, p, dist, MODEL, cfg)
    assert used.attrs["ringing_r0"] < 0.3
    assert "sparse slant stack" in used.attrs["multiples_note"]
    assert np.isfinite(used["multiples_depth_stack"].values).any()


def test_radon_noise_factor_applies_only_where_the_slant_stack_was_used():
    """multiples.radon_noise_factor replaces noise_factor in the verdict of a station whose receiver functions
    went through the slant stack, and nowhere else: an unreachable factor turns the X of a quiet station
    'absent' (its reason names the factor) and leaves the ringing station's verdict as the plain stack's."""
    from xdisc import config as cfgmod

    cfg = cfgmod.validate({})["stacking"]
    cfg["multiples"].update(suppress=True, method="radon", radon_max_ringing=0.3, radon_noise_factor=None)
    strict = {**cfg, "multiples": {**cfg["multiples"], "radon_noise_factor": 1000.0}}
    quiet, p, dist = _ringing_gather(6, r0=0.0)
    assert stack_station(quiet, TIME, p, dist, MODEL, cfg).attrs["verdict"] == "present"
    refused = stack_station(quiet, TIME, p, dist, MODEL, strict).attrs
    assert refused["verdict"] == "absent" and "amplitude > 1000.0 x noise" in refused["reason"]
    ringing, p, dist = _ringing_gather(6, r0=0.5)
    assert (stack_station(ringing, TIME, p, dist, MODEL, strict).attrs["reason"]
            == stack_station(ringing, TIME, p, dist, MODEL, cfg).attrs["reason"])
