"""Reverberations separated from direct conversions by their moveout: a sparse slant stack (Radon transform).

A Ps conversion from depth arrives later at shorter distance (negative slowness relative to direct P:
about -0.045 s/deg from 250 km, -0.07 from 350 km at 60 deg), a crustal reverberation or a depth phase
of the source earlier (zero or positive relative slowness). Where both arrive at the same time at the
reference distance they overlap in every single receiver function and in the depth stack, but not in
the slowness-time plane. The receiver functions of a station (event, time) are modelled as a sum of
plane waves, one trace m_u(tau) per relative slowness u:

    rf_i(t) = sum_u m_u(t - u (distance_i - reference)),

the adjoint of which is the slant stack (vespagram) of :func:`xdisc.stack.stacking.vespagram`. The model is
fitted with an L1 penalty (FISTA, Beck & Teboulle 2009) so that each arrival is concentrated near its own
slowness rather than smeared over all of them (the high-resolution Radon transform of Sacchi & Ulrych 1995;
CRISP-RF, Olugboji et al. 2023, does the same for receiver functions in the time domain). The part of the
model that moves out like a reverberation (u above ``fraction`` times the Ps slowness at its time) is then
mapped back and subtracted from the receiver functions: what the sparse model did not fit (noise, a weak
conversion the penalty shrank) stays in the data. Unlike :mod:`xdisc.stack.multiples` this needs no crust:
a sediment reverberation or a source's pP is removed as well as a Moho multiple.

Pure numpy (FFT shifts; per frequency a small matrix product).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdisc.core.moveout import slowness_for_distance

# FISTA iterations: on four stations of the independent test networks the subtracted part after 100 is
# within 3-10 % (relative L2) of that after 400 (2026-12-02)
N_ITER = 100
# frequencies above this are neither fitted nor subtracted (the receiver functions' Gaussian filter,
# exp(-f^2 / (2 w^2)) with the default w = 0.5 Hz, leaves about 1 % of the amplitude there)
F_MAX_HZ = 1.5
# fewest receiver functions for a fit: with fewer, slownesses are not resolved
MIN_EVENTS = 8
# taper (s) at the start of the fitted window, so that what arrives before it does not leak in
TAPER_S = 3.0


@dataclass
class RadonSeparation:
    """What :func:`remove_reverberations` did: the receiver functions with the reverberating part
    subtracted (``rf``), that part (``removed``), the sparse model (``model``: slowness, time) on
    ``relative_slowness`` and the note of what was done."""

    rf: np.ndarray
    removed: np.ndarray
    model: np.ndarray
    relative_slowness: np.ndarray
    note: str
    fitted: bool = True


def _operator(offsets_deg: np.ndarray, rel_s: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Phase shifts exp(-2 pi i f u x), shape (frequency, event, slowness), single precision."""
    phase = -2.0 * np.pi * freqs[:, None, None] * offsets_deg[None, :, None] * rel_s[None, None, :]
    return np.exp(1j * phase).astype(np.complex64)


