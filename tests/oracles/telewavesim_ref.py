"""Independent forward oracle: telewavesim 0.2.1 (Kennett reflectivity, flat layers).

Install with ``bash tests/oracles/INSTALL_telewavesim.sh`` (builds it into the project
venv with the Fortran layer limit raised from 30 to 200). Importing this module does not
require telewavesim; calling :func:`telewavesim_response` does.

What telewavesim computes (read from its source, checked numerically, see ``_selfcheck``):

* ``utils.Model(thickn, rho, vp, vs, 'iso')``: thickness in **km**, density in **kg/m^3**
  (only density *ratios* matter; the eigenvectors are normalised to unit displacement),
  vp/vs in **km/s**. The last entry is the half-space (its thickness is ignored).
  ``utils.run_plane(model, slow, npts, dt, baz)``: slowness in **s/km**, land station
  (free surface at the top of layer 1, no water).
* Output: displacement N, E, Z for a unit-displacement plane P wave incident from the
  half-space, computed per frequency at complex frequency w(1 + 0.001i) (a small
  frequency-proportional damping, not undone), returned as the *unnormalised* forward FFT
  of the conjugate-symmetric spectrum. Z is positive **up**. For baz = 0 the wave travels
  towards -N, so radial = -N (obspy ``rotate_ne_rt``), positive in the propagation
  direction (away from the source).
* Time origin: the incident P crosses the top of the half-space, below the station, at
  t = 0, so the direct P arrives at ``t_P = sum_i h_i * sqrt(1/vp_i^2 - p^2)`` over the
  layers above the half-space (``utils.calc_ttime``), generally between two samples.
  The response is periodic in ``npts * dt`` (choose npts*dt longer than the latest
  multiple you care about).
* Built-in damping (hard-coded in the Fortran, not removable from Python): the spectrum
  is evaluated at complex angular frequency w(1 + 0.001i). Verified: an arrival whose raw
  time (from the half-space top) is T is multiplied by the zero-phase factor
  exp(-0.001 * w * T), i.e. a non-dispersive Q = 500 along the whole path from the top
  of the half-space (e.g. 300 km vs 10 km of rock at p=0.06: amplitude ratio 0.753 at
  1 Hz, exactly exp(-0.001*2*pi*1*45.09)). It matters for deep models: the direct P
  itself is damped by exp(-0.001*w*t_P), and an arrival at lag tau after it by a further
  exp(-0.001*w*tau) relative to the direct P (0.76 at 1 Hz for tau = 44 s), which does
  not cancel in R/Z. To compare exactly, evaluate the model under test at w(1 + 0.001i)
  with phases referenced to the top of the half-space.
* Reverberations between internal interfaces: the stock 0.2.1 gets them wrong (its addition rule
  multiplies by I - R_D R_U instead of the inverse); INSTALL_telewavesim.sh patches it, and
  tests/test_telewavesim_oracle.py checks the patched build against xdisc and tests/oracles/psv_ode.py.
* Limits: at most ``conf.nlaymx`` entries (200 with our build; 30 in the stock build, and
  the stock Fortran silently overruns its arrays beyond that), vs > 0 in every layer
  (no fluid layers), 0 < slowness < 1/max(vp) (the vertical slownesses are real square
  roots; evanescent P gives NaN).

Wrapper conventions (:func:`telewavesim_response`):

* traces are divided by ``npts``: the result is the response to an incident P whose
  displacement is a unit single-sample spike, independent of npts (Z of the direct P at
  vertical incidence on a half-space is ~2, the free-surface doubling);
* the traces are shifted (exact fractional shift, applied in the frequency domain) so that
  the direct P sits at ``time_s == 0`` exactly; ``time_s[j] = j*dt - pre_p_s``, i.e. the
  direct P is at sample ``round(pre_p_s/dt)``. Anything before it is the periodic wrap of
  the late coda (plus the small acausal side lobes of the band-limited spike);
* radial positive away from the source, vertical positive up: the direct P is positive on
  both, and a Ps conversion at a velocity increase with depth is positive on the radial.
"""

from __future__ import annotations

import numpy as np

__all__ = ["direct_p_time", "max_layers", "telewavesim_response"]


def _to_arrays(thickness_km, vp_km_s, vs_km_s, rho):
    h = np.atleast_1d(np.asarray(thickness_km, dtype=float)).copy()
    vp = np.atleast_1d(np.asarray(vp_km_s, dtype=float)).copy()
    vs = np.atleast_1d(np.asarray(vs_km_s, dtype=float)).copy()
    rho = np.atleast_1d(np.asarray(rho, dtype=float)).copy()
    n = len(h)
    if not (len(vp) == len(vs) == len(rho) == n) or n < 1:
        raise ValueError("thickness, vp, vs, rho must have the same non-zero length")
    if np.any(h[:-1] < 0) or np.any(vp <= 0) or np.any(vs <= 0) or np.any(rho <= 0):
        raise ValueError("need thickness >= 0 and vp, vs, rho > 0 (no fluid layers)")
    # density: g/cc if every value is < 100, else kg/m^3 (telewavesim wants kg/m^3)
    rho_kg = rho * 1000.0 if np.all(rho < 100.0) else rho
    if n == 1:  # a bare half-space: put a 1 km layer of the same material on top
        h, vp, vs, rho_kg = (np.r_[1.0, h], np.r_[vp, vp], np.r_[vs, vs], np.r_[rho_kg, rho_kg])
    h[-1] = 0.0
    return h, vp, vs, rho_kg


