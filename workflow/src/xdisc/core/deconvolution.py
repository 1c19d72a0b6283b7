"""Receiver-function deconvolution, batched over traces: one code path for real and synthetic data.

Two methods, selected by name through :func:`deconvolve`:

- ``iterative``: time-domain iterative deconvolution (Ligorría & Ammon 1999). Spikes are
  added where the cross-correlation of the residual with the (Gaussian-filtered) source
  peaks. Instead of re-convolving the spike train with two FFTs per iteration, the
  cross-correlation itself is updated with the source autocorrelation,
  xc <- xc - a * acorr(. - k), which is exact for circular correlation. The iterations run in
  one compiled loop per trace (numba; the trace stays in the CPU's cache): about 1-2 ns per lag and
  iteration, three to eight times faster than the same updates as whole-batch numpy operations.
- ``waterlevel``: frequency-domain division R Z* / max(|Z|^2, w max|Z|^2).

Both apply the same Gaussian low-pass exp(-f^2 / (2 width^2)) (``width_hz`` is the
standard deviation in Hz, the ``gauss`` parameter of the ``rf`` package; Ligorría & Ammon's
``a`` equals pi * sqrt(2) * width_hz), scaled so that a unit spike becomes a Gaussian
pulse of peak 1: RF amplitudes are fractions of the vertical direct P.

All arrays are (..., sample); the P onset is at the same sample in source and response.
Output traces start ``time_before_p_s`` before P.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy.fft import irfft, next_fast_len, rfft

METHODS = ("iterative", "waterlevel")


@dataclass(frozen=True)
class RFSettings:
    """Receiver-function settings shared with the real-data path."""

    sampling_rate_hz: float = 10.0
    time_before_p_s: float = 10.0
    time_after_p_s: float = 120.0
    gaussian_width_hz: float = 0.5
    deconvolution: str = "iterative"
    water_level: float = 0.01
    max_iterations: int = 400
    min_fit_change_percent: float = 0.001

    @property
    def dt(self) -> float:
        return 1.0 / self.sampling_rate_hz

    def time_axis(self) -> np.ndarray:
        n = round((self.time_before_p_s + self.time_after_p_s) * self.sampling_rate_hz) + 1
        return np.round(-self.time_before_p_s + np.arange(n) * self.dt, 6)


def gaussian_filter(freqs_hz, width_hz: float) -> np.ndarray:
    """Gaussian low-pass response exp(-0.5 (f / width)^2) (unit gain at 0 Hz)."""
    if width_hz <= 0:
        raise ValueError("gaussian width must be positive")
    return np.exp(-0.5 * (np.asarray(freqs_hz) / width_hz) ** 2)


def peak_normalised_gaussian(nfft: int, dt: float, width_hz: float) -> np.ndarray:
    """Gaussian low-pass on rfft frequencies, scaled so that a filtered unit spike peaks at 1."""
    g = gaussian_filter(np.fft.rfftfreq(nfft, dt), width_hz)
    return g / irfft(g, nfft)[0]


def gaussian_cutoff_hz(width_hz: float, rel: float = 1e-5) -> float:
    """Frequency above which the Gaussian response is below ``rel``."""
    return width_hz * np.sqrt(-2.0 * np.log(rel))


def direct_p(rf, time_s, half_width_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Signed amplitude and time of the largest |value| within +-``half_width_s`` of 0 s, per trace
    (..., time) -> (...,); NaN for traces holding NaNs."""
    rf = np.asarray(rf)
    win = np.flatnonzero(np.abs(time_s) <= half_width_s)
    seg = rf[..., win]
    k = np.argmax(np.abs(np.nan_to_num(seg)), axis=-1)
    amp = np.take_along_axis(seg, k[..., None], -1)[..., 0]
    bad = ~np.all(np.isfinite(rf), axis=-1)
    return np.where(bad, np.nan, amp), np.where(bad, np.nan, np.asarray(time_s)[win][k])


def normalise_by_p(rf: np.ndarray, time_s: np.ndarray, half_width_s: float = 1.0) -> np.ndarray:
    """Divide each trace by its direct-P amplitude (largest |value| within +-half_width of 0 s)."""
    amp = direct_p(rf, time_s, half_width_s)[0][..., None]
    return rf / np.where(amp != 0, amp, np.nan)


