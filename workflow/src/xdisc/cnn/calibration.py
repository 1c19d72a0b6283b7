"""What a station's calibration is made of, without torch: the ``cnn.adapt`` settings, the station's noise
pool (:func:`read_pools`), the synthetic samples whose crust is nearest its own (:func:`calibration_pairs`),
and the conformal thresholds set on the scores of its draws (:func:`station_thresholds`).

Shared by :mod:`xdisc.cnn.adapt` (which scores the draws with the network) and :mod:`xdisc.cnn.redecon`
(which makes the no-X draws deconvolved as the station's data and runs without torch).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from xdisc.cnn.synthetic_set import SyntheticSource
from xdisc.core.deconvolution import normalise_by_p
from xdisc.synth.noise_pool import read_pool

log = logging.getLogger(__name__)

# where a station's no-X calibration draws come from: deconvolved as its data (xdisc calibration-draws), or
# noise-free synthetics plus its noise pool
NO_X_DRAWS = ("redeconvolved", "own-noise")
# scores closer than this are one score (the resolution of float32 probabilities near 0.5 is 6e-8)
TIE_TOLERANCE = 1e-7


@dataclass(frozen=True)
class AdaptSettings:
    """The ``cnn.adapt`` configuration section."""

    enabled: bool = True
    noise: str = "transverse"
    epochs: int = 4
    images_per_epoch: int = 2000
    batch_size: int = 64
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    subset_probability: float = 0.5
    calibration_draws: int = 40
    present_probability: float | None = 0.9
    false_alarm_rate: float = 0.05
    miss_rate: float = 0.2
    absent_dvs: float = 0.03
    hard_fraction: float = 0.5
    max_stations: int = 2000
    match_crust: bool = True
    crust_window_s: tuple = (-1.0, 20.0)
    calibration_noise: str = "redeconvolved"
    batch_stations: int = 20
    calibration_crust: str = "sample"
    conformal_present: bool = False

    @classmethod
    def from_config(cls, cfg: dict) -> AdaptSettings:
        cfg = dict(cfg)
        if "crust_window_s" in cfg:
            cfg["crust_window_s"] = tuple(float(v) for v in cfg["crust_window_s"])
        return cls(**cfg)


@dataclass
class Pool:
    """One station's noise pool, restricted to the slownesses the synthetic grid covers."""

    station: str
    noise: np.ndarray      # (trace, time)
    slowness: np.ndarray   # (trace,)
    grid_index: np.ndarray  # (trace,) nearest slowness of the synthetic grid
    radial: np.ndarray | None = None  # (trace, time) the station's receiver functions / direct P
    pre_p: np.ndarray | None = None   # (trace, vertical/radial, time) pre-P noise / the vertical's signal rms


def read_pools(paths: list, grid_slowness: np.ndarray, time_s: np.ndarray, min_rf: int,
               method: str = "transverse", radial: bool = False, pre_p: bool = False) -> list[Pool]:
    """The noise pools with at least ``min_rf`` traces inside the synthetic slowness grid (half a step
    beyond its ends at most); the time axes must be the synthetic set's. ``radial``: also keep the
    stations' receiver functions (for ``match_crust``); ``pre_p``: their pre-P noise (traces without
    it are left out; None for a pool that has none)."""
    grid = np.asarray(grid_slowness, float)
    half = 0.5 * float(np.min(np.diff(grid))) if grid.size > 1 else 0.005
    pools = []
    for path in paths:
        raw = read_pool(path, method, radial, pre_p)
        if raw["time"].size != time_s.size or not np.allclose(raw["time"], time_s, atol=1e-6):
            raise ValueError(f"{path}: time axis differs from the synthetic set's (receiver_function settings)")
        p = raw["slowness"]
        inside = (p >= grid[0] - half) & (p <= grid[-1] + half) & np.all(np.isfinite(raw["noise"]), axis=1)
        if raw["pre_p"] is not None:
            inside &= np.all(np.isfinite(raw["pre_p"]), axis=(1, 2))
        if inside.sum() < min_rf:
            log.info("%s: %d noise trace(s) in the slowness grid < %d; no own-noise stations",
                     raw["station"], int(inside.sum()), min_rf)
            continue
        k = np.argmin(np.abs(p[inside, None] - grid[None, :]), axis=1)
        kept = raw["radial"][inside] if raw["radial"] is not None else None
        pools.append(Pool(raw["station"], raw["noise"][inside], p[inside], k, kept,
                          raw["pre_p"][inside] if raw["pre_p"] is not None else None))
    return pools


