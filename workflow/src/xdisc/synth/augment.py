"""Seeded augmentation of receiver functions: noise, spurious arrivals, jitter, shifts, trimming.

Every function takes a ``numpy.random.Generator`` and arrays shaped (..., time); the
synthetics stage draws one generator per sample (from the run seed and the sample index),
so results do not depend on batch size or the number of workers. The CNN trainer applies
the same functions on the fly.
"""

from __future__ import annotations

import numpy as np

from xdisc.core.deconvolution import direct_p, gaussian_filter


def noise_colour(f: np.ndarray, exponent: float = 0.0, microseism: tuple | None = None) -> np.ndarray:
    """Amplitude spectrum of the added noise before the Gaussian low-pass: f^(-exponent/2)
    (1 at the lowest non-zero frequency, 0 at 0 Hz), plus with ``microseism`` = (amplitude, centre_hz)
    a Gaussian peak with a relative width of 30 % around the centre, ``amplitude`` times the power
    law at the centre: the microseism band (about 0.1-0.3 Hz) that dominates the noise of real
    receiver functions."""
    colour = np.zeros_like(f, dtype=float)
    colour[1:] = (f[1:] / f[1]) ** (-exponent / 2.0)
    if microseism is not None and microseism[0] > 0:
        amplitude, centre = microseism
        at_centre = (centre / f[1]) ** (-exponent / 2.0)
        colour[1:] += amplitude * at_centre * np.exp(-0.5 * ((f[1:] - centre) / (0.3 * centre)) ** 2)
    return colour


def coloured_noise(rng: np.random.Generator, shape, dt: float, width_hz: float,
                   exponent: float = 0.0, microseism: tuple | None = None) -> np.ndarray:
    """Band-limited noise with unit standard deviation per trace.

    White Gaussian noise shaped by the receiver-function Gaussian low-pass of ``width_hz``
    and the amplitude spectrum :func:`noise_colour` (exponent 0 = white within the band, 1 = pink;
    optional microseism peak).
    """
    shape = tuple(np.atleast_1d(shape))
    n = shape[-1]
    nfft = int(2 ** np.ceil(np.log2(2 * n)))
    white = rng.standard_normal((*shape[:-1], nfft))
    f = np.fft.rfftfreq(nfft, dt)
    colour = noise_colour(f, exponent, microseism)
    spec = np.fft.rfft(white) * gaussian_filter(f, width_hz) * colour
    noise = np.fft.irfft(spec, nfft)[..., :n]
    std = noise.std(axis=-1, keepdims=True)
    return noise / np.where(std > 0, std, 1.0)


def real_noise(rng: np.random.Generator, pool: np.ndarray, shape) -> np.ndarray:
    """Random windows from a pool of real noise traces (trace, time), unit std per window, random
    polarity. Traces may be NaN-padded at the end (different lengths): a window starts anywhere
    that keeps it inside the trace's finite part; traces shorter than the window are never drawn."""
    shape = tuple(np.atleast_1d(shape))
    n = shape[-1]
    if pool.ndim != 2:
        raise ValueError(f"real noise pool needs shape (trace, time), got {pool.shape}")
    length = np.isfinite(pool).cumprod(axis=1).sum(axis=1)  # finite samples at the start of each trace
    usable = np.flatnonzero(length >= n)
    if usable.size == 0:
        raise ValueError(f"real noise pool has no trace of at least {n} samples")
    count = int(np.prod(shape[:-1], dtype=int))
    rows = usable[rng.integers(0, usable.size, count)]
    starts = (rng.random(count) * (length[rows] - n + 1)).astype(int)
    idx = starts[:, None] + np.arange(n)[None, :]
    out = pool[rows[:, None], idx]
    out = out - out.mean(axis=-1, keepdims=True)
    std = out.std(axis=-1, keepdims=True)
    sign = rng.choice([-1.0, 1.0], size=(count, 1))
    return (sign * out / np.where(std > 0, std, 1.0)).reshape(shape)


def direct_p_amplitude(rf: np.ndarray, time_s: np.ndarray, half_width_s: float = 1.0) -> np.ndarray:
    """Largest absolute amplitude within +-``half_width_s`` of P, per trace (..., 1)."""
    return np.abs(direct_p(rf, time_s, half_width_s)[0])[..., None]


def add_noise(rf: np.ndarray, noise: np.ndarray, snr, time_s: np.ndarray) -> np.ndarray:
    """Add unit-std ``noise`` scaled so that direct-P amplitude / noise std = ``snr``."""
    amp = direct_p_amplitude(rf, time_s)
    snr = np.asarray(snr, float)
    snr = snr.reshape(snr.shape + (1,) * (rf.ndim - snr.ndim))
    return rf + noise * amp / snr


