"""Synthetic stations: many noisy receiver functions of one model over a realistic slowness
distribution, for validating the stacking verdict and the CNN against known truth.

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
    """``n_rf`` noisy receiver functions drawn from one model's noise-free grid (slowness, time)."""
    grid_dist = distance_for_slowness(SLOWNESS_GRID, model_name)
    dist = rng.uniform(*distance_range, n_rf)
    k = np.argmin(np.abs(dist[:, None] - grid_dist[None, :]), axis=1)
    traces = clean[k]
    time_s = rf.time_axis()
    snr = np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]), n_rf))
    noise = np.stack([augment.coloured_noise(rng, (time_s.size,), rf.dt, rf.gaussian_width_hz,
                                             rng.uniform(*colour_exponent)) for _ in range(n_rf)])
    noisy = augment.add_noise(traces, noise, snr, time_s)
    return Station(noisy, SLOWNESS_GRID[k], grid_dist[k], traces)


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
