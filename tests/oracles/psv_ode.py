"""Independent forward oracle: the P-SV plane-wave response of flat layers from the equations of motion.

No layer matrices are written down: in each layer the stress-displacement vector
f = (u_x, u_z, tau_xz, tau_zz) (z down) obeys df/dz = A f, with A derived here from Hooke's law and
Newton's law for fields proportional to exp(i w (p x - t)), and is carried across the layer by the
matrix exponential (scipy.linalg.expm). At the free surface the tractions vanish; in the half-space the
eigenvectors of A (numerically, scipy.linalg.eig) give the incident upgoing P, whose displacement is one
and whose phase is zero at the half-space's top, and the two downgoing waves that leave the stack. Four
linear equations give the surface displacement.

Slow (one 4x4 matrix exponential per layer and frequency) and written for checks, not for use: it
arbitrates between xdisc's propagator and telewavesim where they differ (tests/test_telewavesim_oracle.py;
it found the reverberation bug of telewavesim 0.2.1 patched in tests/oracles/INSTALL_telewavesim.sh).
"""

from __future__ import annotations

import numpy as np


def system_matrix(vp: float, vs: float, rho: float, p: float, w: float) -> np.ndarray:
    """A of df/dz = A f at angular frequency w and horizontal slowness p (km, s, g/cm^3)."""
    mu = rho * vs**2
    lam = rho * vp**2 - 2.0 * mu
    l2m = lam + 2.0 * mu
    iwp = 1j * w * p
    return np.array([
        [0.0, -iwp, 1.0 / mu, 0.0],                                        # u_x' = tau_xz / mu - d u_z / dx
        [-iwp * lam / l2m, 0.0, 0.0, 1.0 / l2m],                           # u_z' from tau_zz
        [-rho * w**2 + (w * p) ** 2 * 4.0 * mu * (lam + mu) / l2m, 0.0, 0.0, -iwp * lam / l2m],
        [0.0, -rho * w**2, -iwp, 0.0]], dtype=complex)                     # tau_zz' = -rho w^2 u_z - d tau_xz / dx


def _wave(values: np.ndarray, vectors: np.ndarray, eigenvalue: complex) -> np.ndarray:
    """The eigenvector of the eigenvalue nearest ``eigenvalue``, its displacement of unit length."""
    v = vectors[:, np.argmin(np.abs(values - eigenvalue))]
    return v / np.linalg.norm(v[:2])


def surface_response(thickness_km, vp_km_s, vs_km_s, rho_g_cm3, p: float, freqs_hz) -> tuple[np.ndarray, np.ndarray]:
    """Radial (positive in the direction of propagation) and vertical (positive up) surface displacement
    spectra, numpy's sign convention (``np.fft.irfft`` gives the time series), of a unit plane P wave
    incident from the half-space (the last layer), time zero when it crosses the half-space's top."""
    from scipy.linalg import eig, expm

    h, vp, vs, rho = (np.asarray(a, float) for a in (thickness_km, vp_km_s, vs_km_s, rho_g_cm3))
    freqs = np.asarray(freqs_hz, float)
    radial = np.zeros(freqs.size, complex)
    vertical = np.zeros(freqs.size, complex)
    qa = np.sqrt(1.0 / vp[-1] ** 2 - p**2)
    qb = np.sqrt(1.0 / vs[-1] ** 2 - p**2)
    for k, f in enumerate(freqs):
        if f <= 0:
            continue
        w = 2.0 * np.pi * f
        prop = np.eye(4, dtype=complex)
        for j in range(h.size - 1):
            prop = expm(system_matrix(vp[j], vs[j], rho[j], p, w) * h[j]) @ prop
        values, vectors = eig(system_matrix(vp[-1], vs[-1], rho[-1], p, w))
        incident = _wave(values, vectors, -1j * w * qa)          # exp(-i w qa z): travels up
        incident = incident * abs(incident[0]) / incident[0]     # u_x real and positive: phase zero
        down_p, down_s = _wave(values, vectors, 1j * w * qa), _wave(values, vectors, 1j * w * qb)
        # prop @ (u_x0, u_z0, 0, 0) = incident + a down_p + b down_s
        lhs = np.column_stack([prop[:, 0], prop[:, 1], -down_p, -down_s])
        u_x, u_z, _, _ = np.linalg.solve(lhs, incident)
        radial[k], vertical[k] = u_x, -u_z
    # exp(-i w t) of the derivation -> exp(+i w t) of numpy's inverse FFT
    return np.conj(radial), np.conj(vertical)
