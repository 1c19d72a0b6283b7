"""Synthetic stations: many noisy receiver functions of one model over a realistic slowness
distribution, for validating the stacking verdict and the CNN against known truth.

One generator, :func:`synthetic_station` (with :class:`StationDraw`): the pipeline's (CNN training,
``xdisc evaluate``, detectability checks), one colour exponent per station, augmentation, optional real
noise. :func:`make_station` (with :func:`clean_grid` on :data:`SLOWNESS_GRID`) draws through it without
augmentation and keeps the noise-free traces and distances, for the stacking tests and the
detection-limit benchmark.

Distances are drawn uniformly in 30-90 deg; each is turned into the P slowness of a surface
source (TauP) and snapped to the nearest slowness of a grid at which the model's noise-free
receiver functions are computed once (the moveout error of the snap is nil: the receiver
function is used with the grid slowness). Every receiver function gets its own noise draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdisc.core.deconvolution import RFSettings
from xdisc.core.earthmodel import EarthModel
from xdisc.core.moveout import distance_for_slowness
from xdisc.synth import augment
from xdisc.synth.synthetics import Layering, receiver_functions

SLOWNESS_GRID = np.round(np.arange(0.042, 0.0801, 0.002), 4)


@dataclass
class Station:
    rf: np.ndarray          # (event, time)
    slowness: np.ndarray    # (event,)
    distance: np.ndarray    # (event,)
    clean: np.ndarray       # (event, time) noise-free


def clean_grid(models: list[EarthModel], rf: RFSettings, layering: Layering) -> np.ndarray:
    """Noise-free receiver functions of each model on :data:`SLOWNESS_GRID`: (model, slowness, time)."""
    stacks = [layering.apply(m) for m in models]
    out = []
    for a in range(0, len(stacks), 8):
        out.append(receiver_functions(stacks[a:a + 8], SLOWNESS_GRID, rf))
    return np.concatenate(out)


def make_station(clean: np.ndarray, n_rf: int, rng: np.random.Generator, rf: RFSettings,
                 snr_range=(3.0, 30.0), colour_exponent=(0.0, 1.5), distance_range=(30.0, 90.0),
                 model_name: str = "ak135") -> Station:
    """``n_rf`` noisy receiver functions drawn from one model's noise-free grid (:data:`SLOWNESS_GRID`, time)
    by the pipeline's generator (:func:`synthetic_station`) without augmentation, with their noise-free
    traces and distances."""
    draw = StationDraw(distance_range_deg=tuple(distance_range), snr=tuple(snr_range),
                       colour_exponent=tuple(colour_exponent), spurious_probability=0.0, amplitude_jitter=0.0,
                       time_shift_s=0.0, trim_probability=0.0)
    noisy, slowness = synthetic_station(clean, SLOWNESS_GRID, rf.time_axis(), rf.dt, rf.gaussian_width_hz, draw,
                                        rng, n_rf=n_rf, model_name=model_name)
    k = np.searchsorted(SLOWNESS_GRID, slowness)
    return Station(noisy, slowness, _grid_distances(tuple(np.round(SLOWNESS_GRID, 6)), model_name)[k], clean[k])


def station_parameters(n: int, dvs: float | None, seed: int) -> dict:
    """Parameters of ``n`` synthetic stations from the default synthetic distribution: without X
    (``dvs`` None) or all with X of relative S jump ``dvs`` (dVp and drho scaled alike; style
    'constant' capped as the generator does)."""
    from xdisc import config as cfgmod
    from xdisc.synth.synthetics import cap_constant_style, draw_parameters

    syn = cfgmod.validate({"synthetics": {"x_fraction": 0.0 if dvs is None else 1.0}})["synthetics"]
    p = draw_parameters(n, syn, seed)
    if dvs is not None:
        p["x_dvp"] = p["x_dvp"] / p["x_dvs"] * dvs
        p["x_drho"] = p["x_drho"] / p["x_dvs"] * dvs
        p["x_dvs"] = np.full(n, dvs)
        cap_constant_style(p)
    return p


# ----------------------------------------------------------------------------- pipeline generator

@dataclass(frozen=True)
class StationDraw:
    """How a synthetic station is drawn from one sample's noise-free receiver functions.
    :meth:`from_config` takes the configuration's values; the field defaults here (no microseism
    peak, for one) keep the random stream of code that builds a draw directly."""

    rf_per_station: tuple = (20, 100)
    distance_range_deg: tuple = (30.0, 90.0)
    snr: tuple = (3.0, 30.0)
    colour_exponent: tuple = (0.0, 1.5)
    microseism_amplitude: tuple = (0.0, 0.0)
    microseism_hz: tuple = (0.1, 0.3)
    real_noise_fraction: float = 0.0
    spurious_probability: float = 0.1
    spurious_amplitude: tuple = (0.02, 0.15)
    amplitude_jitter: float = 0.05
    time_shift_s: float = 0.1
    trim_probability: float = 0.3
    trim_start_s: tuple = (-10.0, -3.0)
    trim_end_s: tuple = (80.0, 120.0)

    @classmethod
    def from_config(cls, synthetics: dict, cnn: dict) -> StationDraw:
        noise, aug = synthetics["noise"], synthetics["augmentation"]
        return cls(rf_per_station=tuple(cnn["rf_per_station"]), distance_range_deg=tuple(cnn["distance_range_deg"]),
                   snr=tuple(noise["snr"]), colour_exponent=tuple(noise["colour_exponent"]),
                   microseism_amplitude=tuple(noise["microseism_amplitude"]),
                   microseism_hz=tuple(noise["microseism_hz"]),
                   real_noise_fraction=noise["real_noise_fraction"] if noise.get("real_noise_file") else 0.0,
                   spurious_probability=aug["spurious_probability"],
                   spurious_amplitude=tuple(aug["spurious_amplitude"]),
                   amplitude_jitter=aug["amplitude_jitter"], time_shift_s=aug["time_shift_s"],
                   trim_probability=aug["trim_probability"], trim_start_s=tuple(aug["trim_start_s"]),
                   trim_end_s=tuple(aug["trim_end_s"]))


def synthetic_station(clean: np.ndarray, grid_slowness: np.ndarray, time_s: np.ndarray, dt: float,
                      width_hz: float, draw: StationDraw, rng: np.random.Generator, n_rf: int | None = None,
                      snr: float | tuple | None = None, noise_pool: np.ndarray | None = None,
                      model_name: str = "ak135") -> tuple[np.ndarray, np.ndarray]:
    """Noisy, augmented receiver functions (n, time) and their slownesses from a sample's noise-free
    set ``clean`` (slowness, time): distances uniform in the configured range, each snapped to the
    nearest grid slowness; per-trace SNR log-uniform (or fixed/range ``snr``)."""
    grid_dist = _grid_distances(tuple(np.round(grid_slowness, 6)), model_name)
    if n_rf is None:
        n_rf = int(rng.integers(draw.rf_per_station[0], draw.rf_per_station[1] + 1))
    dist = rng.uniform(*draw.distance_range_deg, n_rf)
    k = np.argmin(np.abs(dist[:, None] - grid_dist[None, :]), axis=1)
    lo, hi = (snr, snr) if np.isscalar(snr) else (snr or draw.snr)
    snr_i = np.exp(rng.uniform(np.log(lo), np.log(hi), n_rf))
    if noise_pool is not None and rng.random() < draw.real_noise_fraction:
        traces = augment.shift_time(rng, np.asarray(clean, float)[k], dt, draw.time_shift_s)
        out = augment.add_noise(traces, augment.real_noise(rng, noise_pool, traces.shape), snr_i, time_s)
    else:
        exponent = rng.uniform(*draw.colour_exponent)
        microseism = None
        if draw.microseism_amplitude[1] > 0:  # drawn only then: the default stream stays as it was
            microseism = (rng.uniform(*draw.microseism_amplitude), rng.uniform(*draw.microseism_hz))
        out = augment.noisy_copies(rng, clean, k, snr_i, time_s, dt, width_hz, exponent, draw.time_shift_s,
                                   microseism)
    out = augment.add_spurious_arrivals(rng, out, time_s, draw.spurious_probability, draw.spurious_amplitude)
    out = augment.jitter_amplitude(rng, out, draw.amplitude_jitter)
    if rng.random() < draw.trim_probability:
        out = augment.trim_window(out, time_s, rng.uniform(*draw.trim_start_s), rng.uniform(*draw.trim_end_s))
    return out, np.asarray(grid_slowness, float)[k]


_GRID_DISTANCES: dict = {}


def _grid_distances(grid: tuple, model_name: str) -> np.ndarray:
    key = (grid, model_name)
    if key not in _GRID_DISTANCES:
        d = distance_for_slowness(np.asarray(grid), model_name)
        _GRID_DISTANCES[key] = np.where(np.isfinite(d), d, np.inf)  # slownesses no surface source has: never drawn
    return _GRID_DISTANCES[key]
