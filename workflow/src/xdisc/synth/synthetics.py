"""Synthetic receiver functions from AK135, IASP91 and PREM, with and without an X discontinuity.

Stage ``xdisc synth``: draw random models (crust, sediments, transition-zone topography,
X, distractors) from a seed, compute the plane-wave P response of each at every slowness
(:mod:`xdisc.core.propagator`), deconvolve it with the same Gaussian and method as real data
(:mod:`xdisc.core.deconvolution`), augment (:mod:`xdisc.synth.augment`) and write a NetCDF dataset
``rf(sample, slowness, time)`` with labels and every generating parameter.
"""

from __future__ import annotations

import logging
import time as _time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import xarray as xr

from xdisc.config import ConfigError, config_hash
from xdisc.core.artifacts import as_float32, provenance_attrs
from xdisc.core.deconvolution import RFSettings, deconvolve, gaussian_cutoff_hz
from xdisc.core.earthmodel import (
    Discontinuity,
    EarthModel,
    LayerStack,
    discretize,
    insert_discontinuity,
    layer_crust,
    load_model,
    merge_profiles,
    replace_crust,
)
from xdisc.core.propagator import plane_wave_response
from xdisc.synth import augment
from xdisc.synth.source import mean_duration, sample_sources, source_spectrum

log = logging.getLogger(__name__)

STRING_COLUMNS = ("model", "x_style", "distractor", "distractor_style", "noise_kind")
PARAMETER_DOCS = {
    "model": ("", "reference Earth model"),
    "label": ("1", "1 = X discontinuity present in 250-350 km, 0 = absent"),
    "moho_km": ("km", "crustal thickness"),
    "vpvs": ("1", "crustal vp/vs"),
    "crust_vp_scale": ("1", "factor applied to the reference crustal vp"),
    "sediment_km": ("km", "sediment thickness (0 = none)"),
    "sediment_vs_km_s": ("km s-1", "sediment S velocity"),
    "sediment_vpvs": ("1", "sediment vp/vs"),
    "conrad_fraction": ("1", "depth of the mid-crustal interface / thickness of the crystalline crust (NaN = the "
                             "reference crust's own layering)"),
    "conrad_vp_ratio": ("1", "vp of the lower crust / vp of the upper crust (synthetics.crust.conrad_vp_ratio)"),
    "d410_shift_km": ("km", "depth change of the 410 (PREM: 400) discontinuity"),
    "d660_shift_km": ("km", "depth change of the 660 (PREM: 670) discontinuity"),
    "d410_strength": ("1", "factor on the jump of the 410 (1 = reference model; tapers back over 40 km below it)"),
    "mantle_dvs_top": ("1", "relative S-velocity change of the mantle just below the Moho (linear to "
                            "mantle_dvs_410 at the 410)"),
    "mantle_dvs_410": ("1", "relative S-velocity change of the mantle at the 410 and below it"),
    "mantle_dvp_ratio": ("1", "relative P-velocity change / relative S-velocity change of the mantle"),
    "x_depth_km": ("km", "depth of the top of the X discontinuity (NaN = none)"),
    "x_dvs": ("1", "relative S-velocity jump of X"),
    "x_dvp": ("1", "relative P-velocity jump of X"),
    "x_drho": ("1", "relative density jump of X"),
    "x_gradient_km": ("km", "depth interval over which the X jump is reached"),
    "x_style": ("", "how X is inserted: taper, constant, layer or none"),
    "x_thickness_km": ("km", "thickness of the high-velocity layer (style layer)"),
    "distractor": ("", "feature outside the X window: none, shallow, deep, lvz"),
    "distractor_depth_km": ("km", "depth of the distractor's top"),
    "distractor_dvs": ("1", "relative S-velocity change of the distractor"),
    "distractor_thickness_km": ("km", "thickness of a low-velocity zone distractor"),
    "distractor_style": ("", "how a shallow or deep jump ends below: taper, or constant (to the next "
                             "discontinuity, weakening it; none = no such distractor)"),
    "source_duration_s": ("s", "mean duration of the sample's extended sources, one per slowness "
                               "(synthetics.source; NaN = impulses only)"),
    "noise_kind": ("", "added noise: none, coloured or real"),
    "snr": ("1", "direct-P amplitude / noise standard deviation (inf = no noise)"),
    "noise_exponent": ("1", "spectral exponent of coloured noise"),
    "noise_microseism": ("1", "amplitude of the microseism peak of coloured noise (0 = none)"),
    "noise_microseism_hz": ("Hz", "centre frequency of the microseism peak"),
    "trim_start_s": ("s", "start of the kept window relative to P"),
    "trim_end_s": ("s", "end of the kept window relative to P"),
}