def noise_sigma(rf: np.ndarray, time_s: np.ndarray, floor: float = 0.02, coda_s: tuple | None = None) -> np.ndarray:
    """Noise level of each trace: std of its pre-P part (before -1.5 s), and with ``coda_s`` = (start, end) of
    that window after P too, at least ``floor``; NaN when the trace has fewer than 10 samples before P."""
    measured = time_s < -1.5
    if measured.sum() < 10:
        return np.full(rf.shape[0], np.nan)
    if coda_s is not None:
        measured = measured | ((time_s >= coda_s[0]) & (time_s <= coda_s[1]))
    return np.maximum(np.nanstd(rf[:, measured], axis=1), floor)


def noise_weights(rf: np.ndarray, time_s: np.ndarray, floor: float = 0.02) -> np.ndarray:
    """Inverse-variance weights from each trace's pre-P noise (:func:`noise_sigma`; 1 without a pre-P part)."""
    sigma = noise_sigma(rf, time_s, floor)
    return np.where(np.isfinite(sigma), 1.0 / sigma**2, 1.0)


@dataclass
class Deconvolution:
    """Result of a batched deconvolution."""

    rf: np.ndarray            # (..., time) receiver functions, P at time_before_p_s
    fit_percent: np.ndarray   # (...,) 100 (1 - |residual|^2 / |filtered response|^2)
    iterations: np.ndarray    # (...,) spikes used (iterative) or 0


def deconvolve(source, response, dt: float, method: str = "iterative", width_hz: float = 0.5,
               time_before_p_s: float = 10.0, n_out: int | None = None,
               water_level: float = 0.01, max_iterations: int = 400,
               min_fit_change_percent: float = 0.001) -> Deconvolution:
    """Deconvolve ``source`` (vertical/L) from ``response`` (radial/Q/transverse).

    Source and response must be aligned (P at the same sample); the RF time is the lag
    after P. The output has ``n_out`` samples (default: the input length) starting
    ``time_before_p_s`` before P.
    """
    src = np.asarray(source, dtype=float)
    rsp = np.asarray(response, dtype=float)
    if src.shape != rsp.shape:
        src, rsp = np.broadcast_arrays(src, rsp)
    if not np.all(np.isfinite(src)) or not np.all(np.isfinite(rsp)):
        raise ValueError("input traces contain NaN or infinite samples")
    n = src.shape[-1]
    n_out = n if n_out is None else int(n_out)
    shift = round(time_before_p_s / dt)
    if method == "iterative":
        return _iterative(src, rsp, dt, width_hz, shift, n_out, max_iterations,
                          min_fit_change_percent)
    if method == "waterlevel":
        return _waterlevel(src, rsp, dt, width_hz, shift, n_out, water_level)
    raise ValueError(f"unknown deconvolution method {method!r}; choose one of {', '.join(METHODS)}")


def _waterlevel(src, rsp, dt, width_hz, shift, n_out, water_level):
    n = src.shape[-1]
    nfft = next_fast_len(max(n, n_out), real=True)  # circular: the rf package's length (5-smooth)
    zs = rfft(src, nfft)
    rs = rfft(rsp, nfft)
    power = (zs * np.conj(zs)).real
    floor = water_level * power.max(axis=-1, keepdims=True)
    denom = np.maximum(power, floor)
    denom = np.where(denom > 0, denom, 1.0)
    g = peak_normalised_gaussian(nfft, dt, width_hz)
    freqs = np.fft.rfftfreq(nfft, dt)
    phase = np.exp(-2j * np.pi * freqs * shift * dt)
    spec = rs * np.conj(zs) / denom * g * phase
    rf = irfft(spec, nfft)[..., :n_out]
    # fit of the filtered response by the RF convolved with the filtered source (Parseval: the
    # energies are sums over rfft bins, interior bins counted twice)
    g_unit = gaussian_filter(freqs, width_hz)
    obs = rs * g_unit
    resid = obs * (1.0 - power / denom)
    weight = np.full(freqs.size, 2.0)
    weight[0] = 1.0
    if nfft % 2 == 0:
        weight[-1] = 1.0
    def energy(spec):
        return np.sum(weight * np.abs(spec) ** 2, axis=-1)

    fit = 100.0 * (1.0 - energy(resid) / np.maximum(energy(obs), 1e-300))
    return Deconvolution(rf, fit, np.zeros(src.shape[:-1], int))


