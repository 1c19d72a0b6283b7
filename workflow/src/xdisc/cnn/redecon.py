"""Calibration draws deconvolved as the real receiver functions are (``cnn.adapt.calibration_noise:
redeconvolved``; ``xdisc calibration-draws``).

The own-noise stations of :mod:`xdisc.cnn.adapt` add the station's noise to noise-free receiver
functions. Real noise enters before the deconvolution: the noise of the vertical is divided into the
radial, the iterative deconvolution places its spikes differently, and the result depends on the signal.
On the independent test networks the present thresholds set on noise added afterwards let through
14 % and 8 % of the stations without X where 5 % was meant. Here each no-X calibration draw of a station
is made as its data were:

1. a synthetic sample's vertical and radial plane-wave responses (the run's synthetic test set, its
   models rebuilt) at the grid slowness of each of the station's events, each event with its own
   extended source (:mod:`xdisc.synth.source`);
2. plus noise with the spectra and the cross-spectrum of that event's own pre-P vertical and radial
   (random phase, the same on both components), at the event's own SNR (the pre-P noise is kept in
   units of the vertical's signal rms, :func:`xdisc.synth.noise_pool.pre_p_noise`);
3. tapered, cut and deconvolved with the pipeline's deconvolution and settings, divided by the direct P,
   and imaged at the station's event slownesses.

With ``cnn.adapt.calibration_crust: station`` the samples keep their mantles (X, distractors, transition
zone) but take the station's own crust, fitted to its receiver functions (:mod:`xdisc.cnn.crust_fit`), so
that the draws ring as the station does (the default ``sample``: each sample's own crust, the nearest of
the test set's).

The images do not depend on the network, so they are made per batch of stations (rule
``draw_calibration``) and only scored by ``xdisc calibrate``. The X draws (the ``absent`` threshold)
stay own-noise stations.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.fft import irfft, next_fast_len, rfft

from xdisc.cnn.calibration import AdaptSettings, calibration_pairs, crust_distances, crust_window, in_window, read_pools
from xdisc.cnn.crust_fit import CRUST_KEYS, CrustFit, crust_bounds, fit_crust
from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
from xdisc.cnn.synthetic_set import LOOK_ALIKE_ATTRS, SyntheticSource, is_look_alike
from xdisc.config import config_hash
from xdisc.core.artifacts import as_float32, open_netcdf, provenance_attrs, write_netcdf
from xdisc.core.deconvolution import RFSettings, deconvolve, normalise_by_p
from xdisc.core.earthmodel import load_model
from xdisc.data.receiver_functions import deconvolution_window, source_grid, zr_to_lq
from xdisc.synth import synthetics as syn
from xdisc.synth.source import draw_source, source_spectrum

log = logging.getLogger(__name__)


def extend_noise(seg_z: np.ndarray, seg_r: np.ndarray, n: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of noise with the spectra of the pre-P segments ``seg_z``, ``seg_r`` (..., segment;
    Hann window, zero-padded) and their cross-spectrum (the same random phase on both components), each
    with its segment's standard deviation. A batch of segments draws its phases as the same segments one
    by one would."""
    m = seg_z.shape[-1]
    w = np.hanning(m)
    nfft = next_fast_len(max(n, 2 * m), real=True)
    zs = rfft((seg_z - seg_z.mean(axis=-1, keepdims=True)) * w, nfft)
    rs = rfft((seg_r - seg_r.mean(axis=-1, keepdims=True)) * w, nfft)
    phase = np.exp(2j * np.pi * rng.random(zs.shape))
    z, r = irfft(zs * phase, nfft)[..., :n], irfft(rs * phase, nfft)[..., :n]

    def scaled(x, ref):
        s = np.std(x, axis=-1, keepdims=True)
        return x * np.where(s > 0, np.std(ref, axis=-1, keepdims=True) / np.where(s > 0, s, 1.0), 1.0)

    return scaled(z, seg_z), scaled(r, seg_r)