@dataclass(frozen=True)
class Layering:
    max_depth_km: float = 700.0
    max_thickness_km: float = 10.0
    max_velocity_step: float = 0.005
    flatten: bool = True

    def apply(self, model: EarthModel) -> LayerStack:
        return discretize(model, self.max_depth_km, self.max_thickness_km, self.max_velocity_step,
                          self.flatten)


# ----------------------------------------------------------------------------- models

def shift_discontinuity(model: EarthModel, near_km: float, shift_km: float, search_km: float = 30.0) -> EarthModel:
    """Move the discontinuity nearest ``near_km`` (within ``search_km``) by ``shift_km``."""
    disc = model.discontinuities_km()
    close = disc[np.abs(disc - near_km) <= search_km]
    if close.size == 0 or shift_km == 0:
        return model
    d0 = float(close[np.argmin(np.abs(close - near_km))])
    d1 = d0 + shift_km
    depth = model.depth_km.copy()
    lo, hi = min(d0, d1), max(d0, d1)
    keep = ~((depth > lo) & (depth < hi)) | (depth == d0)
    keep &= ~((depth == d1) & (depth != d0))
    depth = np.where(depth == d0, d1, depth)
    return model.with_nodes(depth[keep], model.values[keep])


def scale_jump(model: EarthModel, near_km: float, factor: float, taper_km: float = 40.0,
               search_km: float = 30.0) -> EarthModel:
    """Scale the jump of the discontinuity nearest ``near_km`` by ``factor``: the values just below
    it move towards (factor < 1) or away from (> 1) those above it, and the change tapers back to
    the reference linearly over ``taper_km`` below (a sharp step made smaller or larger, with a
    gentle gradient under it, as a warm, wet or broadened 410 would show)."""
    disc = model.discontinuities_km()
    close = disc[np.abs(disc - near_km) <= search_km]
    if close.size == 0 or factor == 1.0:
        return model
    d = float(close[np.argmin(np.abs(close - near_km))])
    above, below = model.at(d, "above")[0], model.at(d, "below")[0]
    deeper = disc[disc > d]
    taper = min(taper_km, 0.5 * (float(deeper[0]) - d)) if deeper.size else taper_km
    start = (above + factor * (below - above)) / below
    return merge_profiles(model, [d, d + taper], [start, np.ones(3)])


def build_model(params: dict, reference: EarthModel) -> EarthModel:
    """Apply one sample's parameters to its reference model."""
    m = shift_discontinuity(reference, 410.0, params["d410_shift_km"])
    m = scale_jump(m, 410.0 + params["d410_shift_km"], params.get("d410_strength", 1.0))
    m = shift_discontinuity(m, 660.0, params["d660_shift_km"])
    if np.isfinite(params["moho_km"]):  # NaN keeps the reference crust
        m = replace_crust(m, params["moho_km"], params["vpvs"], params["crust_vp_scale"],
                          params["sediment_km"], params["sediment_vs_km_s"], params["sediment_vpvs"])
        if np.isfinite(params.get("conrad_fraction", np.nan)):
            m = layer_crust(m, params["conrad_fraction"], params["conrad_vp_ratio"], params["sediment_km"])
    m = perturb_mantle(m, params.get("mantle_dvs_top", 0.0), params.get("mantle_dvs_410", 0.0),
                       params.get("mantle_dvp_ratio", 0.0), 410.0 + params["d410_shift_km"])
    kind = params["distractor"]
    if kind in ("shallow", "deep"):
        m = insert_discontinuity(m, Discontinuity(params["distractor_depth_km"], params["distractor_dvs"],
                                                  0.5 * params["distractor_dvs"], 0.3 * params["distractor_dvs"],
                                                  style=params.get("distractor_style", "taper")))
    elif kind == "lvz":
        m = insert_discontinuity(m, Discontinuity(params["distractor_depth_km"], params["distractor_dvs"],
                                                  0.5 * params["distractor_dvs"], 0.0, style="layer",
                                                  thickness_km=params["distractor_thickness_km"]))
    if params["label"] == 1:
        m = insert_discontinuity(m, Discontinuity(params["x_depth_km"], params["x_dvs"], params["x_dvp"],
                                                  params["x_drho"], params["x_gradient_km"],
                                                  params["x_style"], params["x_thickness_km"]))
    return m


