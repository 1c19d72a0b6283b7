"""H-kappa stacking (xdisc.stack.hk) on receiver functions of an independent forward code (telewavesim)."""

import numpy as np
import pytest
from conftest import need
from xdisc.core.deconvolution import deconvolve
from xdisc.stack.hk import crust_times, estimate_crust

DT, NPTS, PRE = 0.1, 2048, 10.0
WINDOW = slice(0, int((PRE + 60) / DT))
SLOWNESS = np.linspace(0.04, 0.08, 9)
VP = 6.3


def _receiver_functions(h_km, kappa, slowness=SLOWNESS):
    """Noise-free receiver functions (iterative deconvolution, Gaussian 2.5 rad/s as in xdisc's default)
    of a crust of thickness ``h_km``, vp 6.3 km/s, vp/vs ``kappa`` over an ak135-like mantle, from
    telewavesim (Kennett reflectivity)."""
    need("telewavesim")
    from oracles.telewavesim_ref import telewavesim_response

    out = []
    for p in slowness:
        _, r, z = telewavesim_response([h_km, 0.0], [VP, 8.04], [VP / kappa, 4.48], [2.8, 3.3], p, DT, NPTS,
                                       pre_p_s=PRE)
        out.append(deconvolve(z[WINDOW], r[WINDOW], DT, "iterative", 0.5, time_before_p_s=PRE).rf)
    time_s = np.arange(len(out[0])) * DT - PRE
    return time_s, np.array(out)


def _peak_near(trace, time_s, t, half_s=1.0):
    near = np.abs(time_s - t) <= half_s
    return time_s[near][np.argmax(np.abs(trace[near]))]


def test_predicted_phase_times_match_the_forward_code():
    """Ps and PpPs of crust_times are where the telewavesim receiver functions have their peaks."""
    time_s, rf = _receiver_functions(35.0, 1.75, slowness=[0.05, 0.075])
    for k, p in enumerate([0.05, 0.075]):
        t_ps, t_ppps, _ = crust_times(35.0, 1.75, VP, p)
        assert abs(_peak_near(rf[k], time_s, t_ps) - t_ps) <= 0.15
        assert abs(_peak_near(rf[k], time_s, t_ppps) - t_ppps) <= 0.25
    # moveout: at larger slowness Ps comes later, PpPs earlier
    a, b = crust_times(35.0, 1.75, VP, np.array([0.04, 0.08]))[:2]
    assert a[1] > a[0] and b[1] < b[0]


@pytest.mark.parametrize(("h_km", "kappa"), [(25.0, 1.68), (35.0, 1.75), (48.0, 1.85)])
def test_hk_recovers_thickness_and_vpvs_of_synthetic_crusts(h_km, kappa):
    time_s, rf = _receiver_functions(h_km, kappa)
    est = estimate_crust(rf, time_s, SLOWNESS, vp_km_s=VP, n_bootstrap=50)
    assert abs(est.h_km - h_km) <= 2.0, est.h_km
    assert abs(est.kappa - kappa) <= 0.03, est.kappa
    assert est.n_rf == len(SLOWNESS) and est.stack.max() == pytest.approx(1.0)


def test_hk_in_noise_with_bootstrap_errors():
    """Twenty receiver functions with noise of 10 % of direct P: H and kappa within 2 km and 0.03, and
    bootstrap errors that are finite, positive and cover the truth within 3 sigma."""
    time_s, clean = _receiver_functions(40.0, 1.78)
    rng = np.random.default_rng(7)
    rf = np.repeat(clean, 3, axis=0)[:20]
    p = np.repeat(SLOWNESS, 3)[:20]
    noise = rng.standard_normal(rf.shape)
    kernel = np.exp(-0.5 * (np.arange(-10, 11) * DT / 0.3) ** 2)  # band-limited, like deconvolved noise
    noise = np.array([np.convolve(n, kernel, "same") for n in noise])
    rf = rf + 0.1 * np.abs(clean).max() * noise / noise.std()
    est = estimate_crust(rf, time_s, p, vp_km_s=VP, n_bootstrap=100, seed=3)
    assert abs(est.h_km - 40.0) <= 2.0 and abs(est.kappa - 1.78) <= 0.03, (est.h_km, est.kappa)
    assert 0 < est.h_error_km < 5 and 0 < est.kappa_error < 0.1
    assert abs(est.h_km - 40.0) <= 3 * est.h_error_km + 0.5
    again = estimate_crust(rf, time_s, p, vp_km_s=VP, n_bootstrap=100, seed=3)
    assert (again.h_error_km, again.kappa_error) == (est.h_error_km, est.kappa_error)


def test_hk_refuses_too_few_receiver_functions():
    with pytest.raises(ValueError, match="at least 2"):
        estimate_crust(np.zeros((1, 700)), np.arange(700) * DT - PRE, [0.06])
