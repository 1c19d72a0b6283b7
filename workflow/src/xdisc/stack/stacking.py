"""Conventional X verdict: moveout-corrected depth stacks with bootstrap bounds, and vespagrams.

Stage ``xdisc stack``. The receiver functions of a station (normalised by their direct P)
are mapped to depth with 1-D ray theory (:mod:`xdisc.core.moveout`, each at its own slowness),
stacked with inverse-variance weights from their pre-P noise, and resampled with replacement
(seeded bootstrap) for 95 % bounds. A slowness
stack (vespagram: relative slowness in s/deg against time at the reference distance) tells
a direct Ps conversion (arrives later at larger slowness: negative relative slowness) from
a reverberation (positive relative slowness).

Verdict per station:
  * ``undetermined``: fewer than ``min_rf`` receiver functions, or the 410 or 660 not seen
    (no positive peak in its window whose lower 95 % bound is above zero); with
    ``require_410_660: for_absent`` (the default) an X that passes every check below is present
    all the same when the missing one is shown weak (the other seen, the missing one's window
    below half of what the other predicts for it: X that reaches the 410 takes its contrast);
    ``always``: no verdict without both;
  * ``present``: a positive peak in the X window, or ``x_margin_km`` beyond it but reaching into it within
    its bootstrap error or its half width (the largest peak that passes), has its lower bound above zero,
    exceeds ``noise_factor`` times the bootstrap noise level (median bootstrap standard
    deviation over 200-800 km) and its vespagram maximum lies at a relative slowness between
    ``conversion_slowness_max_multiple`` and ``conversion_slowness_fraction`` times that predicted for
    Ps from its depth (moveout of a conversion: not of a reverberation, nor steeper than any conversion),
    with ``moveout_bootstrap_share`` set in at least that share of the event resamples;
  * ``absent`` otherwise.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xdisc.config import config_hash
from xdisc.core.artifacts import as_float32, provenance_attrs, usable_receiver_functions
from xdisc.core.deconvolution import noise_weights, normalise_by_p
from xdisc.core.earthmodel import EarthModel, load_model
from xdisc.core.moveout import delay_table, distance_for_slowness, slowness_for_distance, to_depth
from xdisc.core.verdicts import ABSENT, PRESENT, UNDETERMINED
from xdisc.stack import hk, resonance

TABLE_COLUMNS = ("station", "latitude", "longitude", "n_rf", "verdict", "x_depth_km", "x_depth_err_km", "x_amp",
                 "x_amp_err", "d410_km", "d660_km", "moho_km", "moho_err_km", "vpvs", "vpvs_err", "depth_model",
                 "reason")
# fewest receiver functions for an H-kappa estimate
MIN_RF_CRUST = 3
# the 410's depth-stack amplitude over the 660's in a noise-free AK135 station (IASP91 0.52, PREM 0.40;
# tests/test_stacking.py measures it)
NORMAL_410_660 = 0.54
# a 410 (660) that is not seen is shown weak when its window's upper 95 % bound stays below this fraction of
# what the other one predicts for it through NORMAL_410_660
WEAK_FRACTION = 0.5
# the residual floor of a peak (stacking.multiples.residual_fraction) counts the multiples subtracted this near
RESIDUAL_REACH_KM = 10.0
# a peak beyond the X window is X when it reaches into the window within its half width (where the stack
# falls to half the peak), counted up to this many km: the half depth interval of the broadest X searched
# for (a 20-km gradient), whose peak lies in its middle
MAX_HALF_WIDTH_KM = 10.0


def _taup_name(model: EarthModel) -> str:
    """The TauP model whose direct-P slownesses go with ``model`` (its own name for a reference model, else
    AK135)."""
    return model.name if model.name in ("ak135", "iasp91", "prem") else "ak135"


def weighted_mean(traces: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over rows, NaNs left out."""
    finite = np.isfinite(traces)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(finite, traces, 0.0)) / (weights @ finite)


def resample_counts(k: int, n: int, seed: int) -> np.ndarray:
    """How often each of ``k`` events is drawn in each of ``n`` resamples with replacement (n, k), seeded: the
    resamples of :func:`bootstrap_means` and :func:`moveout_share`."""
    return np.random.default_rng(seed).multinomial(k, np.full(k, 1.0 / k), size=n).astype(float)