def perturb_mantle(model: EarthModel, dvs_top: float, dvs_410: float, dvp_ratio: float,
                   d410_km: float) -> EarthModel:
    """The mantle made faster or slower than the reference model, as the real upper mantle is (a few
    per cent in S): relative S change ``dvs_top`` just below the Moho, linear to ``dvs_410`` at the
    410 (at ``d410_km``), ``dvs_410`` below it to 800 km and back to the reference at 1000 km; P
    changes by ``dvp_ratio`` times as much, density not.

    No new discontinuity inside the mantle, so nothing X-like is added, but every conversion below
    the Moho (X, the 410, the 660) arrives earlier in a fast mantle and later in a slow one, with or
    without X. Where X is, the network must find its conversion, not a 410 and 660 that come early: a
    network trained without this called X at 36 % of stations without X whose mantle was 2 % fast
    in S, against 7 % (docs/results/2026-12-04-a-fast-mantle-is-not-x.md)."""
    if dvs_top == 0.0 and dvs_410 == 0.0:
        return model
    try:
        moho = model.moho_km()
    except ValueError as err:
        raise ConfigError(f"{err}: synthetics.upper_mantle needs the model's Moho; set its ranges to [0, 0] "
                          "to keep this model's mantle") from err
    # below the forward model's half-space (700 km) and the images (800 km) it tapers back to the reference
    depths = [moho, d410_km, 800.0, 1000.0]
    factors = [[1.0 + dvp_ratio * d, 1.0 + d, 1.0] for d in (dvs_top, dvs_410, dvs_410, 0.0)]
    return merge_profiles(model, depths, factors)


