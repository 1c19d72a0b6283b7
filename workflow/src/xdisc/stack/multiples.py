"""Crustal multiples predicted from the station's H-kappa crust and subtracted before the depth stack.

A crustal reverberation and a deeper Ps conversion can arrive at the same time at one slowness, but
they move out in opposite directions: the delay of a multiple that spends ``a`` S legs and ``b`` extra P
legs in a crust of thickness H is H (a qs + b qp) (PpPs: a = b = 1; PpSs+PsPs: a = 2, b = 0; a second
round trip adds two legs), and it *decreases* with slowness, while that of a Ps conversion from depth
increases. Aligned on a multiple's predicted delay, the receiver functions stack its waveform
coherently and smear every other phase; the median over events of the aligned windows is the
multiple's waveform, and it is subtracted from each receiver function at its own predicted delay
(the idea of predictive multiple removal; cf. the moveout-domain separation of CRISP-RF, Olugboji et
al. 2023, which does it with a sparse Radon transform).

Pure numpy; the times come from :func:`xdisc.stack.hk.crust_times`-style formulas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdisc.stack.hk import _sample

# (S legs, extra P legs) of the crustal reverberations: first order PpPs, PpSs+PsPs; second order
# (two round trips through the crust, one of them converted)
FIRST_ORDER = {"PpPs": (1, 1), "PpSs": (2, 0)}
SECOND_ORDER = {"PpPpPs": (1, 3), "PpPpSs": (2, 2), "PpSpSs": (3, 1), "PsSpSs": (4, 0)}
# three round trips: for a 20-30 km crust these arrive 25-40 s after P, with a Ps from the X window
THIRD_ORDER = {"P5s1": (1, 5), "P4s2": (2, 4), "P3s3": (3, 3), "P2s4": (4, 2), "P1s5": (5, 1), "s6": (6, 0)}


def multiple_times(h_km: float, kappa: float, vp_km_s: float, slowness_s_per_km, legs: tuple[int, int]) -> np.ndarray:
    """Delay after direct P (s) of the crustal multiple with ``legs`` = (S legs, extra P legs) at each
    ray parameter."""
    p2 = np.asarray(slowness_s_per_km, float) ** 2
    qs = np.sqrt(kappa ** 2 / vp_km_s ** 2 - p2)
    qp = np.sqrt(1.0 / vp_km_s ** 2 - p2)
    return h_km * (legs[0] * qs + legs[1] * qp)


def _shift(rf: np.ndarray, time_s: np.ndarray, delay: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Each trace (event, time) sampled at delay_j + lags (linear interpolation; 0 outside): (event, lag)."""
    return _sample(rf, time_s, delay[:, None] + lags[None, :])


def _place(template: np.ndarray, lags: np.ndarray, time_s: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """The template (lag) put at each trace's delay on the time axis: (event, time), 0 outside the window,
    tapered at the window's ends."""
    taper = np.hanning(lags.size + 2)[1:-1] ** 0.5
    t = time_s[None, :] - delay[:, None]
    return np.interp(t, lags, template * taper, left=0.0, right=0.0)


MIN_SLOWNESS_SPREAD = 0.01  # s/km: narrower, a multiple's amplitude is one number


def _slowness_trend(aligned: np.ndarray, template: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-event scale of ``template``: a line in slowness through the events' least-squares amplitudes,
    refitted without those beyond 3 median absolute deviations; clipped to [0, 3]."""
    norm = float(template @ template)
    if norm <= 0:
        return np.ones(p.size)
    amp = aligned @ template / norm
    keep = np.ones(p.size, bool)
    # a line only where the slownesses spread (else one scale: the robust mean)
    degree = 1 if np.ptp(p) >= MIN_SLOWNESS_SPREAD else 0
    for _ in range(2):
        coef = np.polyfit(p[keep] - p.mean(), amp[keep], degree)
        resid = amp - np.polyval(coef, p - p.mean())
        mad = np.median(np.abs(resid[keep] - np.median(resid[keep]))) + 1e-12
        keep = np.abs(resid) <= 3 * 1.4826 * mad
        # refit only on events that can carry the fit: at least 3, and spread in slowness for a line (events
        # that agree exactly at one slowness would leave a line undetermined: a rank-deficient fit, or none)
        if keep.sum() < 3 or (degree and np.ptp(p[keep]) < MIN_SLOWNESS_SPREAD):
            break
    return np.clip(np.polyval(coef, p - p.mean()), 0.0, 3.0)


@dataclass(frozen=True)
class Suppression:
    rf: np.ndarray                   # the receiver functions with the multiples subtracted (event, time)
    removed: np.ndarray              # what was subtracted (event, time)
    times: dict[str, np.ndarray]     # predicted delay of each multiple (s) per event
    templates: dict[str, np.ndarray]  # the waveform of each multiple (lag)
    lags_s: np.ndarray


def suppress_multiples(rf, time_s, slowness_s_per_km, h_km: float, kappa: float, vp_km_s: float,
                       phases: dict[str, tuple[int, int]] | None = None, half_window_s: float = 2.0,
                       min_events: int = 5, scale_with_slowness: bool = True) -> Suppression:
    """Subtract the crustal multiples ``phases`` (name -> legs; default first and second order) of the crust
    (``h_km``, ``kappa``, ``vp_km_s``) from receiver functions ``rf`` (event, time, each divided by its
    direct P): per multiple, the median over events of the windows of +-``half_window_s`` around its
    predicted delay is its waveform, subtracted at each event's delay. Multiples are removed one after
    the other, first order first. With fewer than ``min_events`` receiver functions nothing is removed
    (a median of few traces is the traces). ``scale_with_slowness``: the waveform is scaled per event by a
    straight line in slowness fitted (robustly) to each event's least-squares amplitude of it, as a
    multiple's amplitude changes with the angle of incidence; one event's amplitude alone is never used
    (where a Ps crosses the multiple it would absorb it)."""
    rf = np.asarray(rf, float)
    time_s = np.asarray(time_s, float)
    p = np.asarray(slowness_s_per_km, float)
    phases = {**FIRST_ORDER, **SECOND_ORDER} if phases is None else phases
    dt = time_s[1] - time_s[0]
    lags = np.arange(-half_window_s, half_window_s + 0.5 * dt, dt)
    out = np.nan_to_num(rf.copy())
    removed = np.zeros_like(out)
    times, templates = {}, {}
    for name, legs in phases.items():
        delay = multiple_times(h_km, kappa, vp_km_s, p, legs)
        times[name] = delay
        if rf.shape[0] < min_events or not np.all(np.isfinite(delay)):
            templates[name] = np.zeros(lags.size)
            continue
        inside = (delay - half_window_s >= time_s[0]) & (delay + half_window_s <= time_s[-1])
        if inside.sum() < min_events:
            templates[name] = np.zeros(lags.size)
            continue
        aligned = _shift(out[inside], time_s, delay[inside], lags)
        template = np.median(aligned, axis=0)
        scale = np.ones(p.size)
        if scale_with_slowness:
            scale[inside] = _slowness_trend(aligned, template, p[inside])
        part = _place(template, lags, time_s, delay) * scale[:, None]
        part[~inside] = 0.0
        out -= part
        removed += part
        templates[name] = template
    out[~np.isfinite(rf)] = np.nan
    return Suppression(out, removed, times, templates, lags)