def add_spurious_arrivals(rng: np.random.Generator, rf: np.ndarray, time_s: np.ndarray,
                          probability: float, amplitude_range, width_s: float = 1.0,
                          max_count: int = 3) -> np.ndarray:
    """Add Gaussian pulses of random sign and time after P to a random subset of traces.

    Amplitudes are fractions of each trace's direct-P amplitude; arrival times are
    independent per trace (no moveout), unlike real conversions.
    """
    out = rf.copy()
    flat = out.reshape(-1, out.shape[-1])
    amp_p = direct_p_amplitude(flat, time_s)[:, 0]
    t_after = time_s[time_s > 2.0]
    for i in np.flatnonzero(rng.random(flat.shape[0]) < probability):
        for _ in range(rng.integers(1, max_count + 1)):
            t0 = rng.uniform(t_after[0], t_after[-1])
            a = rng.uniform(*amplitude_range) * rng.choice([-1.0, 1.0]) * amp_p[i]
            flat[i] += a * np.exp(-0.5 * ((time_s - t0) / (width_s / 2.355)) ** 2)
    return out


def jitter_amplitude(rng: np.random.Generator, rf: np.ndarray, relative_std: float) -> np.ndarray:
    """Multiply each trace by 1 + N(0, relative_std)."""
    factor = 1.0 + relative_std * rng.standard_normal((*rf.shape[:-1], 1))
    return rf * factor


def shift_time(rng: np.random.Generator, rf: np.ndarray, dt: float, max_shift_s: float) -> np.ndarray:
    """Shift each trace by a uniform random fraction of samples in [-max, max] s (FFT phase)."""
    if max_shift_s <= 0:
        return rf
    n = rf.shape[-1]
    nfft = int(2 ** np.ceil(np.log2(2 * n)))
    shifts = rng.uniform(-max_shift_s, max_shift_s, (*rf.shape[:-1], 1))
    f = np.fft.rfftfreq(nfft, dt)
    spec = np.fft.rfft(rf, nfft) * np.exp(-2j * np.pi * f * shifts)
    return np.fft.irfft(spec, nfft)[..., :n]


def trim_window(rf: np.ndarray, time_s: np.ndarray, start_s: float, end_s: float,
                taper_s: float = 2.0) -> np.ndarray:
    """Zero the trace outside [start_s, end_s] with cosine tapers of ``taper_s`` inside."""
    w = np.ones_like(time_s)
    w[(time_s < start_s) | (time_s > end_s)] = 0.0
    if taper_s > 0:
        up = (time_s >= start_s) & (time_s < start_s + taper_s)
        w[up] = 0.5 * (1 - np.cos(np.pi * (time_s[up] - start_s) / taper_s))
        down = (time_s <= end_s) & (time_s > end_s - taper_s)
        w[down] = 0.5 * (1 - np.cos(np.pi * (end_s - time_s[down]) / taper_s))
    return rf * w


def noisy_copies(rng: np.random.Generator, clean: np.ndarray, index: np.ndarray, snr, time_s: np.ndarray, dt: float,
                 width_hz: float, exponent: float = 0.0, max_shift_s: float = 0.0,
                 microseism: tuple | None = None) -> np.ndarray:
    """Noisy, time-shifted copies of a few noise-free traces, in one inverse FFT.

    Trace ``j`` of the result is ``clean[index[j]]`` shifted by a uniform random time in
    [-max_shift_s, max_shift_s] plus :func:`coloured_noise` scaled to ``snr[j]`` (direct-P
    amplitude / noise std), the same as :func:`shift_time` after :func:`add_noise` but with
    the noise drawn directly in the frequency domain (its std normalised by Parseval) and the
    forward FFT taken only of the distinct clean traces: the fast path of the CNN trainer.
    """
    clean = np.asarray(clean, float)
    index = np.asarray(index)
    n = clean.shape[-1]
    nfft = int(2 ** np.ceil(np.log2(n + 64)))
    f = np.fft.rfftfreq(nfft, dt)
    shape_f = gaussian_filter(f, width_hz) * noise_colour(f, exponent, microseism)
    m = index.size
    band = np.flatnonzero(shape_f > 1e-6 * shape_f.max())  # draw noise only where the band lets it through
    nb = band[-1] + 1
    white = rng.standard_normal((m, nb)) + 1j * rng.standard_normal((m, nb))
    # std of the noise in time: sqrt(2 sum |S|^2 E|W|^2) / nfft with E|W|^2 = 2 (the DC term is zero)
    std = np.sqrt(2.0 * 2.0 * np.sum(shape_f**2)) / nfft
    amp = direct_p_amplitude(clean, time_s)[:, 0][index]
    scale = (amp / np.asarray(snr, float) / std)[:, None]
    spec = np.fft.rfft(clean, nfft)[index]
    spec[:, nb:] = 0.0  # the receiver functions hold nothing there either (Gaussian filter)
    if max_shift_s > 0:
        shifts = rng.uniform(-max_shift_s, max_shift_s, (m, 1))
        spec[:, :nb] *= np.exp(-2j * np.pi * f[:nb] * shifts)
    spec[:, :nb] += white * (shape_f[:nb] * scale)
    return np.fft.irfft(spec, nfft)[:, :n]