class Responses:
    """Vertical and radial plane-wave response spectra of samples of a synthetic set, on its slowness grid
    (rebuilt from the set's parameter columns with the run's layering)."""

    def __init__(self, test_path: str | Path, config: dict, samples: np.ndarray, crust: dict | None = None):
        self.rf = RFSettings(**config["receiver_function"])
        layering = syn.Layering(**config["layering"])
        self.slowness, params = read_parameters(test_path)
        self.samples = np.unique(np.asarray(samples, int))
        refs = {name: load_model(name) for name in np.unique(params["model"][self.samples])}

        def row(i):  # the sample, with ``crust`` (a station's own: xdisc.cnn.crust_fit) in place of its own
            # a fitted crust is one layer over the sediment (crust_fit): no sampled Conrad inside it
            return {**syn._row(params, i), **(dict(crust, conrad_fraction=np.nan) if crust else {})}

        r_all, z_all = [], []
        for a in range(0, self.samples.size, 16):
            rows = self.samples[a:a + 16]
            stacks = [layering.apply(syn.build_model(row(i), refs[params["model"][i]])) for i in rows]
            r, z, self.nfft = syn.response_spectra(stacks, self.slowness, self.rf,
                                                   config["synthetics"]["response_duration_s"])
            r_all.append(r.astype(np.complex64))
            z_all.append(z.astype(np.complex64))
        self.r = np.concatenate(r_all) if r_all else np.zeros((0, self.slowness.size, 0), np.complex64)
        self.z = np.concatenate(z_all) if z_all else np.zeros_like(self.r)
        self.freqs = np.fft.rfftfreq(self.nfft, self.rf.dt) if r_all else np.zeros(0)
        self.row = {int(s): k for k, s in enumerate(self.samples)}
        self.source_cfg = config["synthetics"]["source"]

    def seismograms(self, sample: int, grid_index: np.ndarray, t0_s: float, n: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Vertical and radial (event, n) from ``t0_s`` (s relative to P), one extended source per event."""
        k = self.row[int(sample)]
        src = np.array([source_spectrum(draw_source(rng, self.source_cfg), self.freqs) for _ in grid_index])
        delay = np.exp(2j * np.pi * self.freqs * t0_s)
        z = np.fft.irfft(self.z[k, grid_index] * src * delay, self.nfft)[:, :n]
        r = np.fft.irfft(self.r[k, grid_index] * src * delay, self.nfft)[:, :n]
        return z, r


def read_parameters(test_path: str | Path) -> tuple[np.ndarray, dict]:
    """The slowness grid and the parameter columns of a synthetic set."""
    with open_netcdf(test_path) as ds:
        slowness = ds["slowness"].values.astype(float)
        params = {k: ds[k].values for k in syn.PARAMETER_DOCS if k in ds}
    for k in syn.STRING_COLUMNS:
        if k in params:
            params[k] = params[k].astype(str)
    return slowness, params


def station_crust(pool, test: SyntheticSource, params: dict, config: dict, a: AdaptSettings, seed: int,
                  normalised: np.ndarray) -> CrustFit:
    """The station's own crust (:mod:`xdisc.cnn.crust_fit`), started from the crusts of the 8 samples of the
    synthetic test set nearest its receiver functions."""
    dist = crust_distances(pool, test, a.crust_window_s, normalised)
    starts = np.stack([params[k] for k in CRUST_KEYS], axis=1)[np.argsort(dist, kind="stable")[:8]]
    starts[:, 3] = np.nan_to_num(starts[:, 3])  # other undefined values start mid-range
    return fit_crust(pool.radial[:, in_window(test.time_s, a.crust_window_s)], pool.grid_index, starts,
                     load_model(config["earth_model"]), test.grid_slowness, RFSettings(**config["receiver_function"]),
                     syn.Layering(**config["layering"]), a.crust_window_s,
                     crust_bounds(config["synthetics"]["crust"]), np.random.default_rng([seed, 37]),
                     config["synthetics"]["response_duration_s"])


def redeconvolved(resp: Responses, samples: np.ndarray, grid_index: np.ndarray, pre_p: np.ndarray,
                  proc: dict, rng: np.random.Generator, incidence_deg: np.ndarray | None = None) -> np.ndarray:
    """Receiver functions / direct P (draw, event, time on ``rf.time_axis()``) of ``samples`` at a station's
    events (``grid_index``: the grid slowness of each; ``pre_p``: event, vertical/radial, time: the
    pre-P noise in units of the vertical's signal rms), made as ``xdisc rf`` makes them; with
    ``incidence_deg`` (one per event: ``rf_processing.rotation`` LQT) rotated to L and Q first, as the
    data are (their pre-P noise is then that of L and Q already)."""
    rf = resp.rf
    grid = source_grid(rf, proc)
    n = grid.size
    signal = (grid >= proc["signal_window_s"][0]) & (grid <= proc["signal_window_s"][1])
    t_out = rf.time_axis()
    out = np.empty((len(samples), grid_index.size, t_out.size))
    for d, s in enumerate(samples):  # one draw per deconvolution batch: memory ~ the station's events
        z, r = resp.seismograms(int(s), grid_index, grid[0], n, rng)
        if incidence_deg is not None:
            z, r = zr_to_lq(z, r, incidence_deg)
        unit = np.sqrt(np.mean(z[:, signal] ** 2, axis=1))
        nz, nr = extend_noise(pre_p[:, 0], pre_p[:, 1], n, rng)
        z += unit[:, None] * nz
        r += unit[:, None] * nr
        res = deconvolve(deconvolution_window(z, grid, rf), deconvolution_window(r, grid, rf), rf.dt,
                         rf.deconvolution, rf.gaussian_width_hz, time_before_p_s=rf.time_before_p_s,
                         n_out=t_out.size, water_level=rf.water_level, max_iterations=rf.max_iterations,
                         min_fit_change_percent=rf.min_fit_change_percent)
        out[d] = normalise_by_p(res.rf, t_out)
    return out


def station_seed(seed: int, station: str) -> int:
    """A station's own random stream: its draws do not depend on which other stations share its batch."""
    return int(seed) * 1_000_003 + zlib.crc32(station.encode())


def with_pre_p(pools: list, step: str, otherwise: str) -> list:
    """The pools that hold pre-P noise (the draws are made of it); each other station is named in a warning
    (``step``: the step that skips it, ``otherwise``: what becomes of it)."""
    kept = []
    for pool in pools:
        if pool.pre_p is None:
            log.warning("%s: %s: its noise pool holds no pre-P noise (made before xdisc kept it); %s", step,
                        pool.station, otherwise)
        else:
            kept.append(pool)
    return kept


def lqt_incidence(config: dict):
    """A function of a station's slownesses (s/km) giving the incidence (degrees) its draws are rotated to LQT
    with (TauP's: asin(p * vp at the surface), as ``xdisc rf`` rotates the data); where
    ``rf_processing.rotation`` is not LQT, a function that gives ``None`` (no rotation to LQT)."""
    if config["rf_processing"]["rotation"] != "LQT":
        return lambda slowness: None
    vp_surface = float(load_model(config["earth_model"]).vp_km_s[0])
    return lambda slowness: np.degrees(np.arcsin(np.clip(np.asarray(slowness) * vp_surface, 0.0, 1.0)))


def station_samples(pool, test: SyntheticSource, a: AdaptSettings, seed: int, normalised: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The samples of the synthetic test set for a station's no-X and X calibration draws (``seed``: its
    :func:`station_seed`), picked as :func:`xdisc.cnn.adapt.calibrate` picks them (with ``match_crust``
    the nearest crusts, whatever the seed; ``normalised``: the test set's crust window, made once)."""
    pairs, kind = calibration_pairs([pool], test, a.calibration_draws, a.absent_dvs, seed,
                                    a.crust_window_s if a.match_crust else None, a.hard_fraction, normalised)
    return pairs[kind == 0, 1], pairs[kind == 1, 1]


def calibration_draws(config: dict, test_path: str | Path, noise_files: list, out_dir: Path) -> list[Path]:
    """For every station of ``noise_files`` whose pool holds pre-P noise, the images of its
    ``cnn.adapt.calibration_draws`` no-X draws (samples picked as :func:`xdisc.cnn.adapt.calibrate` picks
    them) made by :func:`redeconvolved`, written to ``out_dir/NET.STA.nc``. Stations without pre-P noise
    or too few usable events get no file (calibration then falls back to own-noise stations)."""
    cfg = config["cnn"]
    a = AdaptSettings.from_config(cfg["adapt"])
    settings = ImageSettings.from_config(config["images"])
    mapper = DepthMapper(load_model(config["earth_model"]), settings.depths_km)
    test = SyntheticSource.read(test_path)
    own_crust = a.calibration_crust == "station"
    pools = read_pools(noise_files, test.grid_slowness, test.time_s, int(cfg["verdict"]["min_rf"]), a.noise,
                       a.match_crust or own_crust, pre_p=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the test set's crust window, once for every station (nearest crusts; the own crust's starts)
    normalised = crust_window(test, a.crust_window_s) if a.match_crust or own_crust else None
    chosen = []
    for pool in with_pre_p(pools, "calibration draws", "its thresholds come from own-noise stations"):
        seed = station_seed(int(cfg["seed"]), pool.station)
        chosen.append((pool, station_samples(pool, test, a, seed, normalised)[0], seed))
    if own_crust:  # one set of responses per station, made with its crust
        params = read_parameters(test_path)[1]
        shared = None
    else:
        shared = Responses(test_path, config, np.concatenate([c[1] for c in chosen]) if chosen else np.zeros(0, int))
    written = []
    t_out = RFSettings(**config["receiver_function"]).time_axis()
    incidence_of = lqt_incidence(config)
    sect = {k: config[k] for k in ("receiver_function", "rf_processing", "images", "layering", "earth_model")}
    for k, (pool, samples, seed) in enumerate(chosen):
        t0 = time.perf_counter()
        fit = None
        if own_crust and pool.radial is None:
            log.warning("calibration draws: %s: its noise pool keeps no receiver functions to fit its crust to; "
                        "its draws keep the samples' own crusts", pool.station)
        elif own_crust:
            try:
                fit = station_crust(pool, test, params, config, a, seed, normalised)
            except (ValueError, FloatingPointError) as err:  # a crust the propagator cannot take: keep going
                log.warning("calibration draws: %s: its crust could not be fitted (%s); its draws keep the "
                            "samples' own crusts", pool.station, err)
        if fit is not None:
            log.info("calibration draws: %s: own crust: Moho %.1f km, Vp/Vs %.2f, sediment %.2f km (Vs %.2f km/s); "
                     "misfit %.3f (nearest sample %.3f)", pool.station, fit.params["moho_km"], fit.params["vpvs"],
                     fit.params["sediment_km"], fit.params["sediment_vs_km_s"], fit.misfit, fit.start_misfit)
        resp = shared if shared is not None else Responses(test_path, config, samples, fit.params if fit else None)
        rng = np.random.default_rng([seed, 31])
        rfs = redeconvolved(resp, samples, pool.grid_index, pool.pre_p, config["rf_processing"], rng,
                            incidence_of(pool.slowness))
        images = np.stack([build_image(x, t_out, pool.slowness, mapper, settings, normalised=True)[0] for x in rfs])
        alike = test.look_alikes(samples)
        if fit is not None:  # the sample's distractor below its crust, the fitted crust's sediment
            alike = is_look_alike(np.asarray(params["distractor"])[samples], fit.params["sediment_km"]).astype(np.int8)
        ds = xr.Dataset(
            {"image": (("draw", "channel", "slowness_bin", "depth"), as_float32(images),
                       {"long_name": "image of a no-X calibration draw deconvolved as the station's data"}),
             "sample": ("draw", samples.astype(np.int32), {"long_name": "sample of the synthetic test set"}),
             "look_alike": ("draw", alike, LOOK_ALIKE_ATTRS)},
            coords={"station": ((), pool.station)})
        ds.attrs.update(provenance_attrs(
            title=f"no-X calibration draws of {pool.station}",
            source="xdisc calibration-draws: synthetic responses with extended sources plus the station's pre-P "
                   "noise spectra at each event's SNR, deconvolved as xdisc rf",
            seed=seed, config_hash=config_hash(sect)))
        ds.attrs["n_events"] = int(pool.grid_index.size)
        ds.attrs["crust"] = "the station's own (fitted)" if fit else "each sample's own"
        if fit:
            ds.attrs.update({f"crust_{k}": round(v, 4) for k, v in fit.params.items()})
            ds.attrs.update(crust_misfit=round(fit.misfit, 5), crust_start_misfit=round(fit.start_misfit, 5))
        written.append(write_netcdf(ds, out_dir / f"{pool.station}.nc"))
        log.info("calibration draws: %s (%d of %d): %d draws of %d events in %.1f s", pool.station, k + 1,
                 len(chosen), samples.size, pool.grid_index.size, time.perf_counter() - t0)
    return written
