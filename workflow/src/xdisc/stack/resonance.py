"""Sediment reverberations removed by a resonance filter (Yu, Song, Chen & Wang 2015, JGR 120).

A layer of soft sediment rings: every conversion is followed by copies of alternating sign,
delayed by multiples of the layer's two-way S travel time dt and scaled by powers of -r0 (r0: the
reflection coefficient at the sediment's base, as the receiver function sees it). The ringing
shows in the autocorrelation of the receiver function as a trough of about -r0 at lag dt. Its
inverse, the filter 1 + r0 exp(-i omega dt), in time rf(t) + r0 rf(t - dt), removes the ringing
and keeps the conversions.

:func:`estimate` reads dt and r0 from the autocorrelation of a station's mean receiver function
(from direct P on); :func:`apply` filters every receiver function with them. A station whose
autocorrelation has no trough deeper than ``min_strength`` within ``lag_s`` is left as it is.
"""

from __future__ import annotations

import numpy as np

from xdisc.stack.hk import _sample


def estimate(norm: np.ndarray, time_s: np.ndarray, lag_s: tuple = (0.5, 5.0),
             window_s: tuple = (-2.0, 30.0)) -> tuple[float, float]:
    """Two-way time dt (s) and strength r0 of a sediment layer's ringing from the normalised
    autocorrelation of the mean of ``norm`` (receiver functions divided by their direct P; rows are
    events) within ``window_s`` of P: the deepest trough at lags within ``lag_s``. (nan, 0) where
    there are no data."""
    usable = np.all(np.isfinite(norm), axis=1) if norm.size else np.zeros(0, bool)
    if not usable.any():
        return float("nan"), 0.0
    keep = (time_s >= window_s[0]) & (time_s <= window_s[1])
    mean = norm[usable][:, keep].mean(axis=0)
    mean = mean - mean.mean()
    n = mean.size
    full = np.correlate(mean, mean, mode="full")[n - 1:]
    if full[0] <= 0:
        return float("nan"), 0.0
    ac = full / full[0]
    dt = float(time_s[1] - time_s[0])
    lags = np.arange(ac.size) * dt
    inside = np.flatnonzero((lags >= lag_s[0]) & (lags <= lag_s[1]))
    k = inside[int(np.argmin(ac[inside]))]
    return float(lags[k]), float(max(-ac[k], 0.0))


def apply(norm: np.ndarray, time_s: np.ndarray, dt_s: float, r0: float) -> np.ndarray:
    """rf(t) + r0 rf(t - dt) for every row of ``norm`` (linear interpolation; zero before the trace)."""
    norm = np.asarray(norm, float)
    if not np.isfinite(dt_s) or r0 <= 0:
        return norm.copy()
    return norm + r0 * _sample(norm, time_s, np.broadcast_to(time_s - dt_s, norm.shape))
