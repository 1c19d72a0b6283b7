"""The plane-wave propagator against independent formulations of the same physics."""

import numpy as np
import pytest
from scipy.linalg import expm
from xdisc.core.propagator import _MATCH, _eigenvectors, layer_coefficients, plane_wave_response


def system_matrix(vp, vs, rho, p):
    """d b/dz = i w A b for b = (u_x, u_z, tau_zz/iw, tau_xz/iw), from Hooke's law and the
    equations of motion (independent of the eigenvector construction in xdisc)."""
    mu, lam = rho * vs**2, rho * (vp**2 - 2 * vs**2)
    l2 = lam + 2 * mu
    return np.array([[0, -p, 0, 1 / mu],
                     [-lam * p / l2, 0, 1 / l2, 0],
                     [0, rho, 0, -p],
                     [rho - p**2 * (l2 - lam**2 / l2), 0, -p * lam / l2, 0]])


def brute_force_response(h, vp, vs, rho, p, freqs):
    """Surface R, Z by matrix exponentials, complex arithmetic, one frequency at a time."""
    out = []
    for f in freqs:
        w = 2 * np.pi * f
        prop = np.eye(4, dtype=complex)
        for i in range(len(h) - 1):
            prop = expm(1j * w * system_matrix(vp[i], vs[i], rho[i], p) * h[i]) @ prop
        e, _, _ = _eigenvectors(np.array(vp[-1]), np.array(vs[-1]), np.array(rho[-1]), p)
        m = np.linalg.inv(e) @ prop
        det = m[2, 0] * m[3, 1] - m[2, 1] * m[3, 0]
        ux, uz_up = m[3, 1] / det, m[3, 0] / det
        tau = sum(h[i] * np.sqrt(1 / vp[i] ** 2 - p * p) for i in range(len(h) - 1))
        shift = np.exp(1j * w * tau)
        out.append((np.conj(ux) * shift, np.conj(uz_up) * shift))
    return np.array(out).T


def test_layer_matrix_equals_matrix_exponential():
    vp, vs, rho, p, h, w = 5.8, 3.46, 2.72, 0.06, 20.0, 2 * np.pi * 0.37
    expected = expm(1j * w * system_matrix(vp, vs, rho, p) * h)
    kp, ks, xi, eta = layer_coefficients(np.array([vp]), np.array([vs]), np.array([rho]), p)
    tp, ts = w * xi[0] * h, w * eta[0] * h
    rotated = np.where(_MATCH, kp[0] * np.cos(tp) + ks[0] * np.cos(ts), kp[0] * np.sin(tp) + ks[0] * np.sin(ts))
    t = np.diag([1, 1j, 1, 1j])
    np.testing.assert_allclose(t @ rotated @ np.linalg.inv(t), expected, atol=1e-12 * np.abs(expected).max())


def test_multilayer_response_equals_brute_force():
    h, vp, vs, rho = [2.0, 18.0, 15.0, 0.0], [3.5, 5.8, 6.5, 8.04], [1.6, 3.46, 3.85, 4.48], [2.2, 2.72, 2.92, 3.3]
    freqs = np.array([0.0, 0.05, 0.3, 0.77, 1.5, 2.2])
    r_bf, z_bf = brute_force_response(h, vp, vs, rho, 0.07, freqs)
    r, z = plane_wave_response([h], [vp], [vs], [rho], [0.07], freqs, dtype=np.float64)
    np.testing.assert_allclose(r[0], r_bf, atol=1e-10)
    np.testing.assert_allclose(z[0], z_bf, atol=1e-10)


def test_free_surface_ratio_of_half_space():
    """A homogeneous half-space: R/Z = 2 p vs^2 eta / (1 - 2 p^2 vs^2) at every frequency."""
    vp, vs, p = 6.0, 3.5, 0.06
    freqs = np.linspace(0.01, 2, 50)
    r, z = plane_wave_response([[10.0, 0.0]], [[vp, vp]], [[vs, vs]], [[2.7, 2.7]], [p], freqs, dtype=np.float64)
    eta = np.sqrt(1 / vs**2 - p**2)
    np.testing.assert_allclose(r[0] / z[0], 2 * p * vs**2 * eta / (1 - 2 * p**2 * vs**2), rtol=1e-10)


def test_zero_thickness_padding_is_exact():
    h, vp, vs, rho = [20.0, 15.0, 0.0], [5.8, 6.5, 8.04], [3.46, 3.85, 4.48], [2.72, 2.92, 3.3]
    freqs = np.linspace(0, 2, 30)
    r1, z1 = plane_wave_response([h], [vp], [vs], [rho], [0.06], freqs, dtype=np.float64)
    def pad(a, v):
        return [a[0], a[1], v, v, a[2]]

    r2, z2 = plane_wave_response([[20.0, 15.0, 0.0, 0.0, 0.0]], [pad(vp, 8.04)], [pad(vs, 4.48)], [pad(rho, 3.3)],
                                 [0.06], freqs, dtype=np.float64)
    np.testing.assert_allclose(r2, r1, atol=1e-12)
    np.testing.assert_allclose(z2, z1, atol=1e-12)


def test_float32_close_to_float64():
    rng = np.random.default_rng(0)
    n = 60
    h = np.r_[rng.uniform(2, 15, n - 1), 0.0]
    vs = np.sort(rng.uniform(3.3, 5.5, n))
    vp, rho = vs * 1.8, 2.5 + 0.2 * vs
    freqs = np.fft.rfftfreq(4096, 0.1)[:900]
    r64, z64 = plane_wave_response([h], [vp], [vs], [rho], [0.06], freqs, dtype=np.float64)
    r32, z32 = plane_wave_response([h], [vp], [vs], [rho], [0.06], freqs, dtype=np.float32)
    assert np.abs(r32 - r64).max() < 1e-3 * np.abs(r64).max()
    assert np.abs(z32 - z64).max() < 1e-3 * np.abs(z64).max()


def test_evanescent_slowness_is_a_clear_error():
    with pytest.raises(ValueError, match="evanescent"):
        plane_wave_response([[10.0, 0.0]], [[6.0, 13.0]], [[3.5, 7.0]], [[2.7, 3.0]], [0.08], [0.1, 0.2])