def bootstrap_means(traces: np.ndarray, n: int, seed: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(Weighted) means of ``n`` resamples with replacement of the rows of ``traces`` (event, x)."""
    counts = resample_counts(traces.shape[0], n, seed)
    if weights is not None:
        counts = counts * weights[None, :]
    return weighted_mean(traces, counts)


def vespagram(rf: np.ndarray, time_s: np.ndarray, distance_deg: np.ndarray, relative_slowness: np.ndarray,
              reference_distance_deg: float) -> np.ndarray:
    """Mean of rf_i(t + u (distance_i - reference)) for each relative slowness u (s/deg): (u, time).

    The shifts are phase factors exp(2 pi i f u offset_i). On an evenly spaced ``relative_slowness`` (as
    the stacking makes it) each row's factors are the last row's times one step's, a complex product
    instead of an exponential (about 17 times faster; the same to 1e-13 of the peak); on another grid each
    row's are computed."""
    n = time_s.size
    nfft = int(2 ** np.ceil(np.log2(2 * n)))
    dt = time_s[1] - time_s[0]
    f = np.fft.rfftfreq(nfft, dt)
    u = np.asarray(relative_slowness, float)
    offset = np.asarray(distance_deg, float) - reference_distance_deg
    spec = np.fft.rfft(np.nan_to_num(rf), nfft) / max(offset.size, 1)  # (event, f), for the mean over events

    def phase(slowness: float) -> np.ndarray:  # (event, f): each event's shift by slowness x its offset
        return np.exp(2j * np.pi * f[None, :] * (slowness * offset)[:, None])

    rows = np.empty((u.size, f.size), complex)
    steps = np.diff(u)
    if u.size > 1 and np.allclose(steps, steps[0], rtol=0.0, atol=1e-12):
        shifted, step = spec * phase(u[0]), phase(steps[0])
        for k in range(u.size):  # one relative slowness at a time keeps memory small
            rows[k] = shifted.sum(0)
            shifted *= step
    else:
        for k in range(u.size):
            rows[k] = (spec * phase(u[k])).sum(0)
    return np.fft.irfft(rows, nfft, axis=-1)[:, :n]


def array_response(norm: np.ndarray, time_s: np.ndarray, distance_deg: np.ndarray, weights: np.ndarray,
                   reference_distance_deg: float, half_s: float = 3.0) -> dict:
    """What a plane wave looks like in this station's vespagram: the events' distance offsets and weights,
    the pulse (the weighted mean direct P of the receiver functions, within ``half_s`` of P, peak 1) and the
    receiver functions themselves: input of :func:`cleaned_moveout` and :func:`moveout_share`."""
    near = np.abs(time_s) <= half_s
    pulse = weighted_mean(norm[:, near], np.asarray(weights, float)[None, :])[0]
    peak = float(np.nanmax(pulse)) if np.isfinite(pulse).any() else 0.0
    return {"offset_deg": np.asarray(distance_deg, float) - reference_distance_deg,
            "weight": np.asarray(weights, float), "pulse": np.nan_to_num(pulse / peak) if peak > 0 else pulse * 0.0,
            "pulse_time_s": time_s[near], "rf": np.nan_to_num(np.asarray(norm, float)), "time_s": time_s}


def moveout_share(array: dict, rel_s: np.ndarray, t_x: float, band: tuple, n: int, seed: int,
                  reach_s: float = 1.0) -> float:
    """Share of ``n`` resamples of the station's events (with replacement, their weights; ``seed``: the same
    resamples as the depth stack's bootstrap) whose vespagram maximum within ``reach_s`` of ``t_x`` lies at a
    relative slowness inside the conversion ``band`` (lo, hi; s/deg). ``array``: :func:`array_response`.
    The moveout check looks at one vespagram, whose maximum noise moves: a reverberation just outside the
    band passes now and then, a conversion stays inside in nearly every resample."""
    time_s, traces, weights = array["time_s"], array["rf"], array["weight"]
    window = time_s[np.abs(time_s - t_x) <= reach_s]
    if not traces.shape[0] or not window.size:
        return float("nan")
    lag = window[None, None, :] + (np.asarray(rel_s, float)[:, None] * array["offset_deg"][None, :])[:, :, None]
    shifted = np.empty(lag.shape)  # (u, event, t): rf_i(t + u offset_i), as in the vespagram
    for i in range(traces.shape[0]):
        shifted[:, i, :] = np.interp(lag[:, i, :], time_s, traces[i])
    counts = resample_counts(traces.shape[0], n, seed) * weights[None, :]
    u_max = np.asarray(rel_s)[np.argmax(np.einsum("bi,kit->bkt", counts, shifted).max(axis=2), axis=1)]
    return float(np.mean((min(band) <= u_max) & (u_max <= max(band))))


def cleaned_moveout(vesp: np.ndarray, rel_s: np.ndarray, time_s: np.ndarray, t_x: float, band: tuple,
                    array: dict, iterations: int = 3, reach_s: float = 1.0) -> tuple[float, float]:
    """Relative slowness and value of the vespagram's largest value within ``reach_s`` of ``t_x`` once the
    plane waves that peak there outside the conversion ``band`` (lo, hi; s/deg) are taken out, one at a
    time, largest first (at most ``iterations``; CLEAN, Hogbom 1974): each is modelled as the station's
    pulse arriving at its slowness at every event (``array``: :func:`array_response`) and subtracted with
    its leakage into the other slownesses. A reverberation that arrives with a Ps conversion and is
    larger hides the conversion's maximum; what is left at a conversion's slowness is the conversion."""
    win = np.abs(time_s - t_x) <= reach_s + 2.0
    tw, v = time_s[win], np.array(vesp[:, win], float)
    near = np.abs(tw - t_x) <= reach_s
    off, w = array["offset_deg"], array["weight"]
    lo, hi = min(band), max(band)
    u_m, a_m = np.nan, np.nan
    for i in range(iterations + 1):
        sub = np.nan_to_num(v[:, near], nan=-np.inf)
        iu, it = np.unravel_index(int(np.argmax(sub)), sub.shape)
        u_m, a_m = float(rel_s[iu]), float(sub[iu, it])
        if lo <= u_m <= hi or not a_m > 0 or i == iterations:
            break
        t_m = float(tw[near][it])
        lag = tw[None, None, :] - t_m + ((rel_s[:, None] - u_m) * off[None, :])[:, :, None]
        shape = np.interp(lag, array["pulse_time_s"], array["pulse"], left=0.0, right=0.0)
        v -= a_m * np.tensordot(w, shape, axes=([0], [1])) / w.sum()
    return u_m, a_m


def _peaks(stack, lower, boot, depths, window) -> list[dict]:
    """Positive local maxima of ``stack`` inside ``window``, largest first (a maximum on the window's
    edge belongs to a feature outside it and is left out): index, depth, amplitude, lower bound, and
    the bootstrap spread of its depth and amplitude."""
    w = np.flatnonzero((depths >= window[0]) & (depths <= window[1]))
    interior = w[(w > w[0]) & (w < w[-1])]
    is_max = (stack[interior] >= stack[interior - 1]) & (stack[interior] >= stack[interior + 1])
    cand = interior[is_max & np.isfinite(stack[interior]) & (stack[interior] > 0)]
    out = []
    for i in cand[np.argsort(-stack[cand])]:
        near = w[np.abs(depths[w] - depths[i]) <= 10.0]  # bootstrap peaks within 10 km of this one
        boot_idx = near[np.argmax(boot[:, near], axis=1)]
        out.append({"index": i, "depth": float(depths[i]), "amp": float(stack[i]), "lower": float(lower[i]),
                    "depth_err": float(np.std(depths[boot_idx])), "amp_err": float(np.std(boot[:, i]))})
    return out


def _half_width(stack, depths, i, step) -> float:
    """Distance (km) from the peak at index ``i`` to where ``stack`` first falls to half of it, shallower
    (``step`` -1) or deeper (+1); at most :data:`MAX_HALF_WIDTH_KM`."""
    j = i
    while 0 <= j + step < stack.size and abs(depths[j + step] - depths[i]) <= MAX_HALF_WIDTH_KM \
            and stack[j + step] > 0.5 * stack[i]:
        j += step
    return float(min(abs(depths[j] - depths[i]), MAX_HALF_WIDTH_KM))


def stack_station(rf: np.ndarray, time_s: np.ndarray, slowness: np.ndarray, distance_deg: np.ndarray | None,
                  model: EarthModel, cfg: dict, event_ids=None, station: dict | None = None) -> xr.Dataset:
    """Depth stack, bootstrap bounds, vespagram and verdict of one station's receiver functions."""
    rf = np.asarray(rf, float)
    slowness = np.asarray(slowness, float)
    n_rf = rf.shape[0]
    depths = np.arange(0.0, cfg["max_depth_km"] + 0.5 * cfg["depth_step_km"], cfg["depth_step_km"])
    rel_s = np.round(np.arange(cfg["relative_slowness_s_per_deg"][0], cfg["relative_slowness_s_per_deg"][1] + 1e-9,
                               cfg["relative_slowness_step_s_per_deg"]), 6)
    station = station or {"network": "XX", "station": "SYN", "latitude": np.nan, "longitude": np.nan}
    norm = normalise_by_p(rf, time_s) if n_rf else rf
    crust = crust_variables(norm, time_s, slowness, model, {**cfg.get("crust", {}), "seed": cfg["seed"]})
    shown = norm  # the receiver functions as they are (the file and figure); the stack may use them without multiples
    if distance_deg is None:
        distance_deg = distance_for_slowness(slowness, _taup_name(model))
    distance_deg = np.asarray(distance_deg, float)
    p_ref = float(np.nanmedian(slowness)) if n_rf else np.nan
    geometry = {"distance_deg": distance_deg, "slowness": slowness, "rel_s": rel_s, "model": model, "p_ref": p_ref,
                "depths": depths, "weighting": cfg["weighting"]}
    ringing = _ringing(norm, time_s, cfg)  # before any filter: how strongly the station rings
    crust["ringing_r0"] = ringing[1]
    norm, crust["resonance_dt_s"], crust["resonance_r0"], crust["resonance_note"] = _without_ringing(
        norm, time_s, cfg.get("resonance", {}), ringing)
    norm, removed, crust["multiples_note"], coherent = _without_multiples(norm, time_s, slowness, crust,
                                                                           cfg.get("multiples", {}), geometry,
                                                                           _conversion_range(cfg))
    model, depth_note = _station_model(model, crust, cfg.get("crust", {}))
    if n_rf:
        in_depth = to_depth(norm, time_s, slowness, model, depths)
        weights = noise_weights(norm, time_s) if cfg["weighting"] == "noise" else np.ones(n_rf)
        stack = weighted_mean(in_depth, weights[None, :])[0]
        boot = bootstrap_means(in_depth, cfg["n_bootstrap"], cfg["seed"], weights)
        lower, upper = np.percentile(boot, [2.5, 97.5], axis=0)
        boot_std = boot.std(axis=0)
        ref_dist = float(np.nanmedian(distance_deg))
        vesp = vespagram(norm * (weights / weights.mean())[:, None], time_s, distance_deg, rel_s, ref_dist)
        looks_again = cfg.get("moveout_clean_fraction") is not None or cfg.get("moveout_bootstrap_share") is not None
        array = array_response(norm, time_s, distance_deg, weights / weights.mean(), ref_dist) if looks_again \
            else None  # only for the second look and the resampled moveout
        removed_stack = np.full(depths.size, np.nan) if removed is None else \
            weighted_mean(to_depth(removed, time_s, slowness, model, depths), weights[None, :])[0]
    else:
        in_depth = np.zeros((0, depths.size))
        stack = lower = upper = boot_std = np.full(depths.size, np.nan)
        boot = np.zeros((1, depths.size))
        ref_dist = np.nan
        vesp = np.full((rel_s.size, time_s.size), np.nan)
        removed_stack = np.full(depths.size, np.nan)
        array = None
    result = verdict_of_stack(stack, lower, boot, boot_std, depths, vesp, rel_s, time_s, model,
                              _verdict_settings(cfg, coherent), n_rf, p_ref, ref_dist, removed_stack, coherent, array)
    ds = xr.Dataset(
        {
            "rf": (("event", "time"), as_float32(shown), {"units": "1", "long_name": "receiver function / direct P"}),
            "slowness_s_per_km": ("event", slowness, {"units": "s km-1", "long_name": "P slowness"}),
            "distance_deg": ("event", distance_deg, {"units": "degree", "long_name": "epicentral distance"}),
            "rf_depth": (("event", "depth"), as_float32(in_depth),
                         {"units": "1", "long_name": "moveout-corrected receiver function / direct P"}),
            "depth_stack": ("depth", stack, {"units": "1", "long_name": "mean depth-converted receiver function"}),
            "depth_stack_lower": ("depth", lower, {"units": "1", "long_name": "bootstrap 2.5 percentile"}),
            "depth_stack_upper": ("depth", upper, {"units": "1", "long_name": "bootstrap 97.5 percentile"}),
            "depth_stack_std": ("depth", boot_std, {"units": "1", "long_name": "bootstrap standard deviation"}),
            "multiples_depth_stack": ("depth", removed_stack,
                                      {"units": "1", "long_name": "depth stack of the crustal multiples subtracted "
                                                                  "(NaN: none subtracted)"}),
            "vespagram": (("relative_slowness", "time"), vesp,
                          {"units": "1", "long_name": "slowness stack (relative to P, at the median distance)"}),
            **crust.pop("variables"),
        },
        coords={
            "event": ("event", np.asarray(event_ids if event_ids is not None else np.arange(n_rf)).astype(str)
                      .astype(object), {"long_name": "event id"}),
            "time": ("time", time_s, {"units": "s", "long_name": "time after direct P"}),
            "depth": ("depth", depths, {"units": "km", "long_name": "conversion depth"}),
            "relative_slowness": ("relative_slowness", rel_s, {"units": "s degree-1",
                                                               "long_name": "slowness relative to direct P"}),
            **crust.pop("coords"),
            "network": ((), station["network"]), "station": ((), station["station"]),
            "latitude": ((), float(station.get("latitude", np.nan)), {"units": "degrees_north"}),
            "longitude": ((), float(station.get("longitude", np.nan)), {"units": "degrees_east"}),
        },
    )
    ds.attrs.update(provenance_attrs(
        title=f"depth and slowness stacks of {station['network']}.{station['station']}",
        source="xdisc stack: moveout correction by 1-D ray theory, bootstrap resampling", seed=cfg["seed"],
        config_hash=config_hash({"stacking": cfg, "model": model.name}),
        references="Dueker & Sheehan 1997; Efron & Tibshirani 1993"))
    ds.attrs.update(result)
    ds.attrs.update(crust)
    ds.attrs.update({"depth_model": depth_note})
    ds.attrs.update({"n_rf": int(n_rf), "earth_model": model.name, "x_window_km": list(cfg["x_window_km"]),
                     "reference_distance_deg": ref_dist})
    return ds


def _ringing(norm: np.ndarray, time_s: np.ndarray, cfg: dict) -> tuple[float, float]:
    """How the station's receiver functions ``norm`` ring: the lag dt (s) and depth r0 of the deepest trough
    of their mean's autocorrelation at lags ``resonance.lag_s`` (:func:`xdisc.stack.resonance.estimate`; NaN
    without receiver functions). r0 is about 0.4 over soft sediment, below 0.15 without (docs/stacking.md)."""
    if not len(norm):
        return float("nan"), float("nan")
    lag_s = tuple(cfg.get("resonance", {}).get("lag_s", (0.5, 5.0)))
    return resonance.estimate(norm, time_s, lag_s)


def _verdict_settings(cfg: dict, coherent: np.ndarray | None) -> dict:
    """The stacking settings the verdict is judged with: ``multiples.radon_noise_factor`` in place of
    ``noise_factor`` where the sparse slant stack was used (``coherent`` not None) and it is set."""
    factor = cfg.get("multiples", {}).get("radon_noise_factor")
    return cfg if coherent is None or factor is None else {**cfg, "noise_factor": float(factor)}


def _without_ringing(norm: np.ndarray, time_s: np.ndarray, cfg: dict, ringing: tuple[float, float]
                     ) -> tuple[np.ndarray, float, float, str]:
    """The receiver functions with a sediment layer's ringing removed (``stacking.resonance``,
    :mod:`xdisc.stack.resonance`) where it is on and the ringing (:func:`_ringing` of ``norm``: two-way time
    and strength) is strong enough; its two-way time, strength and a note."""
    if not cfg.get("enabled") or not len(norm):
        return norm, np.nan, np.nan, "stacking.resonance off" if not cfg.get("enabled") else ""
    dt_s, r0 = ringing
    if r0 < cfg["min_strength"]:
        return norm, dt_s, r0, f"no ringing removed: autocorrelation trough {r0:.2f} < {cfg['min_strength']:g}"
    return (resonance.apply(norm, time_s, dt_s, r0), dt_s, r0,
            f"ringing removed: rf(t) + {r0:.2f} rf(t - {dt_s:.1f} s) (Yu et al. 2015)")


def depth_model(norm: np.ndarray, time_s: np.ndarray, slowness: np.ndarray, model: EarthModel,
                cfg: dict) -> EarthModel:
    """The model through which :func:`stack_station` maps a station's receiver functions ``norm`` (divided
    by their direct P) to depth with the stacking settings ``cfg``: the station's H-kappa crust above the
    earth model's mantle with ``crust.depth_conversion``, else ``model`` itself. The injection tests of
    :mod:`xdisc.detectability` use it, so that they judge with the verdict's depth conversion."""
    if not cfg.get("crust", {}).get("depth_conversion", False):
        return model
    crust = crust_variables(norm, time_s, slowness, model, {**cfg.get("crust", {}), "seed": cfg["seed"]})
    return _station_model(model, crust, cfg.get("crust", {}))[0]


def _crust_unusable(crust: dict, cfg: dict) -> str:
    """Why the station's H-kappa crust is no basis for the depth conversion ("" when it is): no estimate, a
    maximum on the edge of the searched Moho depths or Vp/Vs (e.g. a sediment reverberation taken for the
    Moho), or bootstrap errors above ``max_moho_err_km`` / ``max_vpvs_err`` (no clear maximum)."""
    h, k = crust["moho_km"], crust["vpvs"]
    if not (np.isfinite(h) and np.isfinite(k)):
        return "no H-kappa estimate"
    h_range = cfg.get("thickness_km", [15, 75])
    k_range = cfg.get("vpvs", [1.6, 2.0])
    if min(h - h_range[0], h_range[1] - h) < 0.5 or min(k - k_range[0], k_range[1] - k) < 0.01:
        return f"H-kappa maximum on the edge of the search ({h:g} km, Vp/Vs {k:.3f})"
    max_h, max_k = cfg.get("max_moho_err_km", 5.0), cfg.get("max_vpvs_err", 0.05)
    if not crust["moho_err_km"] <= max_h or not crust["vpvs_err"] <= max_k:
        return (f"H-kappa errors {crust['moho_err_km']:.1f} km / {crust['vpvs_err']:.3f} above "
                f"{max_h:g} km / {max_k:g}")
    return ""


def _station_model(model: EarthModel, crust: dict, cfg: dict) -> tuple[EarthModel, str]:
    """The model of the depth conversion and its description (the stack file's ``depth_model``): the earth
    model with its crust replaced by the station's H-kappa crust where stacking.crust.depth_conversion says
    so and the estimate is usable (:func:`_crust_unusable`; its Vp profile scaled to the assumed crustal Vp,
    Vs = Vp / kappa), else the earth model (with the reason where the station's crust was asked for)."""
    from xdisc.core.earthmodel import replace_crust

    if not cfg.get("depth_conversion", False):
        return model, "earth model"
    why_not = _crust_unusable(crust, cfg)
    if why_not:
        return model, f"earth model (station crust not used: {why_not})"
    return (replace_crust(model, crust["moho_km"], crust["vpvs"], crust["crust_vp_km_s"] / hk.crust_vp(model)),
            "station crust (H-kappa) over the earth model")


def ps_slowness_by_time(model: EarthModel, time_s: np.ndarray, p_ref: float, reference_deg: float,
                        depths: np.ndarray) -> np.ndarray:
    """The relative slowness (s/deg, negative) of a Ps conversion arriving at each time ``time_s`` at the
    reference slowness ``p_ref`` and distance ``reference_deg`` (:func:`_ps_relative_slowness` of the depths
    whose Ps arrives then; constant beyond the first and last of ``depths``)."""
    z = depths[depths > 0]
    t = delay_table(model, z, [p_ref])[0]
    u = _ps_relative_slowness(model, z, reference_deg)
    ok = np.isfinite(t) & np.isfinite(u)
    return np.interp(time_s, t[ok], u[ok])


def _conversion_range(cfg: dict) -> tuple[float, float]:
    """The relative slownesses of a conversion, as multiples of the Ps slowness at its time: from
    ``conversion_slowness_max_multiple`` (the steepest; inf: no bound) to ``conversion_slowness_fraction``."""
    steepest = cfg.get("conversion_slowness_max_multiple")
    return (np.inf if steepest is None else float(steepest)), float(cfg["conversion_slowness_fraction"])


def _without_multiples(norm, time_s, slowness, crust: dict, cfg: dict, geometry: dict | None = None,
                       conversion: tuple[float, float] = (np.inf, 0.5)
                       ) -> tuple[np.ndarray, np.ndarray | None, str, np.ndarray | None]:
    """``norm`` with the crustal multiples subtracted where stacking.multiples says so, what was subtracted
    (None: nothing), a note of what was done and, with ``method: radon``, the coherent conversions at each
    time (None otherwise): ``method: predicted``, those of the station's crust
    (:func:`xdisc.stack.multiples.suppress_multiples`); ``radon``, whatever moves out like a reverberation
    in a sparse slant stack (:func:`xdisc.stack.radon.remove_reverberations`; ``geometry``: the distances,
    relative slownesses, earth model, reference slowness, depths and weighting of :func:`stack_station`;
    ``conversion``: :func:`_conversion_range`), except at a station whose ringing (``crust["ringing_r0"]``,
    :func:`_ringing`) reaches ``radon_max_ringing``, which is left as it is."""
    from xdisc.stack.multiples import FIRST_ORDER, SECOND_ORDER, THIRD_ORDER, suppress_multiples

    if not cfg.get("suppress", False):
        return norm, None, "", None
    if cfg.get("method", "predicted") == "radon":
        most = cfg.get("radon_max_ringing")
        r0 = crust.get("ringing_r0", np.nan)
        if most is not None and np.isfinite(r0) and r0 >= float(most):
            # a ringing station (soft sediment): the slant stack takes the ringing's scatter for conversions
            return norm, None, (f"reverberations not removed: the station rings (autocorrelation trough "
                                f"{r0:.2f} >= radon_max_ringing {float(most):g})"), None
        return _without_reverberations(norm, time_s, cfg, geometry, conversion)
    if not np.isfinite(crust["moho_km"]):
        return norm, None, f"multiples not subtracted: no crust ({crust['crust_note']})", None
    order = cfg.get("order", 2)
    phases = {**FIRST_ORDER, **(SECOND_ORDER if order >= 2 else {}), **(THIRD_ORDER if order >= 3 else {})}
    out = suppress_multiples(norm, time_s, slowness, crust["moho_km"], crust["vpvs"], crust["crust_vp_km_s"],
                             phases, cfg.get("half_window_s", 2.0))
    return out.rf, out.removed, f"subtracted: {', '.join(phases)}", None


def _without_reverberations(norm, time_s, cfg: dict, geometry: dict, conversion: tuple[float, float]
                            ) -> tuple[np.ndarray, np.ndarray | None, str, np.ndarray | None]:
    """:func:`_without_multiples` with ``method: radon``."""
    from xdisc.stack.radon import coherent_conversions, remove_reverberations, squared_slowness_offsets

    if norm.shape[0] == 0:
        return norm, None, "reverberations not removed: no receiver functions", None
    g = geometry
    ref = float(np.nanmedian(g["distance_deg"]))
    ps_u = ps_slowness_by_time(g["model"], time_s, g["p_ref"], ref, g["depths"])
    weights = noise_weights(norm, time_s) if g["weighting"] == "noise" else None
    offsets = squared_slowness_offsets(g["slowness"], ref, _taup_name(g["model"]))
    out = remove_reverberations(norm, time_s, offsets, g["rel_s"], ps_u,
                                fraction=float(cfg.get("radon_fraction", 0.5)),
                                start_s=float(cfg.get("radon_start_s", 15.0)), weights=weights,
                                sparsity=float(cfg.get("radon_sparsity", 0.05)))
    coherent = None if not out.fitted else coherent_conversions(out.model, g["rel_s"], ps_u, *conversion)
    return out.rf, out.removed, out.note, coherent


def crust_variables(norm: np.ndarray, time_s: np.ndarray, slowness: np.ndarray, model: EarthModel,
                    cfg: dict) -> dict:
    """The station's crust by H-kappa stacking (:mod:`xdisc.stack.hk`) as parts of the stack dataset:
    ``variables`` (the normalised H-kappa stack, the predicted delays of the Moho's Ps, PpPs and PpSs per
    event), ``coords`` (the search grid) and attributes (``moho_km``, ``moho_err_km``, ``vpvs``,
    ``vpvs_err``, ``crust_vp_km_s``, ``crust_note``). NaN where disabled or with too few receiver
    functions."""
    cfg = {"enabled": True, "vp_km_s": None, "thickness_km": [15, 75], "vpvs": [1.6, 2.0],
           "weights": list(hk.WEIGHTS), "n_bootstrap": 200, **cfg}
    h_grid = np.round(np.arange(cfg["thickness_km"][0], cfg["thickness_km"][1] + 1e-9, 0.25), 6)
    k_grid = np.round(np.arange(cfg["vpvs"][0], cfg["vpvs"][1] + 1e-9, 0.005), 6)
    vp = float(cfg["vp_km_s"]) if cfg["vp_km_s"] else hk.crust_vp(model)
    n = norm.shape[0]
    attrs = {"moho_km": np.nan, "moho_err_km": np.nan, "vpvs": np.nan, "vpvs_err": np.nan, "crust_vp_km_s": vp,
             "crust_note": ""}
    grid = np.full((h_grid.size, k_grid.size), np.nan)
    times = np.full((3, n), np.nan)
    usable = np.all(np.isfinite(norm), axis=1) if n else np.zeros(0, bool)
    if not cfg["enabled"]:
        attrs["crust_note"] = "stacking.crust.enabled is false"
    elif usable.sum() < MIN_RF_CRUST:
        attrs["crust_note"] = f"{int(usable.sum())} receiver functions: too few for H-kappa (< {MIN_RF_CRUST})"
    else:
        est = hk.estimate_crust(norm, time_s, slowness, vp, h_grid, k_grid, tuple(cfg["weights"]),
                                cfg["n_bootstrap"], seed=int(cfg.get("seed", 0)))
        attrs.update(moho_km=est.h_km, moho_err_km=est.h_error_km, vpvs=est.kappa, vpvs_err=est.kappa_error)
        grid = est.stack
        times = np.array(list(est.times(slowness).values()))
    long = {"Ps": "Ps", "PpPs": "PpPs", "PpSs": "PpSs+PsPs"}
    variables = {
        "hk_stack": (("crust_thickness", "crust_vpvs"), grid,
                     {"units": "1", "long_name": "H-kappa stack / its maximum (Zhu & Kanamori 2000)"}),
        **{f"moho_{k.lower()}_time": ("event", t, {"units": "s", "long_name": f"predicted delay of the Moho's "
                                                                                f"{long[k]} after P"})
           for k, t in zip(long, times, strict=True)},
    }
    coords = {"crust_thickness": ("crust_thickness", h_grid, {"units": "km", "long_name": "Moho depth searched"}),
              "crust_vpvs": ("crust_vpvs", k_grid, {"units": "1", "long_name": "crustal Vp/Vs searched"})}
    return {"variables": variables, "coords": coords, **attrs}


def _ps_relative_slowness(model: EarthModel, depth_km, distance_deg: float):
    """d(delay of Ps from ``depth_km``)/d(distance) at ``distance_deg`` (s/deg): where a Ps
    conversion peaks in the vespagram (negative: it arrives later at shorter distance). A float for one
    depth, an array for an array of depths."""
    d = np.array([distance_deg - 5.0, distance_deg + 5.0])
    p = slowness_for_distance(d, _taup_name(model))
    t = delay_table(model, np.atleast_1d(depth_km), p)
    u = (t[1] - t[0]) / 10.0
    return float(u[0]) if np.ndim(depth_km) == 0 else u


def _shown_weak(missing: list[str], seen_amp: dict, boot: np.ndarray, depths: np.ndarray, cfg: dict) -> bool:
    """Whether the one missing discontinuity (``missing``: ["d410"] or ["d660"]) is the earth's, not the
    noise's (e.g. X that reaches the 410): the other is seen (``seen_amp``: its amplitude) and the upper 95 %
    bootstrap bound anywhere in the missing one's window stays below ``WEAK_FRACTION`` of what the other
    predicts for it through ``NORMAL_410_660``."""
    if len(missing) != 1 or not seen_amp:
        return False
    (seen, amp), = seen_amp.items()
    expected = amp * NORMAL_410_660 if seen == "d660_km" else amp / NORMAL_410_660
    lo, hi = cfg[f"{missing[0]}_window_km"]
    inside = (depths >= lo) & (depths <= hi)
    return bool(inside.any()) and float(np.percentile(boot[:, inside], 97.5, axis=0).max()) < WEAK_FRACTION * expected


# between the 410's and the 660's windows (stacking.quiet_window_km's default)
QUIET_WINDOW_KM = (440.0, 630.0)


def quiet_rms(stack: np.ndarray, depths: np.ndarray, window) -> float:
    """Root mean square of the depth stack over ``window`` (km; by default between the 410's and the 660's
    windows, where the reference models have no discontinuity): what noise, the crust's late reverberations
    and the source's residue leave in a stack where nothing converts (NaN where the window holds no finite
    value). The bootstrap's spread measures only what differs from event to event; reverberations repeat
    at every event and pass the bootstrap as signal."""
    inside = (depths >= window[0]) & (depths <= window[1]) & np.isfinite(stack)
    return float(np.sqrt(np.mean(stack[inside] ** 2))) if inside.any() else float("nan")


def verdict_of_stack(stack, lower, boot, boot_std, depths, vesp, rel_s, time_s, model, cfg, n_rf, p_ref,
                     ref_dist, removed_stack=None, coherent=None, array=None) -> dict:
    """The verdict of a depth stack, its bootstrap means and bounds and its vespagram (rows ``rel_s``, columns
    ``time_s``): what :func:`stack_station` decides, also used by :mod:`xdisc.detectability`.
    ``removed_stack``: the depth stack of the crustal multiples subtracted (None or NaN: none), against
    which ``multiples.residual_fraction`` sets a floor. ``coherent``: the sparse slant stack's conversions at
    each of ``time_s`` (:func:`xdisc.stack.radon.coherent_conversions`; None: no slant stack), of which a peak
    must hold ``multiples.radon_coherent_fraction``. ``array``: the station's :func:`array_response`, for the
    second look of ``moveout_clean_fraction`` and the resampled moveout of ``moveout_bootstrap_share`` (None:
    neither)."""
    out = {"verdict": UNDETERMINED, "reason": "", "x_depth_km": np.nan, "x_depth_err_km": np.nan,
           "x_amp": np.nan, "x_amp_err": np.nan, "x_snr": np.nan, "x_relative_slowness": np.nan,
           "x_ps_relative_slowness": np.nan, "x_coherent_amp": np.nan, "x_moveout_share": np.nan, "quiet_rms": np.nan,
           "d410_km": np.nan, "d660_km": np.nan}
    if n_rf < cfg["min_rf"]:
        out["reason"] = f"{n_rf} receiver functions < {cfg['min_rf']}"
        return out
    noise = float(np.median(boot_std[(depths >= 200) & (depths <= depths[-1])]))
    out["quiet_rms"] = quiet_rms(stack, depths, cfg.get("quiet_window_km", QUIET_WINDOW_KM))
    seen_amp = {}
    for key, window in (("d410_km", cfg["d410_window_km"]), ("d660_km", cfg["d660_window_km"])):
        peaks = _peaks(stack, lower, boot, depths, window)
        if peaks and peaks[0]["lower"] > 0:  # an expected discontinuity: seen when significant
            out[key] = peaks[0]["depth"]
            seen_amp[key] = peaks[0]["amp"]
    missing = [k[:4] for k in ("d410_km", "d660_km") if not np.isfinite(out[k])]
    window = cfg["x_window_km"]
    margin = float(cfg.get("x_margin_km", 0.0))
    candidates = _peaks(stack, lower, boot, depths, (window[0] - margin, window[1] + margin))
    if not candidates:
        out["verdict"] = UNDETERMINED if missing else ABSENT
        out["reason"] = f"{' and '.join(missing)} not seen" if missing else "no positive peak inside the X window"
        return out
    # every positive peak in the window is a candidate, largest first; X is the first that is
    # significant, above the noise and moves out like a Ps conversion
    best, best_failed = None, None
    # no conversion from the window moves out much more steeply than Ps from the peak's depth
    steepest, slowest = _conversion_range(cfg)
    held = float(cfg.get("multiples", {}).get("radon_coherent_fraction", 0.0)) if coherent is not None else 0.0
    share = cfg.get("moveout_bootstrap_share")
    fraction = float(cfg.get("multiples", {}).get("residual_fraction", 0.0))
    if removed_stack is None or not np.any(np.isfinite(removed_stack)):
        fraction = 0.0  # nothing was subtracted: no residual floor
    for pk in candidates:
        t_x = float(delay_table(model, [pk["depth"]], [p_ref])[0, 0])
        near = np.abs(time_s - t_x) <= 1.0
        pk["u"] = float(rel_s[int(np.argmax(vesp[:, near].max(axis=1)))])
        pk["u_ps"] = _ps_relative_slowness(model, pk["depth"], ref_dist)
        pk["snr"] = pk["amp"] / noise if noise > 0 else np.nan
        # a conversion spread over depth (a gradient) peaks in its middle: outside the window, the peak is X
        # when its bootstrap error or its half width reaches into the window
        step = float(cfg["depth_step_km"])
        above = max(pk["depth_err"], _half_width(stack, depths, pk["index"], -1), step)
        below = max(pk["depth_err"], _half_width(stack, depths, pk["index"], +1), step)
        moveout = steepest * pk["u_ps"] <= pk["u"] <= slowest * pk["u_ps"]
        band = (steepest * pk["u_ps"] if np.isfinite(steepest) else -np.inf, slowest * pk["u_ps"])
        clean = cfg.get("moveout_clean_fraction")
        if not moveout and clean is not None and array is not None:
            # a larger arrival of other moveout may hide the conversion: taken out, is one left?
            u_c, a_c = cleaned_moveout(vesp, rel_s, time_s, t_x, band, array)
            moveout = bool(band[0] <= u_c <= band[1] and a_c >= float(clean) * pk["amp"])
        pk["share"] = np.nan
        if moveout and share is not None and array is not None:  # does the moveout hold when the events change?
            pk["share"] = moveout_share(array, rel_s, t_x, band, int(cfg["n_bootstrap"]), int(cfg["seed"]))
        checks = {
            f"depth within {window[0]:g}-{window[1]:g} km": window[0] - below <= pk["depth"] <= window[1] + above,
            "lower 95 % bound above zero": pk["lower"] > 0,
            f"amplitude > {cfg['noise_factor']} x noise": pk["snr"] > cfg["noise_factor"],
            "moveout of a conversion": moveout,
        }
        if np.isfinite(pk["share"]):
            checks[f"moveout of a conversion in {float(share):g} of event resamples"] = pk["share"] >= float(share)
        if cfg.get("min_x_amplitude", 0) > 0:
            checks[f"amplitude >= {cfg['min_x_amplitude']:g} of P"] = pk["amp"] >= cfg["min_x_amplitude"]
        quiet = float(cfg.get("quiet_factor", 0.0))
        if quiet > 0 and np.isfinite(out["quiet_rms"]):
            lo, hi = cfg.get("quiet_window_km", QUIET_WINDOW_KM)
            clears = pk["amp"] > quiet * out["quiet_rms"]  # the station's noise and clutter where nothing converts
            checks[f"amplitude > {quiet:g} x the stack's rms in {lo:g}-{hi:g} km"] = clears
        if fraction > 0:
            around = np.abs(depths - pk["depth"]) <= RESIDUAL_REACH_KM  # what a subtraction there can leave
            subtracted = float(np.max(np.abs(np.nan_to_num(removed_stack[around]))))
            checks[f"amplitude > {fraction:g} x the multiples subtracted there"] = pk["amp"] > fraction * subtracted
        pk["coherent"] = np.nan if coherent is None else float(np.max(coherent[near]))
        if held > 0:  # a conversion in the sparse slant stack, not the scatter a subtraction leaves
            checks[f"{held:g} of it coherent as a conversion"] = pk["coherent"] >= held * pk["amp"]
        failed = [name for name, ok in checks.items() if not ok]
        if best is None:
            best, best_failed = pk, failed
        if not failed:
            best, best_failed = pk, failed
            break
    out.update(x_depth_km=best["depth"], x_depth_err_km=best["depth_err"], x_amp=best["amp"],
               x_amp_err=best["amp_err"], x_snr=best["snr"], x_relative_slowness=best["u"],
               x_ps_relative_slowness=best["u_ps"], x_coherent_amp=best["coherent"],
               x_moveout_share=best["share"])
    weak = bool(missing) and _shown_weak(missing, seen_amp, boot, depths, cfg)
    strong_snr = cfg.get("x_snr_without_410")
    strong = not best_failed and strong_snr is not None and best["snr"] > float(strong_snr)
    if missing and (best_failed or cfg.get("require_410_660", "for_absent") == "always" or not (weak or strong)):
        # a station whose 410 (or 660) is not seen cannot show that X is missing; nor, unless it is shown
        # weak or X stands far above the noise, that a peak in the X window is more than noise
        out["reason"] = f"{' and '.join(missing)} not seen"
        return out
    out["verdict"] = ABSENT if best_failed else PRESENT
    out["reason"] = "; ".join(f"not {f}" for f in best_failed)
    if weak:  # present on X's own checks; said, since the depth conversion went unchecked
        out["reason"] = f"{missing[0]} not seen, shown weak (X passes its own checks)"
    elif missing:
        out["reason"] = (f"{' and '.join(missing)} not seen; X passes its own checks at {best['snr']:.1f} x noise "
                         f"(> x_snr_without_410)")
    return out


def verdict_row(ds: xr.Dataset) -> dict:
    """One row of results/verdicts/stacking.csv."""
    a = ds.attrs
    present = a["verdict"] == PRESENT
    return {
        "station": f"{ds['network'].item()}.{ds['station'].item()}",
        "latitude": float(ds["latitude"]), "longitude": float(ds["longitude"]), "n_rf": int(a["n_rf"]),
        "verdict": a["verdict"],
        "x_depth_km": a["x_depth_km"] if present else np.nan,
        "x_depth_err_km": a["x_depth_err_km"] if present else np.nan,
        "x_amp": a["x_amp"] if present else np.nan, "x_amp_err": a["x_amp_err"] if present else np.nan,
        "d410_km": a["d410_km"], "d660_km": a["d660_km"],
        **{k: a.get(k, np.nan) for k in ("moho_km", "moho_err_km", "vpvs", "vpvs_err")},
        "depth_model": a.get("depth_model", ""),  # through which crust the depths go (and why not the station's)
        # why not present (empty for present); with the receiver-function QC's hint where it had one
        "reason": "; ".join(r for r in (a.get("reason", ""), "" if present else a.get("qc_note", "")) if r),
    }


def stack_file(rf_path, config: dict) -> xr.Dataset:
    """:func:`stack_station` of the usable receiver functions of one station's file (``xdisc rf``),
    with the configuration's ``stacking`` settings and ``earth_model``."""
    cfg = config["stacking"]
    rf_ds, keep, station = usable_receiver_functions(rf_path, cfg["use_qc"])
    ds = stack_station(rf_ds["rf"].values[keep], rf_ds["time"].values, rf_ds["slowness_s_per_km"].values[keep],
                         rf_ds["distance_deg"].values[keep], load_model(config["earth_model"]), cfg,
                         event_ids=rf_ds["event"].values[keep], station=station)
    ds.attrs["qc_note"] = rf_ds.attrs.get("qc_note", "")
    return ds
