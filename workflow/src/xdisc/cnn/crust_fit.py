"""A station's own crust (Moho, Vp/Vs, sediment) for its calibration draws (``cnn.adapt.calibration_crust:
station``), fitted to the first seconds of its receiver functions.

Why: behind soft sediment each earthquake's source leaves its own residue in a receiver function, up to the
X window, and a station's no-X calibration draws only predict the false alarms this makes when they ring as
the station does. The nearest crusts of the synthetic test set are few where the sediment is thick and soft:
at three sediment stations of an independent test network that the CNN called X without X, their draws
reached the present threshold in 3-5 % of cases, the same draws with each station's true crust in 23-35 %
(docs/results/2026-12-05-own-crust-calibration.md).

The fit: the crust parameters of the synthetic set (``synthetics.crust``: Moho depth, crustal Vp/Vs and Vp
scale, sediment thickness, Vs and Vp/Vs) that make noise-free receiver functions (xdisc's propagator,
impulsive source, the pipeline's deconvolution) nearest the station's mean receiver function at each grid
slowness its events fall on, within ``cnn.adapt.crust_window_s`` of P (the mean squared difference of
:func:`xdisc.cnn.calibration.crust_misfit`). It starts from the crusts of the test set's nearest samples and
moves them by a seeded random local search in batches (each batch of candidates is one call of the
propagator). The sediment is found well; the Moho behind thick sediment often is not (its Ps is hidden in
the ringing), which the draws tolerate: the ringing is what they need.

Pure numpy (no torch), as :mod:`xdisc.cnn.redecon`, which calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdisc.cnn.calibration import crust_misfit, in_window
from xdisc.core.deconvolution import RFSettings, normalise_by_p
from xdisc.core.earthmodel import EarthModel, replace_crust
from xdisc.synth import synthetics as syn

# the crust parameters of a synthetic sample (xdisc.synth.synthetics), in replace_crust's order
CRUST_KEYS = ("moho_km", "vpvs", "crust_vp_scale", "sediment_km", "sediment_vs_km_s", "sediment_vpvs")
# their ranges in synthetics.crust
_RANGE_KEYS = ("moho_km", "vpvs", "vp_scale", "sediment_km", "sediment_vs_km_s", "sediment_vpvs")
# a sediment thinner than this is no sediment (the grid of the receiver functions cannot see it)
MIN_SEDIMENT_KM = 0.2


@dataclass(frozen=True)
class CrustFit:
    """A fitted crust: parameters (:data:`CRUST_KEYS`), its misfit and that of the best start."""

    params: dict
    misfit: float
    start_misfit: float


def crust_bounds(crust_cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of :data:`CRUST_KEYS` from ``synthetics.crust`` (sediment from 0 km)."""
    lo = np.array([float(crust_cfg[k][0]) for k in _RANGE_KEYS])
    hi = np.array([float(crust_cfg[k][1]) for k in _RANGE_KEYS])
    lo[3] = 0.0
    return lo, hi


def crust_receiver_functions(crusts: np.ndarray, reference: EarthModel, slowness: np.ndarray, rf: RFSettings,
                             layering: syn.Layering, window_s: tuple, response_duration_s: float) -> np.ndarray:
    """Noise-free receiver functions / direct P (crust, slowness, time in ``window_s``) of ``reference`` with
    each row of ``crusts`` (:data:`CRUST_KEYS`) as its crust, made as the synthetic sets make theirs
    (``synthetics.response_duration_s``: half of the sets' 409.6 s changes the receiver functions by up to
    a tenth of their peak, the mantle's late reverberations wrapping into the crustal window)."""
    stacks = [layering.apply(replace_crust(reference, *_valid(c))) for c in crusts]
    rfs = syn.receiver_functions(stacks, slowness, rf, response_duration_s)
    time_s = rf.time_axis()
    return normalise_by_p(rfs, time_s)[..., in_window(time_s, window_s)]


def _valid(c: np.ndarray) -> tuple:
    moho, vpvs, scale, sed, sed_vs, sed_vpvs = (float(v) for v in c)
    sed = sed if sed >= MIN_SEDIMENT_KM else 0.0
    return moho, vpvs, scale, min(sed, 0.5 * moho), sed_vs, sed_vpvs


def fit_crust(radial: np.ndarray, grid_index: np.ndarray, starts: np.ndarray, reference: EarthModel,
              slowness: np.ndarray, rf: RFSettings, layering: syn.Layering, window_s: tuple,
              bounds: tuple[np.ndarray, np.ndarray], rng: np.random.Generator, response_duration_s: float = 409.6,
              rounds: int = 8, candidates: int = 32, keep: int = 4, step: float = 0.15) -> CrustFit:
    """The crust whose receiver functions are nearest a station's (``radial``: event, time in ``window_s``,
    divided by direct P; ``grid_index``: each event's slowness on ``slowness``): ``starts`` (crust,
    :data:`CRUST_KEYS`), then ``rounds`` of ``candidates`` random steps around the ``keep`` best so far,
    the step (a fraction of each parameter's range) shrinking by 0.7 per round."""
    lo, hi = bounds
    span = hi - lo
    bins, local = np.unique(grid_index, return_inverse=True)  # only the slownesses the station's events use
    slowness = np.asarray(slowness, float)[bins]
    best = np.asarray(starts, float)
    best = np.clip(np.where(np.isfinite(best), best, 0.5 * (lo + hi)), lo, hi)
    misfit = crust_misfit(radial, local,
                          crust_receiver_functions(best, reference, slowness, rf, layering, window_s,
                                                   response_duration_s))
    start_misfit = float(misfit.min())
    for _ in range(rounds):
        parents = best[np.argsort(misfit, kind="stable")[:keep]]
        cand = parents[rng.integers(0, parents.shape[0], candidates)] + rng.normal(0.0, step, (candidates, 6)) * span
        cand = np.clip(cand, lo, hi)
        cand[:, 3] = np.where(cand[:, 3] < MIN_SEDIMENT_KM, 0.0, cand[:, 3])
        m = crust_misfit(radial, local, crust_receiver_functions(cand, reference, slowness, rf, layering,
                                                                      window_s, response_duration_s))
        allc, allm = np.concatenate([best, cand]), np.concatenate([misfit, m])
        order = np.argsort(allm, kind="stable")[: max(keep, 8)]
        best, misfit = allc[order], allm[order]
        step *= 0.7
    k = int(np.argmin(misfit))
    return CrustFit(dict(zip(CRUST_KEYS, _valid(best[k]), strict=True)), float(misfit[k]), start_misfit)