def draw_parameters(n: int, cfg: dict, seed: int) -> dict[str, np.ndarray]:
    """Draw the generating parameters of ``n`` samples (a column per parameter)."""
    rng = np.random.default_rng([seed, 0])
    def uni(r, size=n):
        return rng.uniform(r[0], r[1], size)

    crust, tz, xc, dc, nc, ac = (cfg["crust"], cfg["transition_zone"], cfg["x"], cfg["distractors"],
                                 cfg["noise"], cfg["augmentation"])
    n_pos = round(n * cfg["x_fraction"])
    label = np.zeros(n, np.int8)
    label[rng.permutation(n)[:n_pos]] = 1
    models = np.asarray(cfg["models"], dtype=object)
    p = {"model": models[rng.integers(0, len(models), n)].astype(str), "label": label}
    p["moho_km"] = uni(crust["moho_km"])
    p["vpvs"] = uni(crust["vpvs"])
    p["crust_vp_scale"] = uni(crust["vp_scale"])
    has_sed = rng.random(n) < crust["sediment_probability"]
    p["sediment_km"] = np.where(has_sed, uni(crust["sediment_km"]), 0.0)
    p["sediment_vs_km_s"] = uni(crust["sediment_vs_km_s"])
    p["sediment_vpvs"] = uni(crust["sediment_vpvs"])
    p["d410_shift_km"] = uni(tz["d410_shift_km"])
    p["d660_shift_km"] = uni(tz["d660_shift_km"])
    pos = label == 1
    nan = np.full(n, np.nan)
    p["x_depth_km"] = np.where(pos, uni(xc["depth_km"]), nan)
    dvs = uni(xc["dvs"])
    p["x_dvs"] = np.where(pos, dvs, 0.0)
    p["x_dvp"] = np.where(pos, dvs * uni(xc["dvp_ratio"]), 0.0)
    p["x_drho"] = np.where(pos, dvs * uni(xc["drho_ratio"]), 0.0)
    p["x_gradient_km"] = np.where(pos, uni(xc["gradient_km"]), 0.0)
    styles = np.array(sorted(xc["styles"]))  # sorted: the draw must not depend on how the mapping was written
    weights = np.array([xc["styles"][s] for s in styles], float)
    p["x_style"] = np.where(pos, styles[rng.choice(len(styles), n, p=weights / weights.sum())], "none")
    p["x_thickness_km"] = np.where(pos, uni(xc["layer_thickness_km"]), nan)
    kinds = np.array(sorted(dc["kinds"]))
    kw = np.array([dc["kinds"][k] for k in kinds], float)
    has_d = rng.random(n) < dc["probability"]
    kind = np.where(has_d, kinds[rng.choice(len(kinds), n, p=kw / kw.sum())], "none")
    depth = np.select([kind == "shallow", kind == "deep", kind == "lvz"],
                      [uni(dc["shallow_depth_km"]), uni(dc["deep_depth_km"]), uni(dc["lvz_depth_km"])], np.nan)
    p["distractor"] = kind
    p["distractor_depth_km"] = depth
    p["distractor_dvs"] = np.select([kind == "lvz", kind != "none"], [uni(dc["lvz_dvs"]), uni(dc["dvs"])], 0.0)
    p["distractor_thickness_km"] = np.where(kind == "lvz", uni(dc["lvz_thickness_km"]), np.nan)
    if nc["enabled"]:
        use_real = (rng.random(n) < nc["real_noise_fraction"]) & bool(nc["real_noise_file"])
        p["noise_kind"] = np.where(use_real, "real", "coloured")
        lo, hi = np.log(nc["snr"][0]), np.log(nc["snr"][1])
        p["snr"] = np.exp(rng.uniform(lo, hi, n))
        p["noise_exponent"] = np.where(use_real, np.nan, uni(nc["colour_exponent"]))
    else:
        p["noise_kind"] = np.full(n, "none")
        p["snr"] = np.full(n, np.inf)
        p["noise_exponent"] = nan.copy()
    trim = rng.random(n) < ac["trim_probability"]
    p["trim_start_s"] = np.where(trim, uni(ac["trim_start_s"]), -np.inf)
    p["trim_end_s"] = np.where(trim, uni(ac["trim_end_s"]), np.inf)
    coloured = p["noise_kind"] == "coloured"  # drawn last: the earlier columns keep their values
    p["noise_microseism"] = np.where(coloured, uni(nc["microseism_amplitude"]), np.nan)
    p["noise_microseism_hz"] = np.where(coloured, uni(nc["microseism_hz"]), np.nan)
    # drawn after the columns above so that those keep the values they had before these existed
    p["d410_strength"] = uni(tz["d410_strength"])
    constant = rng.random(n) < dc["deep_constant_fraction"]
    p["distractor_style"] = np.select([kind == "deep", kind == "shallow"],
                                      [np.where(constant, "constant", "taper"), "taper"], "none")
    # drawn after the columns above, for the same reason
    um = cfg["upper_mantle"]
    p["mantle_dvs_top"] = uni(um["dvs_below_moho"])
    p["mantle_dvs_410"] = uni(um["dvs_at_410"])
    p["mantle_dvp_ratio"] = uni(um["dvp_ratio"])
    # drawn after the columns above, for the same reason; only when set (the config asks for both or neither)
    if crust.get("conrad_fraction") is not None:
        p["conrad_fraction"] = uni(crust["conrad_fraction"])
        p["conrad_vp_ratio"] = uni(crust["conrad_vp_ratio"])
    _clamp_layers(p, xc["depth_km"][0])
    cap_constant_style(p)
    # its own random streams (xdisc.synth.source): the columns above keep their values
    p["source_duration_s"] = np.array([mean_duration(sample_sources(seed, i, len(cfg["slowness_s_per_km"]),
                                                                     cfg["source"])) for i in range(n)])
    return p


def s_jump_410(model: EarthModel) -> float:
    """Relative S-velocity jump of the model's 410 (the discontinuity nearest 410 km)."""
    disc = model.discontinuities_km()
    d = float(disc[np.argmin(np.abs(disc - 410.0))])
    above, below = model.at(d, "above")[0, 1], model.at(d, "below")[0, 1]
    return float(below / above - 1.0)


