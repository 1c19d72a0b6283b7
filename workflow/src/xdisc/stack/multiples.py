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

# (S legs, extra P legs) of the crustal reverberations: first order PpPs, PpSs+PsPs; second order
# (two round trips through the crust, one of them converted)
FIRST_ORDER = {"PpPs": (1, 1), "PpSs": (2, 0)}
SECOND_ORDER = {"PpPpPs": (1, 3), "PpPpSs": (2, 2), "PpSpSs": (3, 1), "PsSpSs": (4, 0)}


def multiple_times(h_km: float, kappa: float, vp_km_s: float, slowness_s_per_km, legs: tuple[int, int]) -> np.ndarray:
    """Delay after direct P (s) of the crustal multiple with ``legs`` = (S legs, extra P legs) at each
    ray parameter."""
    p2 = np.asarray(slowness_s_per_km, float) ** 2
    qs = np.sqrt(kappa ** 2 / vp_km_s ** 2 - p2)
    qp = np.sqrt(1.0 / vp_km_s ** 2 - p2)
    return h_km * (legs[0] * qs + legs[1] * qp)


def _shift(rf: np.ndarray, time_s: np.ndarray, delay: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Each trace (event, time) sampled at delay_j + lags (linear interpolation; 0 outside): (event, lag)."""
    dt = time_s[1] - time_s[0]
    x = (delay[:, None] + lags[None, :] - time_s[0]) / dt
    i = np.floor(x).astype(int)
    f = x - i
    ok = (i >= 0) & (i < rf.shape[1] - 1)
    i = np.clip(i, 0, rf.shape[1] - 2)
    rows = np.arange(rf.shape[0])[:, None]
    return np.where(ok, rf[rows, i] * (1 - f) + rf[rows, i + 1] * f, 0.0)


def _place(template: np.ndarray, lags: np.ndarray, time_s: np.ndarray, delay: np.ndarray) -> np.ndarray:
    """The template (lag) put at each trace's delay on the time axis: (event, time), 0 outside the window,
    tapered at the window's ends."""
    taper = np.hanning(lags.size + 2)[1:-1] ** 0.5
    t = time_s[None, :] - delay[:, None]
    return np.interp(t, lags, template * taper, left=0.0, right=0.0)


@dataclass(frozen=True)
class Suppression:
    rf: np.ndarray                   # the receiver functions with the multiples subtracted (event, time)
    removed: np.ndarray              # what was subtracted (event, time)
    times: dict[str, np.ndarray]     # predicted delay of each multiple (s) per event
    templates: dict[str, np.ndarray]  # the waveform of each multiple (lag)
    lags_s: np.ndarray


def suppress_multiples(rf, time_s, slowness_s_per_km, h_km: float, kappa: float, vp_km_s: float,
                       phases: dict[str, tuple[int, int]] | None = None, half_window_s: float = 2.0,
                       min_events: int = 5) -> Suppression:
    """Subtract the crustal multiples ``phases`` (name -> legs; default first and second order) of the crust
    (``h_km``, ``kappa``, ``vp_km_s``) from receiver functions ``rf`` (event, time, each divided by its
    direct P): per multiple, the median over events of the windows of +-``half_window_s`` around its
    predicted delay is its waveform, subtracted at each event's delay. Multiples are removed one after
    the other, first order first. With fewer than ``min_events`` receiver functions nothing is removed
    (a median of few traces is the traces)."""
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
        template = np.median(_shift(out[inside], time_s, delay[inside], lags), axis=0)
        part = _place(template, lags, time_s, delay)
        part[~inside] = 0.0
        out -= part
        removed += part
        templates[name] = template
    out[~np.isfinite(rf)] = np.nan
    return Suppression(out, removed, times, templates, lags)
