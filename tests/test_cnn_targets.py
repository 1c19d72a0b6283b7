"""Pieces of tests/benchmarks/cnn_targets.py: the noise controls of its real-noise test.

Phase randomisation must keep every trace's amplitude spectrum and take its bursts away (a heavy-tailed trace
becomes Gaussian); the generator's pool must be the training noise of the configured colour.
"""

import benchmark_scripts
import numpy as np
from scipy.stats import kurtosis
from xdisc import config as cfgmod
from xdisc.core.deconvolution import RFSettings


def _targets():
    return benchmark_scripts.load("cnn_targets")


def _bursty(rng: np.random.Generator, n_traces: int, n: int) -> np.ndarray:
    """Gaussian noise with a few bursts ten times as strong: heavy tails (excess kurtosis well above 5)."""
    x = rng.standard_normal((n_traces, n))
    for row in x:
        for start in rng.integers(0, n - 50, 4):
            row[start:start + 50] *= 10.0
    return x


def test_phase_randomised_keeps_the_spectrum_and_removes_the_bursts():
    rng = np.random.default_rng(0)
    pool = _bursty(rng, 3, 1800)
    pool[2, 1700:] = np.nan  # a shorter trace, NaN-padded at the end
    assert np.median(kurtosis(pool[:2], axis=1)) > 5
    out = _targets().phase_randomised(pool, 20, np.random.default_rng(1))
    assert out.shape == (60, 1800)
    for k, row in enumerate(out):
        src = pool[k % 3]
        n = int(np.isfinite(src).sum())
        assert np.isfinite(row[:n]).all() and np.isnan(row[n:]).all()
        want = np.abs(np.fft.rfft(src[:n] - src[:n].mean()))
        np.testing.assert_allclose(np.abs(np.fft.rfft(row[:n])), want, rtol=1e-8, atol=1e-8 * want.max())
    assert abs(np.median(kurtosis(out[:, :1700], axis=1))) < 0.5


def test_generator_pool_is_the_configured_training_noise():
    cfg = cfgmod.load(None)
    cfg["synthetics"]["noise"].update(colour_exponent=[0.0, 0.0], microseism_amplitude=[20.0, 20.0],
                                      microseism_hz=[0.2, 0.2])
    rf = RFSettings(**cfg["receiver_function"])
    pool = _targets().generator_pool(cfg, rf, 8, 2048, np.random.default_rng(2))
    assert pool.shape == (8, 2048)
    np.testing.assert_allclose(pool.std(axis=1), 1.0, rtol=1e-6)
    f = np.fft.rfftfreq(2048, rf.dt)
    power = np.mean(np.abs(np.fft.rfft(pool, axis=1)) ** 2, axis=0)
    band = (f > 0.15) & (f < 0.25)  # the microseism peak, 30 % wide around 0.2 Hz
    assert power[band].sum() / power.sum() > 0.5
