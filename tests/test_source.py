"""Extended earthquake sources in the synthetic set (``synthetics.source``): the spectrum against the
time-domain moment-rate function, the draws, and what the deconvolution leaves of them."""

import numpy as np
import pytest
from xdisc import config as cfgmod
from xdisc.core.deconvolution import RFSettings, deconvolve, normalise_by_p
from xdisc.core.earthmodel import load_model, replace_crust
from xdisc.synth.source import draw_source, mean_duration, sample_sources, source_spectrum
from xdisc.synth.synthetics import Layering, make_dataset, receiver_functions, response_spectra

SOURCE = cfgmod.validate({})["synthetics"]["source"]


def _triangle(t, t0, w):
    """Unit-area triangle on [t0, t0 + w], sampled."""
    return np.clip(1 - np.abs(t - t0 - w / 2) / (w / 2), 0, None) * 2 / w


def test_spectrum_is_that_of_the_moment_rate_function():
    # oracle: the FFT of the sampled time-domain function (triangles and the two echoes)
    dt, n = 0.01, 2**15
    t = np.arange(n) * dt
    src = {"duration_s": 5.0, "onset_s": np.array([0.0, 1.5]), "width_s": np.array([3.0, 3.5]),
           "weight": np.array([0.6, 0.4]), "pp_delay_s": 20.0, "pp_amplitude": -0.5, "sp_delay_s": 25.0,
           "sp_amplitude": 0.3}
    rate = 0.6 * _triangle(t, 0.0, 3.0) + 0.4 * _triangle(t, 1.5, 3.5)
    full = rate.copy()
    for amp, delay in ((-0.5, 20.0), (0.3, 25.0)):
        k = round(delay / dt)
        full[k:] += amp * rate[:n - k]
    f = np.fft.rfftfreq(n, dt)
    want = np.fft.rfft(full) * dt
    got = source_spectrum(src, f)
    band = f <= 1.5
    assert np.max(np.abs(got[band] - want[band])) < 2e-3
    assert got[0] == pytest.approx(1.0 - 0.5 + 0.3)
    np.testing.assert_array_equal(source_spectrum(None, f), np.ones(f.size))


def test_draws_are_reproducible_and_within_their_ranges():
    a = sample_sources(7, 3, 9, SOURCE)
    b = sample_sources(7, 3, 9, SOURCE)
    assert [None if s is None else s["duration_s"] for s in a] == [None if s is None else s["duration_s"] for s in b]
    rng = np.random.default_rng(0)
    draws = [draw_source(rng, SOURCE) for _ in range(2000)]
    extended = [s for s in draws if s is not None]
    assert 0.75 < len(extended) / 2000 < 0.85
    durations = np.array([s["duration_s"] for s in extended])
    assert durations.min() >= 0.5 and durations.max() <= 8.0
    for s in extended:
        assert np.all(s["onset_s"] + s["width_s"] <= s["duration_s"] + 1e-9)
        assert s["weight"].sum() == pytest.approx(1.0)
    with_echo = [s for s in extended if np.isfinite(s["pp_delay_s"])]
    assert 0.5 < len(with_echo) / len(extended) < 0.7
    assert all(-0.8 <= s["pp_amplitude"] <= -0.1 and s["sp_delay_s"] > s["pp_delay_s"] for s in with_echo)
    assert all(s is None for s in sample_sources(7, 3, 9, {**SOURCE, "probability": 0.0}))
    assert np.isnan(mean_duration([None, None]))


def _stack(sediment_km):
    cfg = cfgmod.validate({})
    m = replace_crust(load_model("ak135"), 40.0, 1.75, 1.0, sediment_km, 1.0, 2.4)
    return Layering(**cfg["layering"]).apply(m), RFSettings(**cfg["receiver_function"])