def cap_constant_style(p: dict, keep_fraction: float = 0.4) -> None:
    """Style 'constant' (of X, or of a deep distractor) raises Vs down to the 410 and so shrinks the
    410's jump; keep at least ``keep_fraction`` of it (a 410 that vanishes is not a realistic
    model). With j the reference model's 410 S jump and t the sum of the constant-style jumps above
    it, t is first capped so that (1 + j) / (1 + t) - 1 >= keep_fraction * j (X's dVs, dVp and
    drho scaled alike, a distractor's jump cut to what X leaves); then ``d410_strength`` s is raised
    as far as needed for the same to hold of the scaled jump s * j. ``p`` is a draw of
    :func:`draw_parameters`."""
    x_const = p["x_style"] == "constant"
    d_const = p["distractor_style"] == "constant"
    either = x_const | d_const
    if not either.any():
        return
    jumps = {name: s_jump_410(load_model(name)) for name in np.unique(p["model"])}
    j = np.array([jumps[m] for m in p["model"]])
    cap = (1.0 + j) / (1.0 + keep_fraction * j) - 1.0
    x_total = np.where(x_const, p["x_dvs"], 0.0)
    scale = np.where(x_total > cap, cap / np.where(x_total > 0, x_total, 1.0), 1.0)
    for key in ("x_dvs", "x_dvp", "x_drho"):
        p[key] = np.where(x_const, p[key] * scale, p[key])
    room = np.maximum(cap - x_total * scale, 0.0)  # X keeps its jump; a distractor gets what is left
    p["distractor_dvs"] = np.where(d_const, np.minimum(p["distractor_dvs"], room), p["distractor_dvs"])
    total = x_total * scale + np.where(d_const, p["distractor_dvs"], 0.0)
    needed = total / (j * (1.0 - keep_fraction * (1.0 + total)))
    p["d410_strength"] = np.where(either, np.maximum(p["d410_strength"], needed), p["d410_strength"])


def _clamp_layers(p: dict, x_window_top_km: float = 250.0) -> None:
    """Keep X layers above the (shifted) 410, and the base of a low-velocity zone (a positive
    jump, like X) at least 15 km above the X window so that negatives hold no X-like conversion."""
    lvz = p["distractor"] == "lvz"
    room_lvz = x_window_top_km - 15.0 - p["distractor_depth_km"]
    p["distractor_thickness_km"] = np.where(lvz, np.clip(np.minimum(p["distractor_thickness_km"], room_lvz), 10.0,
                                                         None), p["distractor_thickness_km"])
    top410 = 410.0 + p["d410_shift_km"] - 5.0
    lay = p["x_style"] == "layer"
    room = top410 - p["x_depth_km"]
    p["x_thickness_km"] = np.where(lay, np.minimum(p["x_thickness_km"], room), p["x_thickness_km"])
    p["x_gradient_km"] = np.where(lay, np.minimum(p["x_gradient_km"], 0.5 * p["x_thickness_km"]),
                                  p["x_gradient_km"])


def _row(params: dict, i: int) -> dict:
    return {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in params.items()}


# ----------------------------------------------------------------------------- physics

def pad_stacks(stacks: list[LayerStack]) -> tuple[np.ndarray, ...]:
    """Stack layer models of different lengths into (trace, layer) arrays.

    Shorter stacks get zero-thickness copies of their half-space before it (an exact
    identity in the propagator)."""
    n = max(s.n_layers for s in stacks)
    out = np.zeros((4, len(stacks), n))
    for i, s in enumerate(stacks):
        k = s.n_layers
        for j, a in enumerate((s.thickness_km, s.vp_km_s, s.vs_km_s, s.rho_g_cm3)):
            out[j, i, :k - 1] = a[:-1]
            out[j, i, k - 1:] = a[-1]
        out[0, i, k - 1:] = 0.0
    return tuple(out)