def _iterative(src, rsp, dt, width_hz, shift, n_out, max_iterations, min_change):
    batch_shape = src.shape[:-1]
    n = src.shape[-1]
    src2 = src.reshape(-1, n)
    rsp2 = rsp.reshape(-1, n)
    b = src2.shape[0]
    nfft = next_fast_len(2 * n, real=True)
    g = gaussian_filter(np.fft.rfftfreq(nfft, dt), width_hz)
    s_spec = rfft(src2, nfft) * g
    r_spec = rfft(rsp2, nfft) * g
    power_s = np.sum(irfft(s_spec, nfft) ** 2, axis=-1)
    power_r = np.sum(irfft(r_spec, nfft) ** 2, axis=-1)
    ok = (power_s > 0) & (power_r > 0)
    power_s = np.where(ok, power_s, 1.0)
    power_r = np.where(ok, power_r, 1.0)
    xc_full = irfft(r_spec * np.conj(s_spec), nfft)        # xc[k] = sum_t r(t + k) s(t)
    acorr_full = irfft(s_spec * np.conj(s_spec), nfft)     # acorr[l] = sum_t s(t + l) s(t)
    # allowed lags -shift .. n-1 (as the rf package); position a <-> lag a - shift
    lags = np.arange(-shift, n)
    n_lag = lags.size
    # the per-iteration work runs in float32 (half the memory traffic); sums stay float64
    xc = xc_full[:, lags % nfft].astype(np.float32)
    # acorr at lag differences -(n_lag-1) .. n_lag-1: a spike at position a updates position j with
    # acorr[n_lag - 1 - a + j]
    acorr = acorr_full[:, np.arange(-(n_lag - 1), n_lag) % nfft].astype(np.float32)
    spikes, misfit, iterations = _spike_trains(xc, acorr, power_s, power_r, ok, int(max_iterations),
                                               float(min_change))
    spike_train = np.zeros((b, nfft))
    spike_train[:, lags % nfft] = spikes
    spikes = spike_train
    gn = peak_normalised_gaussian(nfft, dt, width_hz)
    # spikes are lags relative to the source: a spike at lag k means arrival k samples after P
    phase = np.exp(-2j * np.pi * np.fft.rfftfreq(nfft, dt) * shift * dt)
    rf = irfft(rfft(spikes, nfft) * gn * phase, nfft)[:, :n_out]
    rf = np.where(ok[:, None], rf, np.nan)
    fit = np.where(ok, 100.0 * (1.0 - misfit), np.nan)
    return Deconvolution(rf.reshape(*batch_shape, n_out), fit.reshape(batch_shape),
                         iterations.reshape(batch_shape))


@numba.njit(cache=True, nogil=True)
def _spike_trains(xc, acorr, power_s, power_r, active, max_iterations, min_change):
    """The iterations of :func:`_iterative`, trace by trace: ``xc`` (trace, lag; float32, changed in place)
    is the cross-correlation of the response with the source, ``acorr`` (trace, 2 lag - 1; float32) the
    source autocorrelation. Each iteration puts a spike of xc[k] / power_s at the lag k of the largest
    |xc| (the first one on ties, as ``np.argmax``), subtracts its autocorrelation from xc and stops after
    the first spike that improves the fit by ``min_change`` percent or less. Returns the spikes (float64),
    the remaining misfit (residual / filtered-response energy) and the number of spikes per trace. The
    subtraction and the search for the next peak share one pass over the trace."""
    b, n_lag = xc.shape
    spikes = np.zeros((b, n_lag))
    misfit = np.ones(b)
    iterations = np.zeros(b, np.int64)
    for r in range(b):
        if not active[r]:
            continue
        x = xc[r]
        ac = acorr[r]
        k = 0
        largest = abs(x[0])
        for j in range(1, n_lag):
            if abs(x[j]) > largest:
                largest = abs(x[j])
                k = j
        for _ in range(max_iterations):
            peak = np.float64(x[k])
            amp = peak / power_s[r]
            spikes[r, k] += amp
            amp32 = np.float32(amp)
            offset = n_lag - 1 - k
            k = 0
            largest = np.float32(-1.0)
            for j in range(n_lag):  # float32 product, then difference: as the numpy form of this loop
                u = amp32 * ac[offset + j]
                v = x[j] - u
                x[j] = v
                if abs(v) > largest:
                    largest = abs(v)
                    k = j
            gain = peak**2 / power_s[r] / power_r[r]
            iterations[r] += 1
            misfit[r] = misfit[r] - gain
            if not 100.0 * gain > min_change:
                break
    return spikes, misfit, iterations
