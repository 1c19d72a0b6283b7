"""Deconvolution: physics checks and the rf package (trichter/rf) as oracle."""

import numpy as np
import pytest
from rf.deconvolve import deconv_iterative, deconv_waterlevel
from xdisc.core.deconvolution import deconvolve, peak_normalised_gaussian

DT = 0.1


def _wavelet(n=3000, seed=0, broadband=False):
    """A realistic source: a damped oscillation (or a short broadband pulse) with a random coda."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * DT
    if broadband:
        w = np.exp(-(((t - 60) / 0.4) ** 2))
    else:
        w = np.exp(-0.5 * ((t - 60) / 2.0) ** 2) * np.sin(2 * np.pi * 0.25 * (t - 60))
    coda = np.convolve(rng.standard_normal(n), np.exp(-np.arange(200) * DT / 5.0), "same") * 0.02
    return w + coda * (t > 60)


def _delayed(x, delay_s):
    f = np.fft.rfftfreq(x.size, DT)
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * delay_s), x.size)


@pytest.mark.parametrize("method", ["iterative", "waterlevel"])
def test_spike_comes_back_at_zero_with_unit_amplitude(method):
    z = _wavelet(broadband=True)
    r = 1.0 * z + 0.3 * _delayed(z, 5.0) - 0.2 * _delayed(z, 12.0)
    d = deconvolve(z, r, DT, method, 0.5, time_before_p_s=10.0, n_out=600, water_level=1e-4)
    t = np.arange(600) * DT - 10.0
    for t0, amp in ((0.0, 1.0), (5.0, 0.3), (12.0, -0.2)):
        i = np.argmin(np.abs(t - t0))
        j = i - 3 + np.argmax(np.sign(amp) * d.rf[i - 3:i + 4])
        assert abs(t[j] - t0) <= DT + 1e-9
        assert d.rf[j] == pytest.approx(amp, abs=0.03)
    assert d.fit_percent > 95


def test_gaussian_normalisation_peak_is_one():
    g = peak_normalised_gaussian(4096, DT, 0.5)
    pulse = np.fft.irfft(g, 4096)
    assert pulse.max() == pytest.approx(1.0)
    assert np.argmax(pulse) == 0


def _noisy_pair(seed):
    rng = np.random.default_rng(seed)
    z = _wavelet(seed=seed)
    r = 0.45 * z + 0.08 * _delayed(z, 4.3) + 0.04 * _delayed(z, 14.1) - 0.03 * _delayed(z, 17.8)
    r += 0.01 * np.convolve(rng.standard_normal(z.size), np.ones(5) / 5, "same")
    z += 0.005 * rng.standard_normal(z.size)
    return z, r


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_iterative_matches_rf_package(seed):
    z, r = _noisy_pair(seed)
    ours = deconvolve(z, r, DT, "iterative", 0.5, time_before_p_s=10.0, max_iterations=200,
                      min_fit_change_percent=0.001).rf
    theirs = deconv_iterative([r], z, 1 / DT, tshift=10.0, gauss=0.5, itmax=200, minderr=0.001,
                              normalize=None)[0][0]
    assert np.corrcoef(ours, theirs)[0, 1] >= 0.99


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_waterlevel_matches_rf_package(seed):
    z, r = _noisy_pair(seed)
    ours = deconvolve(z, r, DT, "waterlevel", 0.5, time_before_p_s=10.0, water_level=0.01).rf
    theirs = np.real(deconv_waterlevel([r], z, 1 / DT, waterlevel=0.01, gauss=0.5, tshift=10.0,
                                       normalize=None)[0])
    assert np.corrcoef(ours, theirs)[0, 1] >= 0.99


@pytest.mark.parametrize("method", ["iterative", "waterlevel"])
def test_batch_equals_one_by_one(method):
    pairs = [_noisy_pair(s) for s in (4, 5, 6)]
    z = np.stack([p[0] for p in pairs])
    r = np.stack([p[1] for p in pairs])
    batch = deconvolve(z, r, DT, method, 0.5, n_out=800)
    for i in range(3):
        one = deconvolve(z[i], r[i], DT, method, 0.5, n_out=800)
        np.testing.assert_allclose(batch.rf[i], one.rf, atol=1e-10)
        assert batch.iterations[i] == one.iterations


def test_bad_input_is_a_clear_error():
    z, r = _noisy_pair(7)
    r[100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        deconvolve(z, r, DT)
    with pytest.raises(ValueError, match="unknown deconvolution method"):
        deconvolve(z, z, DT, "magic")


def test_silent_source_gives_nan_not_garbage():
    z, r = _noisy_pair(8)
    out = deconvolve(np.stack([z, np.zeros_like(z)]), np.stack([r, r]), DT, "iterative", 0.5)
    assert np.all(np.isfinite(out.rf[0]))
    assert np.all(np.isnan(out.rf[1])) and np.isnan(out.fit_percent[1])


def test_fft_length_is_the_rf_packages():
    # the circular water-level result depends on the FFT length: scipy.fft's real-input length (used
    # here) must stay the rf package's (scipy.fftpack, 5-smooth)
    import scipy.fft
    import scipy.fftpack

    assert all(scipy.fft.next_fast_len(n, real=True) == scipy.fftpack.next_fast_len(n) for n in range(1, 20000))


def _spike_trains_numpy(xc, acorr, power_s, power_r, active, max_iterations, min_change):
    """The iterations as whole-batch numpy updates (xdisc's form until 2026-12-01): the reference of the
    compiled loop, which must give the same spikes to the last bit."""
    b, n_lag = xc.shape
    windows = np.lib.stride_tricks.sliding_window_view(acorr, n_lag, axis=1)[:, ::-1]
    spikes, misfit, active = np.zeros((b, n_lag)), np.ones(b), active.copy()
    iterations, rows = np.zeros(b, int), np.arange(b)
    for _ in range(max_iterations):
        if not active.any():
            break
        idx = np.argmax(np.abs(xc), axis=-1)
        peak = xc[rows, idx].astype(float)
        amp = np.where(active, peak / power_s, 0.0)
        spikes[rows, idx] += amp
        xc -= windows[rows, idx] * amp.astype(np.float32)[:, None]
        gain = np.where(active, peak**2 / power_s / power_r, 0.0)
        iterations += active
        misfit = misfit - gain
        active &= 100.0 * gain > min_change
    return spikes, misfit, iterations


@pytest.mark.parametrize(("max_iterations", "min_change"), [(400, 0.001), (60, 0.5)])
def test_compiled_iterations_equal_the_numpy_form(max_iterations, min_change):
    from xdisc.core.deconvolution import _spike_trains

    rng = np.random.default_rng(11)
    b, n_lag = 6, 700
    t = np.arange(-(n_lag - 1), n_lag) * DT
    acorr = (np.exp(-((t / 1.5) ** 2)) + 0.05 * np.cos(2 * np.pi * 0.2 * t) * np.exp(-np.abs(t) / 20))
    acorr = (acorr[None] * rng.uniform(0.5, 2.0, (b, 1))).astype(np.float32)
    xc = (rng.standard_normal((b, n_lag)) * rng.uniform(0.1, 3.0, (b, 1))).astype(np.float32)
    xc[2, 100] = xc[2, 300] = 50.0  # a tie: the first one wins, as np.argmax
    power_s, power_r = acorr[:, n_lag - 1].astype(float), np.full(b, 2e4)
    active = np.array([True, True, True, False, True, True])
    ref = _spike_trains_numpy(xc.copy(), acorr, power_s, power_r, active, max_iterations, min_change)
    out = _spike_trains(xc.copy(), acorr, power_s, power_r, active, max_iterations, min_change)
    for a, c in zip(ref, out, strict=True):
        np.testing.assert_array_equal(a, c)
    assert out[2][3] == 0 and np.all(out[0][3] == 0)  # an inactive trace gets no spike
    assert len(set(out[2][active])) > 1  # some traces stop early, others run on: both paths are compared
    first = _spike_trains(xc.copy(), acorr, power_s, power_r, active, 1, min_change)[0]
    assert first[2, 100] != 0 and first[2, 300] == 0  # on a tie the first lag wins, as np.argmax
