"""Crustal thickness H and Vp/Vs (kappa) of a station from its receiver functions: H-kappa stacking
(Zhu & Kanamori 2000, JGR 105, 2969-2980), with bootstrap errors, and the times of the Moho's
converted phase and multiples that the crust-aware stacking predicts from it.

For a flat crust of thickness H, P velocity ``vp`` and ``kappa = vp/vs``, at ray parameter p (s/km):

    t_Ps   = H (qs - qp)        t_PpPs = H (qs + qp)        t_PpSs+PsPs = 2 H qs
    qs = sqrt(kappa^2 / vp^2 - p^2),  qp = sqrt(1 / vp^2 - p^2)

The stack over the receiver functions r_j (each divided by its direct P) is

    s(H, kappa) = sum_j  w1 r_j(t_Ps) + w2 r_j(t_PpPs) - w3 r_j(t_PpSs)

whose maximum is the estimate. The third phase has negative polarity for a velocity increase. ``vp`` is
assumed (the reference model's crust); H trades off with it (about 0.5 km per 0.1 km/s), kappa hardly.
Pure numpy: no stage imports, no plotting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Zhu & Kanamori's weights of Ps, PpPs and PpSs+PsPs
WEIGHTS = (0.7, 0.2, 0.1)
# the default search grid: H 15-75 km every 0.25 km, kappa 1.60-2.00 every 0.005
H_GRID_KM = np.round(np.arange(15.0, 75.01, 0.25), 6)
KAPPA_GRID = np.round(np.arange(1.60, 2.0001, 0.005), 6)


def crust_vp(model) -> float:
    """The crustal P velocity an H-kappa stack assumes from an earth model: thickness over vertical P
    travel time through its crust (above :meth:`EarthModel.moho_km`), piecewise-linear between nodes."""
    moho = model.moho_km()
    z = np.linspace(0.0, moho, 2001)[:-1] + moho / 4000  # midpoints of 2000 slices
    vp = np.interp(z, model.depth_km, model.vp_km_s)
    return float(moho / np.sum((moho / 2000) / vp))


def crust_times(h_km, kappa, vp_km_s: float, slowness_s_per_km) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Delays after direct P (s) of Ps, PpPs and PpSs+PsPs for crusts ``h_km`` x ``kappa`` (broadcast) at
    the ray parameters ``slowness_s_per_km``."""
    p2 = np.asarray(slowness_s_per_km, float) ** 2
    kappa = np.asarray(kappa, float)
    qs = np.sqrt(kappa ** 2 / vp_km_s ** 2 - p2)
    qp = np.sqrt(1.0 / vp_km_s ** 2 - p2)
    h = np.asarray(h_km, float)
    return h * (qs - qp), h * (qs + qp), 2.0 * h * qs


def _sample(rf: np.ndarray, time_s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear interpolation of each trace ``rf`` (event, time) at times ``t`` (event, ...); 0 outside."""
    dt = time_s[1] - time_s[0]
    x = (t - time_s[0]) / dt
    i = np.floor(x).astype(int)
    f = x - i
    n = rf.shape[1]
    ok = (i >= 0) & (i < n - 1)
    i = np.clip(i, 0, n - 2)
    rows = np.arange(rf.shape[0]).reshape((-1,) + (1,) * (t.ndim - 1))
    out = rf[rows, i] * (1 - f) + rf[rows, i + 1] * f
    return np.where(ok, out, 0.0)


def hk_stack(rf, time_s, slowness_s_per_km, h_km, kappa, vp_km_s: float, weights=WEIGHTS,
             per_event: bool = False) -> np.ndarray:
    """The H-kappa stack (H, kappa) of receiver functions ``rf`` (event, time), each already divided by
    its direct P: the mean over events of the weighted phase amplitudes (``per_event``: (event, H, kappa),
    for bootstrap resampling)."""
    rf = np.asarray(rf, float)
    time_s = np.asarray(time_s, float)
    p = np.asarray(slowness_s_per_km, float)[:, None, None]
    hh, kk = np.meshgrid(np.asarray(h_km, float), np.asarray(kappa, float), indexing="ij")
    t1, t2, t3 = crust_times(hh[None], kk[None], vp_km_s, p)
    w1, w2, w3 = weights
    s = w1 * _sample(rf, time_s, t1) + w2 * _sample(rf, time_s, t2) - w3 * _sample(rf, time_s, t3)
    return s if per_event else s.mean(axis=0)


@dataclass(frozen=True)
class CrustEstimate:
    h_km: float
    kappa: float
    h_error_km: float           # bootstrap standard deviation
    kappa_error: float
    vp_km_s: float              # the assumed crustal P velocity
    stack: np.ndarray           # (H, kappa), normalised by its maximum
    h_grid_km: np.ndarray
    kappa_grid: np.ndarray
    n_rf: int

    def times(self, slowness_s_per_km) -> dict[str, np.ndarray]:
        """Predicted delays after P (s) of the Moho's Ps, PpPs and PpSs+PsPs at each ray parameter."""
        t = crust_times(self.h_km, self.kappa, self.vp_km_s, slowness_s_per_km)
        return dict(zip(("Ps", "PpPs", "PpSs"), t, strict=True))


def estimate_crust(rf, time_s, slowness_s_per_km, vp_km_s: float = 6.3, h_km=H_GRID_KM, kappa=KAPPA_GRID,
                   weights=WEIGHTS, n_bootstrap: int = 200, seed: int = 0) -> CrustEstimate:
    """H and kappa at the maximum of :func:`hk_stack`, with bootstrap errors (events resampled with
    replacement, ``n_bootstrap`` times, seeded). ``rf`` (event, time) is divided by each trace's direct P
    here; traces with NaNs are left out."""
    from xdisc.core.deconvolution import normalise_by_p

    rf = normalise_by_p(np.asarray(rf, float), np.asarray(time_s, float))
    keep = np.all(np.isfinite(rf), axis=1)
    rf, p = rf[keep], np.asarray(slowness_s_per_km, float)[keep]
    if rf.shape[0] < 2:
        raise ValueError(f"H-kappa stacking needs at least 2 receiver functions, got {rf.shape[0]}")
    h_km, kappa = np.asarray(h_km, float), np.asarray(kappa, float)
    per_event = hk_stack(rf, time_s, p, h_km, kappa, vp_km_s, weights, per_event=True)
    stack = per_event.mean(axis=0)
    i, j = np.unravel_index(np.argmax(stack), stack.shape)
    n = per_event.shape[0]
    # bootstrap: each resample's stack is (counts / n) @ per-event stacks, all resamples in one product
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap) / n
    boot = counts @ per_event.reshape(n, -1)
    bi, bj = np.unravel_index(np.argmax(boot, axis=1), stack.shape)
    best = np.column_stack([h_km[bi], kappa[bj]])
    err = best.std(axis=0) if n_bootstrap > 1 else np.full(2, np.nan)
    return CrustEstimate(float(h_km[i]), float(kappa[j]), float(err[0]), float(err[1]), float(vp_km_s),
                         stack / np.max(np.abs(stack)), h_km, kappa, int(n))