def crust_distances(pool: Pool, source: SyntheticSource, window_s: tuple, normalised: np.ndarray | None = None
                    ) -> np.ndarray | None:
    """Per sample of ``source``, the mean squared difference between its noise-free receiver functions
    and the station's mean receiver function, per slowness of the grid the station's events fall on
    (weighted by their number), over ``window_s`` (s after P): how unlike the station's crust each
    sample's crust is. None where the pool keeps no radial receiver functions. ``normalised`` may
    hold the source's P-normalised clean traces in that window (to share them across stations)."""
    if pool.radial is None:
        return None
    if normalised is None:
        normalised = crust_window(source, window_s)
    return crust_misfit(pool.radial[:, in_window(source.time_s, window_s)], pool.grid_index, normalised)


def crust_misfit(radial: np.ndarray, grid_index: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Per sample, the mean squared difference between ``samples`` (sample, slowness, time: noise-free
    receiver functions / direct P in a crustal window) and a station's mean receiver function (``radial``:
    event, same window) at each grid slowness its events fall on (``grid_index``), weighted by their number."""
    bins, counts = np.unique(grid_index, return_counts=True)
    obs = np.stack([np.nanmean(radial[grid_index == k], axis=0) for k in bins])
    d = np.nanmean((samples[:, bins, :] - obs[None]) ** 2, axis=2)
    return d @ counts / counts.sum()


def crust_window(source: SyntheticSource, window_s: tuple) -> np.ndarray:
    """The source's noise-free receiver functions / direct P inside ``window_s`` (sample, slowness, time)."""
    return normalise_by_p(source.clean.astype(float), source.time_s)[:, :, in_window(source.time_s, window_s)]


def in_window(time_s: np.ndarray, window_s: tuple) -> np.ndarray:
    return (time_s >= window_s[0]) & (time_s <= window_s[1])