def max_layers() -> int:
    """Largest number of entries (layers + half-space) the installed build accepts."""
    from telewavesim.rmat_f import conf

    return int(conf.nlaymx)


def direct_p_time(thickness_km, vp_km_s, slowness_s_per_km) -> float:
    """Arrival time of the direct P in raw telewavesim output (s): vertical P delay
    through all layers above the half-space (the last entry)."""
    h = np.asarray(thickness_km, dtype=float)[:-1]
    vp = np.asarray(vp_km_s, dtype=float)[:-1]
    return float(np.sum(h * np.sqrt(1.0 / vp**2 - slowness_s_per_km**2)))


def telewavesim_response(thickness_km, vp_km_s, vs_km_s, rho_kg_m3_or_g_cc,
                         slowness_s_per_km, dt_s, npts, pre_p_s: float = 0.0,
                         return_raw: bool = False):
    """Plane-P response (displacement) of an isotropic flat-layered model with free surface.

    Parameters
    ----------
    thickness_km, vp_km_s, vs_km_s, rho_kg_m3_or_g_cc : sequences, top to bottom; the last
        entry is the half-space (its thickness is ignored). Density in kg/m^3 or g/cc
        (all values < 100 are taken as g/cc).
    slowness_s_per_km : horizontal slowness of the incident P (0 < p < 1/max(vp)).
    dt_s, npts : sampling; the response is periodic in npts*dt_s.
    pre_p_s : time before the direct P kept at the start of the trace (default 0: direct
        P at sample 0, coda after it, wrap-around at the end).
    return_raw : if True, skip the shift and return telewavesim's own time axis
        (j*dt, direct P at :func:`direct_p_time`), still divided by npts.

    Returns
    -------
    time_s, radial, vertical : float64 arrays of length npts. ``time_s`` is relative to the
        direct P (``time_s == 0`` at the direct P) unless ``return_raw``.
    """
    from telewavesim import utils
    from telewavesim.rmat_f import conf

    h, vp, vs, rho = _to_arrays(thickness_km, vp_km_s, vs_km_s, rho_kg_m3_or_g_cc)
    p = float(slowness_s_per_km)
    npts = int(npts)
    dt = float(dt_s)
    if len(h) > conf.nlaymx:
        raise ValueError(f"{len(h)} entries > nlaymx={conf.nlaymx} of this telewavesim build")
    if not (0.0 < p < 1.0 / vp.max()):
        raise ValueError("need 0 < slowness < 1/max(vp)")
    if npts < 2 or dt <= 0:
        raise ValueError("need npts >= 2 and dt > 0")

    model = utils.Model(list(h), list(rho), list(vp), list(vs), "iso")
    st = utils.run_plane(model, p, npts, dt, baz=0.0, wvtype="P")  # land: free surface
    n_, z_ = st[0].data, st[2].data  # N, E (zero for baz=0, isotropic), Z up
    radial = -n_ / npts   # baz=0: propagation towards -N; == obspy rotate_ne_rt radial
    vertical = z_ / npts

    if return_raw:
        return np.arange(npts) * dt, radial, vertical

    # advance by (t_P - pre_p_s): direct P lands exactly on time_s == 0
    shift = direct_p_time(h, vp, p) - float(pre_p_s)
    f = np.fft.rfftfreq(npts, dt)
    ph = np.exp(2j * np.pi * f * shift)
    radial = np.fft.irfft(np.fft.rfft(radial) * ph, npts)
    vertical = np.fft.irfft(np.fft.rfft(vertical) * ph, npts)
    time_s = np.arange(npts) * dt - float(pre_p_s)
    return time_s, radial, vertical


def _selfcheck():  # pragma: no cover - run by hand: python tests/oracles/telewavesim_ref.py
    # homogeneous half-space under a 10 km layer of the same rock
    for dt in (0.1, 0.05):
        t, r, z = telewavesim_response([10.0, 0.0], [6.0, 6.0], [3.5, 3.5], [2.7, 2.7],
                                       0.06, dt, 1024, pre_p_s=5.0)
        i0 = int(np.argmax(z))
        print(f"dt={dt}: direct P at t={t[i0]:+.3f} s, Z={z[i0]:.4f}, R={r[i0]:.4f}, "
              f"R/Z={r[i0] / z[i0]:.4f} (free-surface theory "
              f"{2 * 0.06 * 3.5**2 * np.sqrt(1 / 3.5**2 - 0.06**2) / (1 - 2 * 0.06**2 * 3.5**2):.4f})")
    # Moho test
    t, r, z = telewavesim_response([35.0, 0.0], [6.5, 8.04], [3.75, 4.48], [2.9, 3.3],
                                   0.06, 0.1, 4096, pre_p_s=10.0)
    w = (t > 2.0) & (t < 7.0)
    k = np.flatnonzero(w)[np.argmax(r[w])]
    print(f"Moho: direct P at t={t[np.argmax(z)]:+.2f}, R(0)={r[np.argmax(z)]:.4f}; "
          f"Ps at t={t[k]:.2f} s, R={r[k]:+.4f}")


if __name__ == "__main__":  # pragma: no cover
    _selfcheck()
