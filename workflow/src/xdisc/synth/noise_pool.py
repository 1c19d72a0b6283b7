"""A station's own receiver-function noise: the pool that the CNN adapts to (``xdisc noise``).

For every usable receiver function of a station (as for its images: finite, and QC-passed with
``stacking.use_qc``) the pool keeps two kinds of noise (``cnn.adapt.noise`` picks one). First its
**transverse receiver function** (the transverse component
deconvolved by the vertical exactly as the radial one), divided by the radial receiver function's
direct P. In a flat, isotropic Earth the transverse receiver function holds no converted P: what it
holds is the event's noise after the same rotation, deconvolution, Gaussian filter and normalisation
as the radial one (plus scattering, anisotropy and dipping interfaces in real data), and that is the
noise a synthetic signal gets when the CNN is trained for this station (:mod:`xdisc.cnn.adapt`).
Each trace is scaled so that its pre-P level equals that of the radial receiver function of the
same event (``level_matched``; the factor is kept within 0.25-4), so the pool also carries the
station's SNR distribution; the events' slownesses and back azimuths travel with it. Second its
**radial residual**: the radial receiver function minus the mean of the station's other radial receiver
functions of similar slowness, which keeps what only the radial component carries (the vertical's noise
multiplied into the signal by the deconvolution, arrivals no other event shares) but also any structure
that differs between events (back azimuth, few events per slowness). Where the receiver-function file
keeps them (``xdisc rf`` does), the pool also carries each event's **pre-P noise** of the vertical and
the radial, in units of the vertical's signal: the noise that the no-X calibration draws of
:mod:`xdisc.cnn.redecon` add to synthetic seismograms *before* deconvolving them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from xdisc.config import config_hash
from xdisc.core.artifacts import as_float32, open_netcdf, provenance_attrs, usable_receiver_functions
from xdisc.core.deconvolution import direct_p, noise_sigma


def radial_residuals(radial: np.ndarray, slowness: np.ndarray, bin_width: float = 0.005,
                     min_events: int = 3) -> np.ndarray:
    """Each normalised radial receiver function minus the mean of the station's *other* ones of similar
    slowness (within ``bin_width / 2``, widened until ``min_events`` others are in), scaled by
    sqrt((n - 1) / n) so that its variance is that of one trace's noise: what is left is the event's
    noise as the radial receiver function carries it (including the noise of the vertical that the
    deconvolution multiplies into the signal, and arrivals no other event shares), without the
    station's structure."""
    n = radial.shape[0]
    out = np.zeros_like(radial)
    for i in range(n):
        d = np.abs(slowness - slowness[i])
        d[i] = np.inf
        half = 0.5 * bin_width
        others = np.flatnonzero(d <= half)
        while others.size < min(min_events, n - 1):
            half *= 1.5
            others = np.flatnonzero(d <= half)
        if others.size == 0:
            continue
        m = others.size + 1
        out[i] = (radial[i] - radial[others].mean(axis=0)) * np.sqrt((m - 1) / m)
    return out


METHODS = ("transverse", "residual")


def noise_pool(rf_path: str | Path, use_qc: bool = True, match_level: bool = True) -> xr.Dataset:
    """The noise pool of one station's receiver-function file (``xdisc rf``), both kinds: ``transverse``
    (transverse receiver functions at the radial pre-P level) and ``residual`` (radial receiver
    functions minus their neighbours in slowness, :func:`radial_residuals`); :func:`read_pool` picks one."""
    rf_ds, keep, station = usable_receiver_functions(rf_path, use_qc)
    if "rf_transverse" in rf_ds:
        keep &= np.all(np.isfinite(rf_ds["rf_transverse"].values), axis=1)
    time_s = rf_ds["time"].values
    radial = rf_ds["rf"].values[keep].astype(float)
    transverse = (rf_ds["rf_transverse"].values[keep].astype(float) if "rf_transverse" in rf_ds
                  else np.zeros_like(radial))
    amp = direct_p(radial, time_s)[0] if radial.size else np.zeros(0)
    ok = np.isfinite(amp) & (amp != 0)
    radial, transverse, amp = radial[ok], transverse[ok], amp[ok]
    noise = transverse / amp[:, None]
    sigma_r = noise_sigma(radial / amp[:, None], time_s, floor=0.0)
    sigma_t = noise_sigma(noise, time_s, floor=0.0)
    scale = np.ones(noise.shape[0])
    if match_level and noise.size:
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where((sigma_t > 0) & np.isfinite(sigma_r), np.clip(sigma_r / sigma_t, 0.25, 4.0), 1.0)
    noise = noise * scale[:, None]
    idx = np.flatnonzero(keep)[ok]
    slowness = rf_ds["slowness_s_per_km"].values[idx].astype(float)
    residual = radial_residuals(radial / amp[:, None], slowness)
    ds = xr.Dataset(
        {
            "noise_transverse": (("trace", "time"), as_float32(noise),
                                 {"units": "1", "long_name": "transverse receiver function / radial direct P",
                                  "description": "scaled so that its pre-P std equals that of the radial "
                                                 "receiver function (level_scale)"}),
            "noise_residual": (("trace", "time"), as_float32(residual),
                               {"units": "1", "long_name": "radial receiver function / direct P minus the mean of "
                                                           "its neighbours in slowness, times sqrt((n-1)/n)"}),
            "radial": (("trace", "time"), as_float32(radial / amp[:, None]),
                       {"units": "1", "long_name": "radial receiver function / its direct P",
                        "description": "the station's own signal; its crustal part picks the synthetic samples "
                                       "that calibrate the station (cnn.adapt.match_crust)"}),
            "slowness_s_per_km": ("trace", slowness, {"units": "s km-1", "long_name": "P slowness of the event"}),
            "back_azimuth_deg": ("trace", rf_ds["back_azimuth_deg"].values[idx].astype(float),
                                 {"units": "degree", "long_name": "back azimuth of the event"}),
            "radial_noise_sigma": ("trace", as_float32(sigma_r),
                                   {"units": "1", "long_name": "pre-P std of the radial receiver function / P"}),
            "level_scale": ("trace", as_float32(scale),
                            {"units": "1", "long_name": "factor applied to the transverse trace"}),
        },
        coords={"trace": ("trace", np.arange(noise.shape[0])), "time": ("time", time_s, {"units": "s"}),
                "network": ((), station["network"]), "station": ((), station["station"]),
                "latitude": ((), float(station["latitude"]), {"units": "degrees_north"}),
                "longitude": ((), float(station["longitude"]), {"units": "degrees_east"})},
    )
    if "pre_p_vertical" in rf_ds:
        ds = ds.merge(pre_p_noise(rf_ds, idx))
    ds.attrs.update(provenance_attrs(
        title=f"receiver-function noise pool of {station['network']}.{station['station']}",
        source="xdisc noise: transverse receiver functions and radial residuals, normalised by the radial direct P",
        config_hash=config_hash({"use_qc": use_qc, "match_level": match_level})))
    ds.attrs["level_matched"] = int(match_level)
    ds.attrs["n_traces"] = int(noise.shape[0])
    return ds