def test_receiver_function_with_a_source_equals_deconvolving_convolved_traces():
    # independent path: convolve the time series with the sampled source in the time domain
    stack, rf = _stack(0.0)
    src = {"duration_s": 3.0, "onset_s": np.array([0.0]), "width_s": np.array([3.0]), "weight": np.array([1.0]),
           "pp_delay_s": 12.0, "pp_amplitude": -0.4, "sp_delay_s": np.nan, "sp_amplitude": 0.0}
    got = receiver_functions([stack], [0.06], rf, sources=[[src]])[0, 0]
    r_spec, z_spec, nfft = response_spectra([stack], np.array([0.06]), rf, 409.6)
    f = np.fft.rfftfreq(nfft, rf.dt)
    shift = np.exp(-2j * np.pi * f * rf.time_before_p_s)
    z = np.fft.irfft(z_spec[0, 0] * shift, nfft)
    r = np.fft.irfft(r_spec[0, 0] * shift, nfft)
    t = np.arange(round(20 / rf.dt)) * rf.dt
    stf = _triangle(t, 0.0, 3.0) * rf.dt
    k = round(12.0 / rf.dt)
    stf[k:] -= 0.4 * stf[:stf.size - k]
    n_t = rf.time_axis().size
    zc, rc = np.convolve(z, stf)[:n_t], np.convolve(r, stf)[:n_t]
    want = deconvolve(zc, rc, rf.dt, rf.deconvolution, rf.gaussian_width_hz, time_before_p_s=rf.time_before_p_s,
                      max_iterations=rf.max_iterations, min_fit_change_percent=rf.min_fit_change_percent).rf
    time_s = rf.time_axis()
    a, b = normalise_by_p(got[None], time_s)[0], normalise_by_p(want[None], time_s)[0]
    assert np.max(np.abs(a - b)) < 0.02


def test_sediments_leave_a_source_residue_in_the_x_window():
    # what the independent network showed: behind 2 km of slow sediments an extended source leaves
    # residues of several % of P; without sediments they stay near zero
    src = {"duration_s": 4.0, "onset_s": np.array([0.0, 1.0]), "width_s": np.array([2.5, 3.0]),
           "weight": np.array([0.5, 0.5]), "pp_delay_s": np.nan, "pp_amplitude": 0.0, "sp_delay_s": np.nan,
           "sp_amplitude": 0.0}
    residue = {}
    for sed in (0.0, 2.0):
        stack, rf = _stack(sed)
        t = rf.time_axis()
        a = normalise_by_p(receiver_functions([stack], [0.06], rf)[0], t)[0]
        b = normalise_by_p(receiver_functions([stack], [0.06], rf, sources=[[src]])[0], t)[0]
        early, window = (t > 0) & (t < 10), (t > 25) & (t < 40)
        residue[sed] = (np.std(a[early] - b[early]), np.std(a[window] - b[window]))
        assert abs(b[np.argmin(np.abs(t))] - 1.0) < 0.3  # the direct P is still there
    assert residue[2.0][0] > 3 * residue[0.0][0] and residue[2.0][0] > 0.2      # measured 0.45 / 0.06
    assert residue[2.0][1] > 3 * residue[0.0][1] and residue[2.0][1] > 0.02     # measured 0.060 / 0.007


def test_dataset_records_the_sources_and_probability_zero_restores_impulses():
    base = {"synthetics": {"n_samples": 6, "slowness_s_per_km": [0.05, 0.07], "noise": {"enabled": False}}}
    with_src = make_dataset(cfgmod.validate(base))
    impulse = make_dataset(cfgmod.validate({"synthetics": {**base["synthetics"], "source": {"probability": 0.0}}}))
    assert "source_duration_s" in with_src and with_src["source_duration_s"].attrs["units"] == "s"
    assert np.all(np.isnan(impulse["source_duration_s"].values))
    assert np.isfinite(with_src["source_duration_s"].values).any()
    # everything but the receiver functions is the same draw
    np.testing.assert_array_equal(with_src["moho_km"].values, impulse["moho_km"].values)
    assert not np.allclose(with_src["rf_clean"].values, impulse["rf_clean"].values)
