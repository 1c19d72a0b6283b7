"""Independent ray-theory oracle for receiver-function delays.

Integrates vertical slownesses through ObsPy TauP's own velocity model (the layers TauP
built from ak135.tvel / iasp91.tvel / prem.nd, linear within each layer) in spherical
geometry, without earth flattening or xdisc's layering: an independent check of
xdisc's earth-flattened propagator. Delays are relative to the direct P at the same
horizontal slowness p (s/km at the surface), i.e. a plane wave.
"""

from __future__ import annotations

import functools

import numpy as np

EARTH_RADIUS_KM = 6371.0


@functools.cache
def taup_layers(model: str) -> np.ndarray:
    from obspy.taup import TauPyModel

    layers = TauPyModel(model).model.s_mod.v_mod.layers
    return np.array([(la["top_depth"], la["bot_depth"], la["top_p_velocity"], la["bot_p_velocity"],
                      la["top_s_velocity"], la["bot_s_velocity"]) for la in layers])


def _profile(model: str, depth_km: float, step_km: float = 0.02):
    """Mid-point samples (z, dz, vp, vs) of TauP's model from 0 to ``depth_km``."""
    zs, dzs, vps, vss = [], [], [], []
    for top, bot, vpt, vpb, vst, vsb in taup_layers(model):
        if top >= depth_km:
            break
        bot_c = min(bot, depth_km)
        if bot_c <= top:
            continue
        n = max(1, int(np.ceil((bot_c - top) / step_km)))
        edges = np.linspace(top, bot_c, n + 1)
        mid = 0.5 * (edges[:-1] + edges[1:])
        w = (mid - top) / (bot - top) if bot > top else np.zeros_like(mid)
        zs.append(mid)
        dzs.append(np.diff(edges))
        vps.append(vpt + (vpb - vpt) * w)
        vss.append(vst + (vsb - vst) * w)
    return np.concatenate(zs), np.concatenate(dzs), np.concatenate(vps), np.concatenate(vss)


def delay(model: str, depth_km: float, slowness_s_per_km: float, phase: str = "Ps") -> float:
    """Delay after direct P of a conversion/multiple from ``depth_km``: Ps, PpPs or PpSs."""
    z, dz, vp, vs = _profile(model, depth_km)
    r = EARTH_RADIUS_KM - z
    p_rad = slowness_s_per_km * EARTH_RADIUS_KM
    qa = np.sqrt(1.0 / vp**2 - (p_rad / r) ** 2)
    qb = np.sqrt(1.0 / vs**2 - (p_rad / r) ** 2)
    # d(tau) = q dr with q the radial slowness (s/km) -- r/R factors cancel in the ray equation
    if phase == "Ps":
        integrand = qb - qa
    elif phase == "PpPs":
        integrand = qb + qa
    elif phase == "PpSs":
        integrand = 2 * qb
    else:
        raise ValueError(phase)
    return float(np.sum(integrand * dz))