class _SlantStack:
    """The band-limited linear Radon operator between a model (slowness, time) and traces (event, time)
    and its exact adjoint (zero-padded FFT shifts, truncated to the time axis)."""

    def __init__(self, n_t: int, dt: float, offsets_deg: np.ndarray, rel_s: np.ndarray, weights: np.ndarray,
                 f_max_hz: float = F_MAX_HZ):
        shift = float(np.max(np.abs(rel_s))) * float(np.max(np.abs(offsets_deg)) if offsets_deg.size else 0.0)
        self.n_t = n_t
        self.nfft = int(2 ** np.ceil(np.log2(n_t + 2 * int(np.ceil(shift / dt)) + 8)))
        freqs = np.fft.rfftfreq(self.nfft, dt)
        self.n_f = int(np.searchsorted(freqs, f_max_hz, side="right"))
        self.a = _operator(offsets_deg, rel_s, freqs[: self.n_f]) * np.sqrt(weights).astype(np.float32)[None, :, None]
        self.ah = self.a.conj()

    def _rfft(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.fft.rfft(x, self.nfft, axis=1)[:, : self.n_f].T.astype(np.complex64))

    def _irfft(self, spectrum: np.ndarray) -> np.ndarray:
        full = np.zeros((spectrum.shape[1], self.nfft // 2 + 1), complex)
        full[:, : self.n_f] = spectrum.T
        return np.fft.irfft(full, self.nfft, axis=1)[:, : self.n_t]

    # each frequency's matrix times a vector, as stacked matrix products (BLAS: 2-6 times faster than einsum
    # for 50-150 events; a slant stack of 60 events 1.8 -> 1.25 s)
    def _apply(self, spectrum: np.ndarray) -> np.ndarray:
        return (self.a @ spectrum[:, :, None])[:, :, 0]

    def _apply_adjoint(self, spectrum: np.ndarray) -> np.ndarray:
        return (spectrum[:, None, :] @ self.ah)[:, 0, :]

    def forward(self, m: np.ndarray) -> np.ndarray:
        return self._irfft(self._apply(self._rfft(m)))

    def adjoint(self, d: np.ndarray) -> np.ndarray:
        return self._irfft(self._apply_adjoint(self._rfft(d)))

    def lipschitz(self, n_iter: int = 30) -> float:
        """The largest eigenvalue of adjoint(forward(.)) (power iterations on each frequency's matrix, the
        largest over frequencies, 1 % added: the FFT, truncation and band limit have norm 1)."""
        v = np.ones((self.n_f, self.a.shape[2]), np.complex64)
        for _ in range(n_iter):
            v = self._apply_adjoint(self._apply(v))
            norm = np.linalg.norm(v, axis=1)
            v /= np.maximum(norm, 1e-30)[:, None]
        return 1.01 * float(norm.max())


def sparse_slant_stack(rf: np.ndarray, dt: float, offsets_deg: np.ndarray, rel_s: np.ndarray,
                       weights: np.ndarray | None = None, sparsity: float = 0.05, n_iter: int = N_ITER,
                       support: np.ndarray | None = None) -> np.ndarray:
    """Sparse model m (slowness ``rel_s``, time) of receiver functions ``rf`` (event, time, sampled at ``dt``)
    at ``offsets_deg`` (e.g. distance minus the reference distance, or :func:`squared_slowness_offsets`): the
    minimiser of
    1/2 sum_i w_i |rf_i - (L m)_i|^2 + lambda |m|_1 by FISTA, lambda = ``sparsity`` times the largest absolute
    value of the weighted slant stack L^T W rf (arrivals weaker than that fraction of the strongest coherent
    one are not modelled). ``support``: boolean mask over time where the model may be non-zero."""
    rf = np.nan_to_num(np.asarray(rf, float))
    w = np.ones(rf.shape[0]) if weights is None else np.asarray(weights, float) / np.mean(weights)
    op = _SlantStack(rf.shape[1], dt, np.asarray(offsets_deg, float), np.asarray(rel_s, float), w)
    data = rf * np.sqrt(w)[:, None]
    step = 1.0 / op.lipschitz()
    keep = np.ones(rf.shape[1], bool) if support is None else np.asarray(support, bool)
    grad0 = op.adjoint(data) * keep
    lam = sparsity * float(np.max(np.abs(grad0)))
    m = np.zeros((rel_s.size, rf.shape[1]))
    y, t = m.copy(), 1.0
    for _ in range(n_iter):
        g = op.adjoint(op.forward(y) - data) * keep
        z = y - step * g
        m_next = np.sign(z) * np.maximum(np.abs(z) - step * lam, 0.0)
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        y = m_next + ((t - 1.0) / t_next) * (m_next - m)
        m, t = m_next, t_next
    return m


def reverberation_mask(rel_s: np.ndarray, time_s: np.ndarray, ps_slowness_at: np.ndarray, fraction: float,
                       start_s: float) -> np.ndarray:
    """Where the slant-stack model moves out like a reverberation, not a conversion (slowness, time): from
    ``start_s`` on, the relative slownesses above ``fraction`` times ``ps_slowness_at`` (the relative slowness
    of Ps arriving at each time, negative)."""
    cut = fraction * np.asarray(ps_slowness_at, float)
    return (rel_s[:, None] > cut[None, :] + 1e-9) & (time_s[None, :] >= start_s)


def coherent_conversions(model: np.ndarray, rel_s: np.ndarray, ps_slowness_at: np.ndarray, steepest: float,
                         fraction: float) -> np.ndarray:
    """What the sparse slant-stack ``model`` (slowness ``rel_s``, time) holds at each time at the reference
    distance, moving out like a conversion: the sum over the relative slownesses from ``steepest`` to
    ``fraction`` times ``ps_slowness_at`` (the Ps slowness at each time, negative; ``steepest`` inf: from the
    steepest modelled). The scatter of single receiver functions about a coherent arrival that was subtracted
    stays largely outside the sparse model, so a peak of the depth stack made of that scatter is held there
    only in part, and a conversion in full. Noise is not sorted out so: the sparse model holds noise peaks
    too (2026-12-02)."""
    ps = np.asarray(ps_slowness_at, float)[None, :]
    rel = np.asarray(rel_s, float)[:, None]
    inside = (rel <= fraction * ps + 1e-9) & (rel >= min(steepest, 1e6) * ps - 1e-9)
    return (model * inside).sum(axis=0)


def squared_slowness_offsets(slowness_s_per_km: np.ndarray, reference_deg: float,
                             model_name: str = "ak135") -> np.ndarray:
    """Offsets (deg) in which the moveout of both Ps conversions and crustal reverberations is close to
    linear: the squared slowness relative to that at ``reference_deg``, divided by d(p^2)/d(distance)
    there (near the reference, the distance offset). A delay that goes as tau + c p^2 (Ps: c > 0;
    multiples: c < 0, for slownesses well below the layers' 1/v) is a straight line in them."""
    d = np.array([reference_deg - 5.0, reference_deg, reference_deg + 5.0])
    p = slowness_for_distance(d, model_name)
    dp2 = (p[2] ** 2 - p[0] ** 2) / 10.0
    return (np.asarray(slowness_s_per_km, float) ** 2 - p[1] ** 2) / dp2


def remove_reverberations(rf: np.ndarray, time_s: np.ndarray, offsets_deg: np.ndarray,
                          rel_s: np.ndarray, ps_slowness_at: np.ndarray, fraction: float = 0.5,
                          start_s: float = 15.0, weights: np.ndarray | None = None, sparsity: float = 0.05,
                          n_iter: int = N_ITER) -> RadonSeparation:
    """Subtract from receiver functions ``rf`` (event, time, each divided by its direct P) the part of their
    sparse slant stack (:func:`sparse_slant_stack` over ``offsets_deg``, e.g. :func:`squared_slowness_offsets`;
    fitted from ``start_s`` - ``TAPER_S`` on) that moves out like a reverberation from ``start_s`` on
    (:func:`reverberation_mask`; ``ps_slowness_at``: the relative slowness (s/deg) of Ps arriving at each time
    at the reference). Rows with NaNs are left as they are;
    with fewer than ``MIN_EVENTS`` usable receiver functions nothing is subtracted."""
    rf = np.asarray(rf, float)
    time_s = np.asarray(time_s, float)
    rel_s = np.asarray(rel_s, float)
    usable = np.all(np.isfinite(rf), axis=1)
    empty = np.zeros((rel_s.size, time_s.size))
    if usable.sum() < MIN_EVENTS:
        return RadonSeparation(rf, np.zeros_like(np.nan_to_num(rf)), empty, rel_s,
                               f"reverberations not removed: {int(usable.sum())} receiver functions "
                               f"< {MIN_EVENTS}", fitted=False)
    dt = float(time_s[1] - time_s[0])
    fit_from = start_s - TAPER_S
    taper = np.clip((time_s - fit_from) / TAPER_S, 0.0, 1.0)
    taper = 0.5 - 0.5 * np.cos(np.pi * taper)
    offsets = np.asarray(offsets_deg, float)[usable]
    w = None if weights is None else np.asarray(weights, float)[usable]
    model = sparse_slant_stack(rf[usable] * taper[None, :], dt, offsets, rel_s, w, sparsity, n_iter,
                               support=time_s >= fit_from)
    multiple = model * reverberation_mask(rel_s, time_s, ps_slowness_at, fraction, start_s)
    op = _SlantStack(time_s.size, dt, offsets, rel_s, np.ones(offsets.size))
    part = op.forward(multiple) * taper[None, :]   # no band-limited ringing ahead of the fitted window
    removed = np.zeros_like(rf)
    removed[usable] = part
    out = rf - removed
    return RadonSeparation(out, removed, model, rel_s,
                           f"reverberations removed by a sparse slant stack (relative slowness above "
                           f"{fraction:g} x Ps's, from {start_s:g} s)")