def calibration_pairs(pools: list[Pool], source: SyntheticSource, draws: int, absent_dvs: float,
                      seed: int, crust_window_s: tuple | None = None, hard_fraction: float = 0.0,
                      normalised: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per station ``draws`` samples without X and ``draws`` with X of dVs >= ``absent_dvs``: pairs and,
    per pair, 0/1 for no X / X. At random (with replacement where the set holds fewer); with
    ``crust_window_s``, the samples whose crust is nearest the station's (:func:`crust_distances`),
    where its pool keeps its receiver functions. With ``hard_fraction``, that fraction of the no-X draws
    are look-alikes of X (``source.hard``: a distractor below the X window, a low-velocity zone, thick
    sediments), so that the present threshold bounds false alarms on them too. ``normalised``: the
    source's :func:`crust_window`, where the caller already holds it (one station at a time)."""
    rng = np.random.default_rng([seed, 23])
    no_x = np.flatnonzero(source.label == 0)
    with_x = np.flatnonzero((source.label == 1) & (source.x_dvs >= absent_dvs - 1e-9))
    if no_x.size == 0 or with_x.size == 0:
        raise ValueError(f"the synthetic test set needs samples without X and with X of dVs >= {absent_dvs}")
    hard = no_x[source.hard[no_x]] if source.hard is not None and hard_fraction > 0 else np.zeros(0, int)
    n_hard = round(hard_fraction * draws) if hard.size else 0
    if crust_window_s is not None and normalised is None:
        normalised = crust_window(source, crust_window_s)
    pairs, kind = [], []
    for s, pool in enumerate(pools):
        dist = crust_distances(pool, source, crust_window_s, normalised) if crust_window_s is not None else None
        for cls_, idx in ((0, no_x), (1, with_x)):
            pick = rng.choice(idx, size=draws, replace=idx.size < draws)
            if dist is not None and idx.size >= draws:
                pick = idx[np.argsort(dist[idx], kind="stable")[:draws]]
            if cls_ == 0 and n_hard:
                pick[:n_hard] = rng.choice(hard, size=n_hard, replace=hard.size < n_hard)
            pairs += [(s, i) for i in pick]
            kind += [cls_] * draws
    return np.array(pairs, int), np.array(kind, int)


def station_thresholds(prob_no_x: np.ndarray, prob_x: np.ndarray, a: AdaptSettings) -> dict:
    """A station's thresholds from the (calibrated) probabilities of its own-noise stations without and
    with X. ``present``: at or above ``present_probability`` (the same for every station), or, where that
    is None, at or above the conformal upper order statistic of its no-X scores (:func:`upper_order_statistic`)
    that a new station without X exceeds with probability at most ``false_alarm_rate`` (where the draws are
    exchangeable with it), and at least 0.5 (where a station's no-X scores are all tiny, a quantile of them
    is no evidence). On the three independent test networks the one probability let in fewer false alarms
    than each station's own threshold and found as many X or more on two of three: the draws are not
    exchangeable with real stations, and the 2nd-largest of 40 scores scatters
    (docs/results/2026-12-04-ceilings-on-the-corrected-networks.md). ``absent`` at or below the score that
    a new station with X falls under with probability at most ``miss_rate``, also where that is above 0.5:
    a station that scores well below what X scores at this station is unlike X, even where the network,
    trained on xdisc's synthetic stations, gives it more than one half. (Earlier versions also asked
    ``absent`` for a score below 0.5; without that cap 1-3 more of 100 stations were decided right on
    each of four adaptations of both independent test networks, with the same false alarms.) Where the
    thresholds cross, ``present`` is checked first (:func:`xdisc.cnn.predict.calibrated_verdict`), and
    ``miss_rate`` counts the X draws that would be called ``absent``. With ``conformal_present``,
    ``present`` needs both ``present_probability`` and the conformal threshold (meant for draws made in
    the station's own crust, ``calibration_crust: station``). The rates returned are those of the
    station's own draws at its thresholds."""
    if a.present_probability is None:
        present = float(max(0.5, upper_order_statistic(prob_no_x, a.false_alarm_rate)))
    elif a.conformal_present:
        present = float(max(a.present_probability, upper_order_statistic(prob_no_x, a.false_alarm_rate)))
    else:
        present = float(a.present_probability)
    absent = float(lower_order_statistic(prob_x, a.miss_rate))
    return {"present_threshold": present, "absent_threshold": absent,
            "false_alarm_rate": float(np.mean(prob_no_x >= present)),
            "detection_rate": float(np.mean(prob_x >= present)),
            "miss_rate": float(np.mean((prob_x <= absent) & (prob_x < present))),
            "n_draws": int(prob_no_x.size)}


def upper_order_statistic(scores: np.ndarray, rate: float, tie_tol: float = TIE_TOLERANCE) -> float:
    """The k-th smallest of n ``scores`` with k = ceil((n + 1)(1 - rate)): a new score exchangeable with
    them reaches it with probability (n + 1 - k) / (n + 1) <= ``rate`` (split-conformal; Vovk et al. 2005).
    ``np.quantile(scores, 1 - rate)`` sits lower and lets through more: 7.2 % for rate 0.05 and 40 draws.
    Where n is too small for ``rate`` (k > n), the largest score: the rate is then 1 / (n + 1).

    Ties (scores within ``tie_tol``): a network gives many inputs exactly the same score where it
    saturates, or where every unit of its head is silent (an image it cannot read). A new score equal to
    a tied k-th score reaches it as often as every draw of the tie, which can be more than n + 1 - k of
    them, so the threshold moves above the tie, to the next larger score (``inf``: none is, and no new
    score is above every draw with the promised rate).

    The mirror image of :func:`lower_order_statistic`: with k' = n + 1 - k = floor((n + 1) rate), the k-th
    smallest score is the k'-th largest."""
    return -lower_order_statistic(-np.asarray(scores, float), rate, tie_tol)


def lower_order_statistic(scores: np.ndarray, rate: float, tie_tol: float = TIE_TOLERANCE) -> float:
    """The k-th smallest of n ``scores`` with k = floor((n + 1) rate): a new exchangeable score falls at or
    below it with probability k / (n + 1) <= ``rate``. Where n is too small (k = 0), the smallest score.
    Where the k-th score is tied with later ones (see :func:`upper_order_statistic`), more than k draws lie
    at or below it, so the threshold moves below the tie, to the next smaller score (``-inf``: none is)."""
    s = np.sort(np.asarray(scores, float))
    k = max(math.floor((s.size + 1) * rate + 1e-9), 1)
    value = float(s[k - 1])
    if np.count_nonzero(s <= value + tie_tol) > k:
        below = s[s < value - tie_tol]
        return float(below[-1]) if below.size else -math.inf
    return value
