"""Ray-theory delays of converted phases and time-to-depth (moveout) correction.

Delays of Ps (and the crustal multiples PpPs, PpSs) after the direct P are integrals of
vertical slownesses through a 1-D spherical model,
    t(z, p) = int_0^z [q_beta(z') -/+ q_alpha(z')] dz',   q_v = sqrt(v^-2 - p^2 R^2 / r^2),
evaluated on a fine depth grid of the same model files the synthetics use.
"""

from __future__ import annotations

import functools

import numpy as np

from xdisc.core.earthmodel import EARTH_RADIUS_KM, EarthModel

PHASES = ("Ps", "PpPs", "PpSs")


def delay_table(model: EarthModel, depths_km, slowness_s_per_km, phase: str = "Ps",
                step_km: float = 0.5, radius_km: float = EARTH_RADIUS_KM) -> np.ndarray:
    """Delay (s) after direct P of ``phase`` from each depth, shape (slowness, depth); NaN for depths
    below the turning point of P at that slowness."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; choose one of {', '.join(PHASES)}")
    depths = np.atleast_1d(np.asarray(depths_km, float))
    p = np.atleast_1d(np.asarray(slowness_s_per_km, float))
    zmax = float(depths.max()) if depths.size else 0.0
    if zmax > model.depth_km[-1]:
        raise ValueError(f"depth {zmax} km below the model's bottom ({model.depth_km[-1]} km)")
    edges = np.unique(np.concatenate([np.arange(0.0, zmax + step_km, step_km), model.discontinuities_km()]))
    edges = edges[edges <= zmax + step_km]
    mid = 0.5 * (edges[1:] + edges[:-1])
    vp, vs = model.at(mid, "below")[:, :2].T
    r = radius_km - mid
    pr2 = (p[:, None] * radius_km / r[None, :]) ** 2
    with np.errstate(invalid="ignore"):
        qa = np.sqrt(1.0 / vp**2 - pr2)
        qb = np.sqrt(1.0 / vs**2 - pr2)
    integrand = {"Ps": qb - qa, "PpPs": qb + qa, "PpSs": 2 * qb}[phase]
    # below the depth where P turns (p >= 1/v) there is no conversion: NaN from there down
    cumulative = np.concatenate([np.zeros((p.size, 1)), np.cumsum(integrand * np.diff(edges), axis=1)], axis=1)
    return np.stack([np.interp(depths, edges, row) for row in cumulative])


def to_depth(rf, time_s, slowness_s_per_km, model: EarthModel, depths_km, phase: str = "Ps") -> np.ndarray:
    """Map receiver functions (..., slowness, time) to depth (..., slowness, depth).

    Each trace is sampled at the delay of ``phase`` from every depth at its own slowness
    (linear interpolation), so conversions line up at their depth for every slowness.
    """
    rf = np.asarray(rf)
    table = delay_table(model, depths_km, slowness_s_per_km, phase)
    out = np.empty((*rf.shape[:-1], table.shape[1]), dtype=float)
    for k in range(table.shape[0]):
        out[..., k, :] = _interp_last(table[k], np.asarray(time_s, float), rf[..., k, :])
    return out


def _interp_last(x_new, x, y):
    """np.interp along the last axis of ``y`` (shared x)."""
    idx = np.clip(np.searchsorted(x, x_new) - 1, 0, x.size - 2)
    w = (x_new - x[idx]) / (x[idx + 1] - x[idx])
    out = y[..., idx] * (1 - w) + y[..., idx + 1] * w
    out[..., (x_new < x[0]) | (x_new > x[-1])] = np.nan
    return out


@functools.cache
def _p_table(model_name: str) -> tuple[np.ndarray, np.ndarray]:
    from obspy.taup import TauPyModel

    taup = TauPyModel(model_name)
    dist = np.arange(25.0, 120.01, 0.5)
    p = []
    for d in dist:
        arr = taup.get_travel_times(source_depth_in_km=0.0, distance_in_degree=float(d), phase_list=["P", "Pdiff"])
        p.append(arr[0].ray_param / EARTH_RADIUS_KM if arr else np.nan)
    return dist, np.asarray(p)


def distance_for_slowness(slowness_s_per_km, model_name: str = "ak135") -> np.ndarray:
    """Epicentral distance (deg) at which direct P from a surface source has this slowness (TauP)."""
    dist, p = _p_table(model_name)
    ok = np.isfinite(p)
    order = np.argsort(p[ok])
    return np.interp(np.asarray(slowness_s_per_km, float), p[ok][order], dist[ok][order], left=np.nan, right=np.nan)


def slowness_for_distance(distance_deg, model_name: str = "ak135") -> np.ndarray:
    """Slowness (s/km) of direct P from a surface source at ``distance_deg`` (TauP)."""
    dist, p = _p_table(model_name)
    return np.interp(np.asarray(distance_deg, float), dist, p, left=np.nan, right=np.nan)