def pre_p_noise(rf_ds: xr.Dataset, idx: np.ndarray) -> xr.Dataset:
    """The pre-P noise of the vertical and the radial of events ``idx`` of a receiver-function file, in units
    of the vertical's signal (rms in the signal window with the noise's share taken out): noise that a
    synthetic seismogram of any amplitude gets at the event's own SNR (:mod:`xdisc.cnn.redecon`)."""
    z, r = in_signal_units(rf_ds["pre_p_vertical"].values[idx], rf_ds["pre_p_radial"].values[idx],
                           rf_ds["signal_rms_z"].values[idx])
    attrs = {"units": "1", "description": "divided by the vertical's signal rms (signal_window_s) without its noise; "
                                         "NaN where the event has no usable pre-P noise"}
    return xr.Dataset(
        {"pre_p_vertical": (("trace", "noise_time"), as_float32(z),
                            dict(attrs, long_name="pre-P noise of the vertical / its signal rms")),
         "pre_p_radial": (("trace", "noise_time"), as_float32(r),
                          dict(attrs, long_name="pre-P noise of the radial / the vertical's signal rms"))},
        coords={"noise_time": rf_ds["noise_time"].values})


def in_signal_units(z: np.ndarray, r: np.ndarray, signal_rms_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pre-P noise of the vertical and radial (event, time) divided by the vertical's signal: its rms in the
    signal window (``signal_rms_z``) with the noise's share taken out (at least a tenth of it); NaN where
    an event has no usable noise."""
    z, r, total = (np.asarray(a, float) for a in (z, r, signal_rms_z))
    noise = np.sqrt(np.mean(z**2, axis=1)) if z.size else np.zeros(0)
    with np.errstate(invalid="ignore"):
        signal = np.sqrt(np.maximum(total**2 - noise**2, (0.1 * total) ** 2))
    ok = np.isfinite(signal) & (signal > 0) & np.all(np.isfinite(z), axis=1) & np.all(np.isfinite(r), axis=1)
    unit = np.where(ok, signal, np.nan)[:, None]
    return z / unit, r / unit


def read_pool(path: str | Path, method: str = "transverse", radial: bool = False, pre_p: bool = False) -> dict:
    """A noise pool as plain arrays: station code, noise (trace, time) of kind ``method`` (transverse or
    residual), with ``radial`` the normalised radial receiver functions (None in pools written before
    they were kept, or without ``radial``), slowness, back azimuth, time; with ``pre_p`` the pre-P noise
    (trace, vertical/radial, noise time; None in pools without it)."""
    if method not in METHODS:
        raise ValueError(f"noise pool kind {method!r}: one of {', '.join(METHODS)}")
    ds = open_netcdf(path)
    name = f"noise_{method}"
    if name not in ds:
        raise ValueError(f"{path}: no variable {name} (a noise pool of 'xdisc noise')")
    return {"station": f"{ds['network'].item()}.{ds['station'].item()}", "noise": ds[name].values.astype(float),
            "radial": ds["radial"].values.astype(float) if radial and "radial" in ds else None,
            "slowness": ds["slowness_s_per_km"].values.astype(float),
            "back_azimuth": ds["back_azimuth_deg"].values.astype(float), "time": ds["time"].values.astype(float),
            "pre_p": (np.stack([ds["pre_p_vertical"].values, ds["pre_p_radial"].values], axis=1).astype(float)
                      if pre_p and "pre_p_vertical" in ds else None)}