def response_spectra(stacks: list[LayerStack], slowness: np.ndarray, rf: RFSettings,
                     response_duration_s: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Radial and vertical spectra (model, slowness, freq) on an rfft grid of nfft points."""
    nfft = int(2 ** np.ceil(np.log2(response_duration_s / rf.dt - 1e-9)))
    freqs = np.fft.rfftfreq(nfft, rf.dt)
    keep = freqs <= gaussian_cutoff_hz(rf.gaussian_width_hz)
    h, vp, vs, rho = pad_stacks(stacks)
    n_m, n_p = len(stacks), slowness.size
    def rep(a):
        return np.repeat(a, n_p, axis=0)

    p = np.tile(slowness, n_m)
    radial, vertical = plane_wave_response(rep(h), rep(vp), rep(vs), rep(rho), p, freqs[keep])
    full_r = np.zeros((n_m * n_p, freqs.size), complex)
    full_z = np.zeros_like(full_r)
    full_r[:, keep] = radial
    full_z[:, keep] = vertical
    return full_r.reshape(n_m, n_p, -1), full_z.reshape(n_m, n_p, -1), nfft


def receiver_functions(stacks: list[LayerStack], slowness, rf: RFSettings,
                       response_duration_s: float = 409.6, sources: list | None = None) -> np.ndarray:
    """Noise-free receiver functions (model, slowness, time) on ``rf.time_axis()``.

    The surface R and Z responses are turned into time series that start
    ``time_before_p_s`` before P and deconvolved exactly as real data are. ``sources``: per model a
    list of one source per slowness (:func:`xdisc.synth.source.draw_source`, None = impulse) whose
    spectrum multiplies both components first; None: impulses throughout.
    """
    slowness = np.atleast_1d(np.asarray(slowness, float))
    r_spec, z_spec, nfft = response_spectra(stacks, slowness, rf, response_duration_s)
    n_t = rf.time_axis().size
    freqs = np.fft.rfftfreq(nfft, rf.dt)
    if sources is not None:
        src = np.array([[source_spectrum(s, freqs) for s in row] for row in sources])
        r_spec, z_spec = r_spec * src, z_spec * src
    delay = np.exp(-2j * np.pi * freqs * rf.time_before_p_s)
    z = np.fft.irfft(z_spec * delay, nfft)[..., :n_t]
    r = np.fft.irfft(r_spec * delay, nfft)[..., :n_t]
    result = deconvolve(z, r, rf.dt, rf.deconvolution, rf.gaussian_width_hz,
                        time_before_p_s=rf.time_before_p_s, n_out=n_t, water_level=rf.water_level,
                        max_iterations=rf.max_iterations,
                        min_fit_change_percent=rf.min_fit_change_percent)
    return result.rf


def single_rf(model: EarthModel, slowness: float, rf: RFSettings, layering: Layering,
              response_duration_s: float = 409.6) -> np.ndarray:
    """One noise-free receiver function of ``model`` at ``slowness`` (quick looks, tests)."""
    return receiver_functions([layering.apply(model)], [slowness], rf, response_duration_s)[0, 0]


# ----------------------------------------------------------------------------- augmentation

def augment_sample(clean: np.ndarray, params: dict, i: int, time_s: np.ndarray, rf: RFSettings,
                   cfg: dict, seed: int, noise_pool: np.ndarray | None) -> np.ndarray:
    """Noise and augmentation of sample ``i`` (slowness, time), from its own random stream."""
    rng = np.random.default_rng([seed, 1, i])
    ac = cfg["augmentation"]
    out = clean.astype(float)
    kind = params["noise_kind"][i]
    if kind != "none":
        if kind == "real":
            noise = augment.real_noise(rng, noise_pool, out.shape)
        else:
            noise = augment.coloured_noise(rng, out.shape, rf.dt, rf.gaussian_width_hz,
                                           params["noise_exponent"][i],
                                           (params["noise_microseism"][i], params["noise_microseism_hz"][i]))
        out = augment.add_noise(out, noise, params["snr"][i], time_s)
    out = augment.add_spurious_arrivals(rng, out, time_s, ac["spurious_probability"], ac["spurious_amplitude"])
    out = augment.jitter_amplitude(rng, out, ac["amplitude_jitter"])
    out = augment.shift_time(rng, out, rf.dt, ac["time_shift_s"])
    if np.isfinite(params["trim_end_s"][i]):
        out = augment.trim_window(out, time_s, params["trim_start_s"][i], params["trim_end_s"][i])
    return out


def load_noise_pool(path: str, rf: RFSettings) -> np.ndarray:
    """Real noise traces (trace, time) from a NetCDF file with variable ``noise``."""
    with xr.open_dataset(path) as ds:
        if "noise" not in ds:
            raise ValueError(f"{path}: no variable 'noise(trace, time)'")
        pool = np.asarray(ds["noise"].values, float)
        rate = ds.attrs.get("sampling_rate_hz", rf.sampling_rate_hz)
    if abs(float(rate) - rf.sampling_rate_hz) > 1e-6:
        raise ValueError(f"{path}: noise sampled at {rate} Hz, receiver functions at {rf.sampling_rate_hz} Hz")
    n = rf.time_axis().size
    pool = pool[np.isfinite(pool).cumprod(axis=1).sum(axis=1) >= n]  # NaN padding at the end is allowed
    if pool.shape[0] == 0:
        raise ValueError(f"{path}: no noise trace with {n} finite samples (the receiver-function length)")
    return pool


# ----------------------------------------------------------------------------- stage

def simulate(params: dict, slowness, rf: RFSettings, layering: Layering, response_duration_s: float,
             n_jobs: int = 1, batch_size: int = 8, progress=None, augmenter=None, sources=None):
    """Noise-free receiver functions (sample, slowness, time) for every parameter row.

    With ``augmenter(i, clean_i) -> noisy_i`` the augmented set is computed in the same
    worker threads and returned as a second array. ``sources(i)``: the sources of sample i's
    traces (one per slowness; see :func:`receiver_functions`); None: impulses."""
    n = len(params["label"])
    references: dict[str, EarthModel] = {}
    for name in np.unique(params["model"]):
        references[name] = load_model(name)
    slowness = np.asarray(slowness, float)
    out = np.zeros((n, slowness.size, rf.time_axis().size), np.float32)
    noisy = np.zeros_like(out) if augmenter is not None else None
    starts = list(range(0, n, batch_size))

    def work(a):
        rows = range(a, min(a + batch_size, n))
        stacks = [layering.apply(build_model(_row(params, i), references[params["model"][i]])) for i in rows]
        src = [sources(i) for i in rows] if sources is not None else None
        out[a:a + len(rows)] = receiver_functions(stacks, slowness, rf, response_duration_s, src)
        if augmenter is not None:
            for i in rows:
                noisy[i] = augmenter(i, out[i])
        return len(rows)

    done, t0 = 0, _time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        for count in pool.map(work, starts):
            done += count
            if progress is not None:
                progress(done, n, _time.perf_counter() - t0)
    return out if augmenter is None else (out, noisy)


def single_parameters(config: dict, x_depth_km: float | None, no_x: bool = False, x_dvs: float = 0.03,
                      x_dvp_ratio: float = 0.5, x_drho_ratio: float = 0.3, x_gradient_km: float = 0.0,
                      x_style: str = "taper", moho_km: float | None = None, vpvs: float = 1.75) -> dict:
    """Parameter table of one model (``xdisc synth --x-depth`` or ``--no-x``: a quick look): the first model
    of ``synthetics.models``, with X at ``x_depth_km`` (None: without X) and the crust of the model unless
    ``moho_km`` is given."""
    name = config["synthetics"]["models"][0]
    load_model(name)  # fails early, with a clear message, on a bad name or file
    has_x = x_depth_km is not None
    if has_x and no_x:
        raise ConfigError("give either --x-depth or --no-x")
    moho = moho_km if moho_km is not None else np.nan
    row = {
        "model": name, "label": int(has_x), "moho_km": moho,
        "vpvs": vpvs if moho_km is not None else np.nan,
        "crust_vp_scale": 1.0, "sediment_km": 0.0, "sediment_vs_km_s": np.nan, "sediment_vpvs": np.nan,
        "d410_shift_km": 0.0, "d660_shift_km": 0.0,
        "x_depth_km": x_depth_km if has_x else np.nan, "x_dvs": x_dvs if has_x else 0.0,
        "x_dvp": x_dvs * x_dvp_ratio if has_x else 0.0,
        "x_drho": x_dvs * x_drho_ratio if has_x else 0.0,
        "x_gradient_km": x_gradient_km if has_x else 0.0,
        "x_style": x_style if has_x else "none", "x_thickness_km": 40.0 if has_x else np.nan,
        "distractor": "none", "distractor_depth_km": np.nan, "distractor_dvs": 0.0,
        "distractor_thickness_km": np.nan,
        "noise_kind": "coloured" if config["synthetics"]["noise"]["enabled"] else "none",
        "snr": float(np.sqrt(np.prod(config["synthetics"]["noise"]["snr"]))) if config["synthetics"]["noise"]["enabled"]
        else np.inf,
        "noise_exponent": 0.0 if config["synthetics"]["noise"]["enabled"] else np.nan,
        "trim_start_s": -np.inf, "trim_end_s": np.inf, "source_duration_s": np.nan,
    }
    return {k: np.array([v]) for k, v in row.items()}


def make_dataset(config: dict, n_samples: int | None = None, n_jobs: int = 1, progress=None,
                 params: dict | None = None) -> xr.Dataset:
    """Build the synthetic dataset described by a validated ``config``."""
    cfg = config["synthetics"]
    rf = RFSettings(**config["receiver_function"])
    layering = Layering(**config["layering"])
    seed = cfg["seed"]
    n = n_samples or cfg["n_samples"]
    drawn = params is None  # a given table (a quick look) keeps impulsive sources
    if drawn:
        params = draw_parameters(n, cfg, seed)
    n = len(params["label"])
    slowness = np.asarray(cfg["slowness_s_per_km"], float)
    time_s = rf.time_axis()
    pool = None
    if np.any(params["noise_kind"] == "real"):
        pool = load_noise_pool(cfg["noise"]["real_noise_file"], rf)  # fail early, before the long part

    def augmenter(i, clean_i):
        return augment_sample(clean_i, params, i, time_s, rf, cfg, seed, pool)

    def sources(i):
        return sample_sources(seed, i, slowness.size, cfg["source"])

    clean, noisy = simulate(params, slowness, rf, layering, cfg["response_duration_s"], n_jobs, progress=progress,
                            augmenter=augmenter, sources=sources if drawn else None)
    return to_dataset(clean, noisy, params, slowness, time_s, config)


def to_dataset(clean, noisy, params, slowness, time_s, config) -> xr.Dataset:
    rf_attrs = {"units": "1", "long_name": "radial receiver function",
                "description": "amplitude relative to the vertical direct P (Gaussian pulse of peak 1)"}
    ds = xr.Dataset(
        {
            "rf": (("sample", "slowness", "time"), as_float32(noisy), rf_attrs),
            "rf_clean": (("sample", "slowness", "time"), as_float32(clean),
                         dict(rf_attrs, long_name="noise-free radial receiver function")),
        },
        coords={
            "sample": ("sample", np.arange(len(params["label"])), {"long_name": "sample index"}),
            "slowness": ("slowness", slowness, {"units": "s km-1", "long_name": "horizontal slowness"}),
            "time": ("time", time_s, {"units": "s", "long_name": "time after direct P"}),
        },
    )
    for key, values in params.items():
        units, long_name = PARAMETER_DOCS[key]
        attrs = {"long_name": long_name}
        if units:
            attrs["units"] = units
        arr = np.asarray(values)
        if key in STRING_COLUMNS:
            arr = arr.astype(str).astype(object)
        ds[key] = ("sample", arr, attrs)
    sect = {k: config[k] for k in ("synthetics", "receiver_function", "layering")}
    ds.attrs.update(provenance_attrs(
        title="xdisc synthetic P receiver functions",
        source="plane-wave P response of earth-flattened layered models (Thomson-Haskell propagators), "
               "deconvolved like real data",
        seed=config["synthetics"]["seed"], config_hash=config_hash(sect),
        references="Kennett & Engdahl 1991 (IASP91); Kennett et al. 1995 (AK135); Dziewonski & Anderson 1981 "
                   "(PREM); Ligorria & Ammon 1999 (iterative deconvolution)"))
    rfs = config["receiver_function"]
    ds.attrs.update({f"rf_{k}": (str(v) if isinstance(v, bool) else v) for k, v in rfs.items()})
    ds.attrs.update({f"layering_{k}": (str(v) if isinstance(v, bool) else v) for k, v in config["layering"].items()})
    return ds
