"""An independent synthetic test network, and a benchmark that scores both xdisc methods on it.

    python tests/benchmarks/independent_network.py make --out DIR [--stations 100] [--seed 1]
    python tests/benchmarks/independent_network.py score --network DIR --workdir WORKDIR [--reuse] [--stacking-only]
    python tests/benchmarks/independent_network.py tally WORKDIR/independent_score.json ...

``make`` writes a user's archive that xdisc did not make: waveforms from telewavesim (Kennett
reflectivity; an independent forward code) for per-station 1-D models layered and
earth-flattened here (not by ``xdisc.core.earthmodel``), teleseismic P at TauP (iasp91)
slownesses and back azimuths, a trapezoid source with pP and sP, and noise shaped like the
Peterson (1993) NLNM/NHNM spectra (not xdisc's augmentation). Layout::

    DIR/archive/          what the pipeline reads (README.txt says it is synthetic)
        SDS/YYYY/XS/STA/BH?.D/XS.STA.00.BH?.D.YYYY.DOY   miniSEED (STEIM2 counts, 20 Hz)
        stations.xml      StationXML, sensitivity (counts/m of displacement) per channel
        events.xml        QuakeML
    DIR/truth/            hidden from the pipeline
        truth.csv         one row per station (X, its depth/dVs/gradient, decoy, crust, noise, events)
        traces.csv        one row per event-station window (distance, slowness, SNR)
        network.json      settings of the draw

``score`` runs the pipeline as a user would (a fresh working folder, a config file with
``data.source: local`` layered over config/config.yaml and config/full.yaml) and scores
results/verdicts/{stations,stacking,cnn}.csv against the truth (prints a table, writes JSON). ``tally``
pools the stations of several scored draws (their JSON) and prints the rates of each method over all of
them, with 95 % intervals, and by class (dVs, Moho depth, X depth including the window's edges, SNR, decoy).

Not part of the test suite (tests/test_independent_network.py checks a tiny network).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

R_EARTH_KM = 6371.0
NETWORK = "XS"
LOCATION = "00"
CHANNELS = ("BHZ", "BHN", "BHE")
FS_HZ = 20.0                  # archive sampling rate (the pipeline resamples to 10 Hz)
BEFORE_P_S, AFTER_P_S = 180.0, 360.0   # event window around the true P
TWS_DT_S = 0.1                # telewavesim sampling; its response is periodic in npts * dt
SLOWNESS_BIN_S_PER_KM = 0.001    # responses cached per bin: <= 0.05 s error in a 300 km Ps delay
# telewavesim's direct P is not one sample: its tails reach seconds before and after P (0.43 of the peak
# one sample away, 0.0006 at 3 s; the 100 s before P sum to about as much as the 150 s after it). The
# response is periodic, so those before P sit at the end of the period: it is rolled by this lead before
# the far end is tapered, or the taper would cut them off. Cut off, the vertical's P lost half its low
# frequencies and every receiver function's conversions came out about 1.3 times too large against P
# (fixed 2026-12-05; docs/results/2026-12-05-the-test-networks-p-pulse.md).
RESPONSE_LEAD_S = 50.0
HALF_SPACE_KM = 700.0
SUBLAYER_KM = 8.0             # fixed sub-layer thickness (spherical depth) between interfaces
GRADIENT_SUBLAYER_KM = 2.0    # inside gradient zones
TAUP_MODEL = "iasp91"         # travel times and slownesses (the pipeline's default is ak135)
REFERENCE_MODEL = "iasp91"    # mantle velocities
DENSITY_EXPONENT = 3          # flattened density rho_f = rho (r/R)^3 (xdisc uses (r/R)^1)
CENTER_LAT, CENTER_LON = 44.0, 8.0
T0 = "2021-01-04T00:00:00"
DECOYS = ("none", "lvl", "j220", "j380")
HERE = Path(__file__).resolve()
REPO = HERE.parents[2]


# ============================================================================ models

def _reference_layers(name: str = REFERENCE_MODEL) -> np.ndarray:
    """TauP's layers of a reference model: top, bottom, vp top/bottom, vs top/bottom (depth in km)."""
    from obspy.taup import TauPyModel

    layers = TauPyModel(name).model.s_mod.v_mod.layers
    return np.array([(la["top_depth"], la["bot_depth"], la["top_p_velocity"], la["bot_p_velocity"],
                      la["top_s_velocity"], la["bot_s_velocity"]) for la in layers if la["top_depth"] < 1000])


_REF = None


def _reference(z_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """vp, vs of the reference model at depths inside layers (a depth on a boundary takes the layer below)."""
    global _REF
    if _REF is None:
        _REF = _reference_layers()
    top, bot = _REF[:, 0], _REF[:, 1]
    i = np.clip(np.searchsorted(top, z_ref, side="right") - 1, 0, len(top) - 1)
    w = np.clip((z_ref - top[i]) / np.maximum(bot[i] - top[i], 1e-9), 0, 1)
    vp = _REF[i, 2] + w * (_REF[i, 3] - _REF[i, 2])
    vs = _REF[i, 4] + w * (_REF[i, 5] - _REF[i, 4])
    return vp, vs


def brocher_density(vp):
    """Nafe-Drake curve as fitted by Brocher (2005), g/cm^3, for crustal rocks."""
    return 1.6612 * vp - 0.4721 * vp**2 + 0.0671 * vp**3 - 0.0043 * vp**4 + 0.000106 * vp**5


def birch_density(vp):
    """Birch's law for the mantle, g/cm^3."""
    return 0.77 + 0.32 * vp


def station_parameters(rng, x_present: bool) -> dict:
    """Random 1-D model of one station (crust, 410/660 topography, X, decoy)."""
    p = {"moho_km": rng.uniform(20, 70), "vpvs": rng.uniform(1.65, 1.9),
         "vp_upper": rng.uniform(5.9, 6.3), "vp_lower": rng.uniform(6.5, 7.0),
         "conrad_fraction": rng.uniform(0.35, 0.6), "mantle_scale": rng.uniform(-0.008, 0.008),
         "d410_km": rng.uniform(400, 420), "d660_km": rng.uniform(650, 672),
         "sediment_km": rng.uniform(0.5, 4.0) if rng.random() < 0.3 else 0.0,
         "sediment_vp": rng.uniform(2.2, 4.0), "sediment_vpvs": rng.uniform(1.9, 2.6)}
    p["x_present"] = bool(x_present)
    if x_present:
        dvs = rng.uniform(0.02, 0.05)
        p.update(x_depth_km=rng.uniform(250, 350), x_dvs=dvs, x_dvp=dvs * rng.uniform(0.3, 0.7),
                 x_drho=dvs * rng.uniform(0.1, 0.5),
                 x_gradient_km=0.0 if rng.random() < 0.5 else rng.uniform(10, 20),
                 x_style=str(rng.choice(["to410", "taper"])))
    else:
        p.update(x_depth_km=float("nan"), x_dvs=0.0, x_dvp=0.0, x_drho=0.0, x_gradient_km=float("nan"),
                 x_style="")
    decoy = str(rng.choice(DECOYS, p=[0.55, 0.15, 0.15, 0.15]))
    p["decoy"] = decoy
    if decoy == "lvl":
        p.update(decoy_top_km=rng.uniform(90, 130), decoy_bottom_km=rng.uniform(160, 200),
                 decoy_dvs=-rng.uniform(0.03, 0.06), decoy_gradient_km=rng.uniform(5, 15))
    elif decoy == "j220":
        p.update(decoy_top_km=rng.uniform(210, 220), decoy_bottom_km=float("nan"),
                 decoy_dvs=rng.uniform(0.02, 0.04), decoy_gradient_km=0.0)
    elif decoy == "j380":
        p.update(decoy_top_km=rng.uniform(370, 390), decoy_bottom_km=float("nan"),
                 decoy_dvs=rng.uniform(0.02, 0.03), decoy_gradient_km=0.0)
    else:
        p.update(decoy_top_km=float("nan"), decoy_bottom_km=float("nan"), decoy_dvs=0.0,
                 decoy_gradient_km=float("nan"))
    return p


def _ramp(z, a, b):
    """0 above a, 1 below b, linear between (a step when b <= a)."""
    if b <= a:
        return (z >= a).astype(float)
    return np.clip((z - a) / (b - a), 0.0, 1.0)


def profile(p: dict, z: np.ndarray) -> np.ndarray:
    """(vp, vs, rho) of the spherical (unflattened) model at depths ``z`` (km), shape (n, 3)."""
    z = np.asarray(z, dtype=float)
    # mantle: reference model with its 410 and 660 moved to the station's depths
    nodes_z = [0.0, 300.0, p["d410_km"], p["d660_km"], 760.0, 2000.0]
    nodes_r = [0.0, 300.0, 410.0, 660.0, 760.0, 2000.0]
    z_ref = np.maximum(np.interp(z, nodes_z, nodes_r), 35.01)   # iasp91 mantle starts at 35 km
    vp, vs = _reference(z_ref)
    vp, vs = vp * (1 + p["mantle_scale"]), vs * (1 + p["mantle_scale"])
    rho = birch_density(vp)
    fvs, fvp, frho = np.ones_like(z), np.ones_like(z), np.ones_like(z)
    if p["x_present"]:
        half = p["x_gradient_km"] / 2
        on = _ramp(z, p["x_depth_km"] - half, p["x_depth_km"] + half)
        bottom = p["x_depth_km"] + half
        # 'taper': back to zero at the 410 (the 410 keeps its contrast); 'to410': the 410 contrast shrinks
        off = 1.0 - _ramp(z, bottom, p["d410_km"]) if p["x_style"] == "taper" else (z < p["d410_km"]).astype(float)
        f = on * off
        fvs, fvp, frho = fvs + p["x_dvs"] * f, fvp + p["x_dvp"] * f, frho + p["x_drho"] * f
    if p["decoy"] == "lvl":
        g = p["decoy_gradient_km"]
        f = _ramp(z, p["decoy_top_km"], p["decoy_top_km"]) * (1 - _ramp(z, p["decoy_bottom_km"] - g,
                                                                           p["decoy_bottom_km"]))
        fvs, fvp = fvs + p["decoy_dvs"] * f, fvp + 0.6 * p["decoy_dvs"] * f
    elif p["decoy"] in ("j220", "j380"):
        f = _ramp(z, p["decoy_top_km"], p["decoy_top_km"]) * (z < p["d410_km"])
        if p["decoy"] == "j220":
            f = f * (1 - _ramp(z, p["decoy_top_km"], p["d410_km"]))
        fvs, fvp, frho = fvs + p["decoy_dvs"] * f, fvp + 0.5 * p["decoy_dvs"] * f, frho + 0.2 * p["decoy_dvs"] * f
    vp, vs, rho = vp * fvp, vs * fvs, rho * frho
    # crust (replaces everything above the Moho)
    crust = z < p["moho_km"]
    upper = z < p["conrad_fraction"] * p["moho_km"]
    vpc = np.where(upper, p["vp_upper"], p["vp_lower"])
    vp = np.where(crust, vpc, vp)
    vs = np.where(crust, vpc / p["vpvs"], vs)
    rho = np.where(crust, brocher_density(vpc), rho)
    sed = z < p["sediment_km"]
    vp = np.where(sed, p["sediment_vp"], vp)
    vs = np.where(sed, p["sediment_vp"] / p["sediment_vpvs"], vs)
    rho = np.where(sed, brocher_density(np.full_like(z, p["sediment_vp"])), rho)
    return np.stack([vp, vs, rho], axis=1)


def interfaces(p: dict) -> tuple[list[float], list[tuple[float, float]]]:
    """Depths that must be layer boundaries, and the gradient zones (top, bottom)."""
    b = [0.0, p["conrad_fraction"] * p["moho_km"], p["moho_km"], p["d410_km"], p["d660_km"], HALF_SPACE_KM]
    if p["sediment_km"] > 0:
        b.append(p["sediment_km"])
    zones = []
    if p["x_present"]:
        half = p["x_gradient_km"] / 2
        b += [p["x_depth_km"] - half, p["x_depth_km"] + half]
        if half > 0:
            zones.append((p["x_depth_km"] - half, p["x_depth_km"] + half))
    if p["decoy"] == "lvl":
        b += [p["decoy_top_km"], p["decoy_bottom_km"] - p["decoy_gradient_km"], p["decoy_bottom_km"]]
        zones.append((p["decoy_bottom_km"] - p["decoy_gradient_km"], p["decoy_bottom_km"]))
    elif p["decoy"] in ("j220", "j380"):
        b.append(p["decoy_top_km"])
    return sorted({round(x, 4) for x in b}), zones


def flat_layers(p: dict) -> np.ndarray:
    """Earth-flattened flat layers (thickness_km, vp, vs, rho g/cc); last row the half-space.

    Sub-layers of at most SUBLAYER_KM (GRADIENT_SUBLAYER_KM inside gradient zones) between the
    interfaces; each takes the vertical-slowness (harmonic) mean of the flattened velocities over
    five Gauss-Legendre points, and the flattened density rho (r/R)^DENSITY_EXPONENT there.
    Flattening: z_f = R ln(R/r), v_f = v R/r."""
    bounds, zones = interfaces(p)
    gx, gw = np.polynomial.legendre.leggauss(5)
    rows = []
    for top, bot in itertools.pairwise(bounds):
        if bot - top < 1e-3:
            continue
        in_zone = any(a - 1e-3 <= top and bot <= b + 1e-3 for a, b in zones)
        step = GRADIENT_SUBLAYER_KM if in_zone else SUBLAYER_KM
        edges = np.linspace(top, bot, math.ceil((bot - top) / step - 1e-9) + 1)
        for z1, z2 in itertools.pairwise(edges):
            zq = 0.5 * (z1 + z2) + 0.5 * (z2 - z1) * gx
            w = gw / 2
            v = profile(p, zq)
            r = R_EARTH_KM - zq
            vf = v[:, :2] * (R_EARTH_KM / r)[:, None]
            vp_f, vs_f = 1 / np.sum(w / vf[:, 0]), 1 / np.sum(w / vf[:, 1])
            rho_f = float(np.sum(w * v[:, 2] * (r / R_EARTH_KM) ** DENSITY_EXPONENT))
            h_f = R_EARTH_KM * math.log((R_EARTH_KM - z1) / (R_EARTH_KM - z2))
            rows.append((h_f, vp_f, vs_f, rho_f))
    zh = np.array([HALF_SPACE_KM + 1.0])
    v = profile(p, zh)[0]
    s = R_EARTH_KM / (R_EARTH_KM - HALF_SPACE_KM)
    rows.append((0.0, v[0] * s, v[1] * s, v[2] / s**DENSITY_EXPONENT))
    return np.array(rows)


def telewavesim_rz(layers: np.ndarray, slowness: float, npts: int, dt: float = TWS_DT_S):
    """Radial (positive away from the source) and vertical (up) displacement for a unit P spike,
    direct P shifted exactly to sample 0 (conventions: tests/oracles/telewavesim_ref.py)."""
    from telewavesim import utils

    h, vp, vs, rho = (layers[:, i].copy() for i in range(4))
    model = utils.Model(list(h), list(rho * 1000.0), list(vp), list(vs), "iso")
    st = utils.run_plane(model, slowness, npts, dt, baz=0.0, wvtype="P")
    r, z = -st[0].data / npts, st[2].data / npts
    t_p = float(np.sum(h[:-1] * np.sqrt(1 / vp[:-1] ** 2 - slowness**2)))
    f = np.fft.rfftfreq(npts, dt)
    ph = np.exp(2j * np.pi * f * t_p)
    return np.fft.irfft(np.fft.rfft(r) * ph, npts), np.fft.irfft(np.fft.rfft(z) * ph, npts)


# ============================================================================ events

def _destination(lat, lon, dist_deg, az_deg):
    la1, lo1, d, a = map(math.radians, (lat, lon, dist_deg, az_deg))
    la2 = math.asin(math.sin(la1) * math.cos(d) + math.cos(la1) * math.sin(d) * math.cos(a))
    lo2 = lo1 + math.atan2(math.sin(a) * math.sin(d) * math.cos(la1), math.cos(d) - math.sin(la1) * math.sin(la2))
    return math.degrees(la2), (math.degrees(lo2) + 540) % 360 - 180


def make_events(rng, n: int, outside_fraction: float = 0.12) -> list[dict]:
    """Events around the network: origin times >= 1 h apart (windows inside one UTC day), depths
    10-600 km, Mw 5.5-7 (Gutenberg-Richter, b = 1), distances mostly 33-87 deg from the centre."""
    from obspy import UTCDateTime

    t = UTCDateTime(T0)
    out = []
    for k in range(n):
        t += rng.uniform(3600, 30 * 3600)
        sod = t - UTCDateTime(t.date)
        if not 300 <= sod <= 23.5 * 3600:  # keep every window inside its UTC day
            t = UTCDateTime(t.date) + 86400 + rng.uniform(600, 7200)
        if rng.random() < outside_fraction:
            dist = rng.uniform(25, 29.0) if rng.random() < 0.5 else rng.uniform(91, 95)
        else:
            dist = rng.uniform(33, 87)
        lat, lon = _destination(CENTER_LAT, CENTER_LON, dist, rng.uniform(0, 360))
        depth = 10 + 590 * rng.random() ** 3
        mw = 5.5 - math.log10(1 - rng.random() * (1 - 10 ** -1.5))
        out.append({"index": k, "time": t, "latitude": lat, "longitude": lon, "depth_km": depth, "mw": mw,
                    "stf_s": rng.uniform(1, 6), "stf_rise": rng.uniform(0.15, 0.45),
                    "a_pp": -rng.uniform(0.2, 0.7), "a_sp": rng.uniform(0.1, 0.5)})
    return out


def _event_table(event: dict, distances: np.ndarray) -> dict:
    """TauP (iasp91) P time, slowness and pP/sP delays on a distance grid of one event."""
    from obspy.taup import TauPyModel

    taup = TauPyModel(TAUP_MODEL)
    rows = []
    for d in distances:
        arr = taup.get_travel_times(source_depth_in_km=event["depth_km"], distance_in_degree=float(d),
                                    phase_list=["P", "pP", "sP"])
        first = {}
        for a in arr:
            first.setdefault(a.name, a)
        if "P" not in first:
            rows.append((np.nan,) * 4)
            continue
        tp = first["P"].time
        rows.append((tp, first["P"].ray_param / R_EARTH_KM,
                     first["pP"].time - tp if "pP" in first else np.nan,
                     first["sP"].time - tp if "sP" in first else np.nan))
    return {"distance": distances, "table": np.array(rows)}


# ============================================================================ noise

_PETERSON = None


def noise_psd_displacement(f: np.ndarray, level: float) -> np.ndarray:
    """Displacement PSD (m^2/Hz) between Peterson's NLNM (level 0) and NHNM (level 1), interpolated in dB."""
    global _PETERSON
    if _PETERSON is None:
        from obspy.signal.spectral_estimation import get_nhnm, get_nlnm

        pl, dl = get_nlnm()
        ph, dh = get_nhnm()
        _PETERSON = (pl, dl, ph, dh)
    pl, dl, ph, dh = _PETERSON
    fc = np.clip(f, 0.02, 9.0)
    per = 1 / fc
    lo = np.interp(np.log(per), np.log(pl), dl)
    hi = np.interp(np.log(per), np.log(ph[::-1] if ph[0] > ph[-1] else ph), dh[::-1] if ph[0] > ph[-1] else dh)
    db = lo + level * (hi - lo)
    return 10 ** (db / 10) / (2 * np.pi * fc) ** 4


def coloured_noise(rng, n: int, fs: float, level: float) -> np.ndarray:
    f = np.fft.rfftfreq(n, 1 / fs)
    spec = np.fft.rfft(rng.standard_normal(n)) * np.sqrt(noise_psd_displacement(f, level) * fs / 2)
    return np.fft.irfft(spec, n)


def _band(x, fs, lo=0.03, hi=1.0):
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, [lo, hi], btype="band", fs=fs, output="sos")
    return sosfiltfilt(sos, x, axis=-1)


# ============================================================================ one station

def _wavelet_spectrum(f, ev):
    """Trapezoid source (rise, flat, fall; peak 1 on the TWS_DT_S grid of the unit-spike response)
    with pP and sP (delays in ev)."""
    rise = ev["stf_rise"] * ev["stf_s"]
    a, b = rise, ev["stf_s"] - rise
    w = np.sinc(f * a) * np.sinc(f * b) * np.exp(-1j * np.pi * f * (a + b)) * (b / TWS_DT_S)
    depth = 1.0 + 0 * f
    for amp, key in ((ev["a_pp"], "pp_delay"), (ev["a_sp"], "sp_delay")):
        if np.isfinite(ev[key]):
            depth = depth + amp * np.exp(-2j * np.pi * f * ev[key])
    return w * depth


def synthesize_station(job: dict) -> dict:
    """All event windows of one station: telewavesim responses (cached per slowness bin), source,
    noise; writes the station's SDS files. Returns the truth row and per-trace rows."""
    from obspy import Stream, Trace, UTCDateTime

    p, npts = job["params"], job["npts"]
    rng = np.random.default_rng(job["seed"])
    layers = flat_layers(p)
    n_out = round((BEFORE_P_S + AFTER_P_S) * FS_HZ)
    nfft = max(2 * npts, 8192)          # zero padding at dt = TWS_DT_S: window and depth phases never wrap
    f = np.fft.rfftfreq(nfft, TWS_DT_S)
    nfft_out = round(nfft * TWS_DT_S * FS_HZ)   # the same duration at FS_HZ (band-limited upsampling)
    lead = round(RESPONSE_LEAD_S / TWS_DT_S)
    t_resp = np.arange(npts) * TWS_DT_S - RESPONSE_LEAD_S   # lag after P once rolled by the lead
    keep = npts * TWS_DT_S - RESPONSE_LEAD_S - 50.0   # keep the response to this lag after P, taper 20 s
    taper = np.clip((keep - t_resp) / 20.0, 0, 1)
    cache = {}
    traces, rows = Stream(), []
    gain = job["gain"]
    for ev in job["events"]:
        key = round(ev["slowness"] / SLOWNESS_BIN_S_PER_KM)
        if key not in cache:
            # a P slower than the half-space (p > 1/vp there, distances near 30 deg) would be evanescent
            slow = min(key * SLOWNESS_BIN_S_PER_KM, 0.995 / layers[:, 1].max())
            r, z = telewavesim_rz(layers, slow, npts)
            r, z = np.roll(r, lead), np.roll(z, lead)   # P at RESPONSE_LEAD_S: its tails before P stay whole
            cache[key] = (np.fft.rfft(r * taper, nfft), np.fft.rfft(z * taper, nfft))
        rs, zs = cache[key]
        t_p = UTCDateTime(ev["p_time"])
        t0 = UTCDateTime(math.ceil((t_p.timestamp - BEFORE_P_S) * FS_HZ) / FS_HZ)
        lag = t_p - t0                  # P after the first sample (s), fractional
        shift = _wavelet_spectrum(f, ev) * np.exp(-2j * np.pi * f * (lag - RESPONSE_LEAD_S))
        comp = []
        for spec in (zs, rs):
            full = np.zeros(nfft_out // 2 + 1, dtype=complex)
            full[:len(spec)] = spec * shift
            comp.append(np.fft.irfft(full, nfft_out)[:n_out] * (nfft_out / nfft))
        zsig, rsig = comp[0] * ev["amplitude_m"], comp[1] * ev["amplitude_m"]
        baz = math.radians(ev["back_azimuth"])
        nsig, esig = -rsig * math.cos(baz), -rsig * math.sin(baz)
        noise = [coloured_noise(rng, n_out, FS_HZ, p["noise_level"]) for _ in range(3)]
        scale = job["noise_rms_m"] / np.std(_band(noise[0], FS_HZ)[int(30 * FS_HZ):-int(30 * FS_HZ)])
        noise = [noise[0] * scale, noise[1] * scale * p["horizontal_noise"], noise[2] * scale * p["horizontal_noise"]]
        i0 = round(lag * FS_HZ)
        zb = _band(zsig, FS_HZ)
        snr = float(np.sqrt(np.mean(zb[i0 - 40:i0 + 360] ** 2)) / job["noise_rms_m"])
        for cha, sig, nz in zip(CHANNELS, (zsig, nsig, esig), noise, strict=True):
            counts = np.round((sig + nz) * gain).astype(np.int32)
            tr = Trace(counts, header={"network": NETWORK, "station": job["station"], "location": LOCATION,
                                       "channel": cha, "sampling_rate": FS_HZ, "starttime": t0})
            traces.append(tr)
        rows.append({"station": job["station"], "event": ev["event_id"], "distance_deg": round(ev["distance"], 3),
                     "back_azimuth_deg": round(ev["back_azimuth"], 2), "slowness_s_per_km": round(ev["slowness"], 5),
                     "depth_km": round(ev["depth_km"], 1), "mw": round(ev["mw"], 2), "in_range": ev["in_range"],
                     "snr_z": round(snr, 2)})
    _write_sds(traces, Path(job["sds"]))
    in_range = [r["snr_z"] for r in rows if r["in_range"]]
    return {"rows": rows, "n_layers": len(layers), "n_responses": len(cache),
            "median_snr": float(np.median(in_range)) if in_range else float("nan")}


def _write_sds(stream, root: Path):
    groups: dict = {}
    for tr in stream:
        s = tr.stats
        groups.setdefault((s.channel, s.starttime.year, s.starttime.julday), []).append(tr)
    from obspy import Stream

    for (cha, year, doy), trs in groups.items():
        s = trs[0].stats
        path = root / f"{year}" / s.network / s.station / f"{cha}.D" / \
            f"{s.network}.{s.station}.{s.location}.{cha}.D.{year}.{doy:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Stream(sorted(trs, key=lambda t: t.stats.starttime)).write(str(path), format="MSEED", encoding="STEIM2",
                                                                    reclen=512)


# ============================================================================ make

def draw_network(n_stations: int, seed: int, n_catalog: int | None = None, npts: int = 4096,
                 events_range=(30, 80), few_events=(8, 15), few_fraction: float = 0.08,
                 overrides: dict | None = None, outside_fraction: float = 0.12) -> tuple[list[dict], list[dict]]:
    """Station parameters and events (no waveforms yet). ``overrides`` {station_index: {key: value}}
    replaces drawn station parameters (tests use it for a station with a strong X)."""
    rng = np.random.default_rng(seed)
    n_catalog = n_catalog or max(int(events_range[1] * 1.6), 8)
    events = make_events(rng, n_catalog, outside_fraction)
    x_flags = np.zeros(n_stations, dtype=bool)
    x_flags[rng.permutation(n_stations)[: n_stations // 2]] = True
    stations = []
    for i in range(n_stations):
        p = station_parameters(rng, bool(x_flags[i]))
        lat = CENTER_LAT + rng.uniform(-4, 4)
        lon = CENTER_LON + rng.uniform(-5, 5)
        few = rng.random() < few_fraction
        lo, hi = few_events if few else events_range
        p.update(station=f"S{i + 1:03d}", latitude=lat, longitude=lon, elevation_m=float(rng.uniform(0, 1500)),
                 n_target=int(rng.integers(lo, hi + 1)), noise_level=float(rng.uniform(0.05, 0.7)),
                 base_snr=float(np.exp(rng.uniform(np.log(2), np.log(25)))),
                 horizontal_noise=float(rng.uniform(1.0, 1.6)), gain=float(rng.uniform(3e8, 2e9)),
                 n_outside=int(rng.integers(1, 4)), seed=int(rng.integers(2**31)))
        p.update((overrides or {}).get(i, {}))
        stations.append(p)
    return stations, events


def _event_tables(events, stations, workers):
    from obspy.geodetics import locations2degrees

    jobs = []
    for ev in events:
        d = [locations2degrees(s["latitude"], s["longitude"], ev["latitude"], ev["longitude"]) for s in stations]
        grid = np.arange(math.floor(min(d) * 2) / 2, math.ceil(max(d) * 2) / 2 + 0.51, 0.5)
        jobs.append((ev, grid))
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.starmap(_event_table, jobs)
    return [_event_table(ev, g) for ev, g in jobs]


def make(out: Path, n_stations: int = 100, seed: int = 1, workers: int = 2, n_catalog: int | None = None,
         npts: int = 4096, events_range=(30, 80), few_events=(8, 15), overrides: dict | None = None,
         outside_fraction: float = 0.12, log=print) -> dict:
    from obspy import UTCDateTime
    from obspy.geodetics import gps2dist_azimuth, locations2degrees

    t_start = time.time()
    out = Path(out)
    archive, truth_dir = out / "archive", out / "truth"
    archive.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    stations, events = draw_network(n_stations, seed, n_catalog, npts, events_range, few_events, overrides=overrides,
                                    outside_fraction=outside_fraction)
    log(f"[make] {n_stations} stations, {len(events)} catalogue events; TauP ({TAUP_MODEL}) tables ...")
    tables = _event_tables(events, stations, workers)
    for ev in events:
        ev["event_id"] = ev["time"].strftime("%Y%m%dT%H%M%S")
    rng = np.random.default_rng(seed + 7919)
    jobs = []
    for s in stations:
        cands = []
        for ev, tab in zip(events, tables, strict=True):
            d = locations2degrees(s["latitude"], s["longitude"], ev["latitude"], ev["longitude"])
            _, baz, _ = gps2dist_azimuth(s["latitude"], s["longitude"], ev["latitude"], ev["longitude"])
            vals = [np.interp(d, tab["distance"], tab["table"][:, j]) for j in range(4)]
            if not np.isfinite(vals[0]) or not np.isfinite(vals[1]):
                continue
            cands.append({**{k: v for k, v in ev.items() if k != "time"}, "distance": d, "back_azimuth": baz,
                          "p_time": str(ev["time"] + vals[0]), "slowness": vals[1], "pp_delay": vals[2],
                          "sp_delay": vals[3], "in_range": bool(30 <= d <= 90)})
        inside = [c for c in cands if c["in_range"]]
        outside = [c for c in cands if not c["in_range"]]
        pick = [inside[i] for i in rng.permutation(len(inside))[: s["n_target"]]]
        pick += [outside[i] for i in rng.permutation(len(outside))[: s["n_outside"]]]
        pick.sort(key=lambda c: c["p_time"])
        # signal amplitude (m of displacement) from magnitude and distance; station noise from its base SNR
        for c in pick:
            c["amplitude_m"] = 1e-6 * 10 ** (0.6 * (c["mw"] - 6.0)) * (60.0 / c["distance"])
        noise_rms = 1e-6 * 0.35 / s["base_snr"]
        jobs.append({"station": s["station"], "params": s, "events": pick, "npts": npts, "seed": s["seed"],
                     "sds": str(archive / "SDS"), "gain": s["gain"], "noise_rms_m": noise_rms})
    log(f"[make] TauP done ({time.time() - t_start:.0f} s); synthesizing {sum(len(j['events']) for j in jobs)} "
        f"event-station windows with telewavesim on {workers} process(es) ...")
    results = []
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(workers) if workers > 1 else None
    it = pool.imap(synthesize_station, jobs) if pool else map(synthesize_station, jobs)
    for k, res in enumerate(it, 1):
        results.append(res)
        if k % max(1, len(jobs) // 20) == 0 or k == len(jobs):
            log(f"[make] {k}/{len(jobs)} stations ({time.time() - t_start:.0f} s)", flush=True)
    if pool:
        pool.close()
        pool.join()
    _write_inventory(stations, archive / "stations.xml")
    _write_catalog(events, archive / "events.xml")
    (archive / "README.txt").write_text(
        "SYNTHETIC DATA - NOT REAL RECORDINGS.\n"
        f"Network {NETWORK}: {n_stations} synthetic stations made by xdisc's tests/benchmarks/independent_network.py\n"
        f"(seed {seed}) with telewavesim (Kennett reflectivity), TauP {TAUP_MODEL} travel times, a trapezoid source\n"
        "with pP and sP, and noise shaped like Peterson's NLNM/NHNM. SDS miniSEED in counts (StationXML gives\n"
        f"the sensitivity, counts per metre of displacement), {FS_HZ:g} Hz, windows {BEFORE_P_S:g} s before to "
        f"{AFTER_P_S:g} s after P.\n")
    truth_rows, trace_rows = [], []
    for s, job, res in zip(stations, jobs, results, strict=True):
        n_in = sum(e["in_range"] for e in job["events"])
        truth_rows.append({
            "station": f"{NETWORK}.{s['station']}", "x_present": int(s["x_present"]),
            "x_depth_km": _r(s["x_depth_km"], 1), "x_dvs": _r(s["x_dvs"], 4), "x_dvp": _r(s["x_dvp"], 4),
            "x_drho": _r(s["x_drho"], 4), "x_gradient_km": _r(s["x_gradient_km"], 1), "x_style": s["x_style"],
            "decoy": s["decoy"], "decoy_depth_km": _r(s["decoy_top_km"], 1), "decoy_dvs": _r(s["decoy_dvs"], 4),
            "moho_km": _r(s["moho_km"], 1), "vpvs": _r(s["vpvs"], 3), "sediment_km": _r(s["sediment_km"], 2),
            "d410_km": _r(s["d410_km"], 1), "d660_km": _r(s["d660_km"], 1),
            "noise_level": _r(s["noise_level"], 3), "base_snr": _r(s["base_snr"], 2),
            "median_snr_z": _r(res["median_snr"], 2), "noise_rms_m": f"{job['noise_rms_m']:.3e}",
            "n_events": n_in, "n_events_outside": len(job["events"]) - n_in,
            "latitude": _r(s["latitude"], 4), "longitude": _r(s["longitude"], 4), "gain": f"{s['gain']:.4e}",
            "n_layers": res["n_layers"], "n_responses": res["n_responses"]})
        trace_rows += res["rows"]
    _write_csv(truth_dir / "truth.csv", truth_rows)
    _write_csv(truth_dir / "traces.csv", trace_rows)
    t_all = [e["time"] for e in events]
    info = {"stations": n_stations, "seed": seed, "catalogue_events": len(events), "npts": npts,
            "windows": len(trace_rows), "starttime": str(UTCDateTime(min(t_all).date)),
            "endtime": str(UTCDateTime(max(t_all).date) + 2 * 86400), "sds": str(archive / "SDS"),
            "inventory": str(archive / "stations.xml"), "events": str(archive / "events.xml"),
            "taup_model": TAUP_MODEL, "reference_model": REFERENCE_MODEL, "sampling_rate_hz": FS_HZ,
            "generation_s": round(time.time() - t_start, 1)}
    (truth_dir / "network.json").write_text(json.dumps(info, indent=1))
    log(f"[make] done: {len(trace_rows)} windows in {info['generation_s']} s -> {out}")
    return info


def _r(x, nd):
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), nd)


def _write_csv(path: Path, rows: list[dict]):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _write_inventory(stations, path: Path):
    from obspy import UTCDateTime
    from obspy.core.inventory import Channel, Inventory, Network, Response, Station
    from obspy.core.inventory.response import InstrumentSensitivity

    start = UTCDateTime("2020-01-01")
    net = Network(NETWORK, description="SYNTHETIC independent test network (telewavesim); not real data",
                  start_date=start)
    for s in stations:
        sta = Station(s["station"], s["latitude"], s["longitude"], s["elevation_m"], start_date=start,
                      site=None)
        for cha, az, dip in zip(CHANNELS, (0.0, 0.0, 90.0), (-90.0, 0.0, 0.0), strict=True):
            resp = Response(instrument_sensitivity=InstrumentSensitivity(
                value=s["gain"], frequency=1.0, input_units="M", output_units="COUNTS",
                input_units_description="displacement in metres", output_units_description="digital counts"))
            sta.channels.append(Channel(cha, LOCATION, s["latitude"], s["longitude"], s["elevation_m"], 0.0,
                                        azimuth=az, dip=dip, sample_rate=FS_HZ, start_date=start, response=resp))
        net.stations.append(sta)
    Inventory(networks=[net], source="xdisc independent_network.py (synthetic)").write(str(path),
                                                                                       format="STATIONXML")


def _write_catalog(events, path: Path):
    from obspy.core.event import Catalog, Event, Magnitude, Origin, ResourceIdentifier

    cat = Catalog(description="SYNTHETIC events of the XS test network")
    for ev in events:
        rid = f"smi:local/xs/{ev['index']:04d}"
        o = Origin(resource_id=ResourceIdentifier(rid + "/origin"), time=ev["time"], latitude=ev["latitude"],
                   longitude=ev["longitude"], depth=ev["depth_km"] * 1000.0)
        m = Magnitude(resource_id=ResourceIdentifier(rid + "/mag"), mag=round(ev["mw"], 2), magnitude_type="Mw",
                      origin_id=o.resource_id)
        cat.append(Event(resource_id=ResourceIdentifier(rid), origins=[o], magnitudes=[m],
                         preferred_origin_id=o.resource_id, preferred_magnitude_id=m.resource_id,
                         event_type="earthquake"))
    cat.write(str(path), format="QUAKEML")


# ============================================================================ score

SNAKEFILE = REPO / "Snakefile"


def network_config(info: dict) -> dict:
    """What a user writes for this archive (layered over config/config.yaml and config/full.yaml)."""
    return {"data": {"source": "local",
                     "local": {"waveforms": info["sds"], "format": "sds", "inventory": info["inventory"],
                               "events": info["events"]},
                     "stations": {"network": NETWORK, "station": "*", "channel": "BH?",
                                  "starttime": info["starttime"][:10], "endtime": info["endtime"][:10]}},
            "rf_processing": {"response": "gain"}}


def run_pipeline(network: Path, workdir: Path, extra: list[str], cores: int = 2, log=print,
                 detectability: bool = True, stacking_only: bool = False) -> float:
    """A fresh working folder with the repository's config files and my_network.yaml; runs Snakemake
    for results/verdicts/stations.csv. ``detectability`` False: my_network.yaml turns the injection tests off
    (they change neither cnn.csv nor stacking.csv; about 25 min per 100 stations). ``stacking_only``: the
    target is results/verdicts/stacking.csv (receiver functions, stacks and the stacking verdicts; no CNN,
    no injection tests: about 5 instead of 20 min per 100 stations). Returns the wall time (s)."""
    import shutil

    import yaml

    info = json.loads((Path(network) / "truth" / "network.json").read_text())
    workdir.mkdir(parents=True, exist_ok=True)
    if any(workdir.iterdir()):
        raise SystemExit(f"{workdir} is not empty: use a new folder, or --reuse to score what is there")
    (workdir / "config").mkdir()
    for name in ("config.yaml", "full.yaml"):
        shutil.copy(REPO / "config" / name, workdir / "config" / name)
    mine = network_config(info)
    if not detectability or stacking_only:
        mine["detectability"] = {"enabled": False}
    (workdir / "my_network.yaml").write_text(yaml.safe_dump(mine, sort_keys=False))
    target = "results/verdicts/stacking.csv" if stacking_only else "results/verdicts/stations.csv"
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", str(cores),
           "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--configfile", "config/config.yaml", "config/full.yaml", "my_network.yaml", *extra]
    log("[score] " + " ".join(cmd))
    t0 = time.time()
    with open(workdir / "snakemake.log", "w") as fh:
        rc = subprocess.run(cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.time() - t0
    (workdir / "run.json").write_text(json.dumps({"command": cmd, "returncode": rc, "wall_s": round(wall, 1)}))
    log(f"[score] snakemake exited {rc} after {wall:.0f} s (log: {workdir / 'snakemake.log'})")
    if rc:
        raise SystemExit(f"snakemake failed (exit {rc}); see {workdir / 'snakemake.log'}")
    return wall


def _classes(truth):
    """Class columns of the breakdowns."""
    import pandas as pd

    t = truth.copy()
    t["dvs_class"] = pd.cut(t["x_dvs"].astype(float), [-1, 1e-9, 0.03, 0.04, 1],
                            labels=["no X", "2-3 %", "3-4 %", "4-5 %"]).astype(str)
    t["depth_class"] = pd.cut(t["x_depth_km"].astype(float), [0, 283.3, 316.7, 400],
                              labels=["250-283 km", "283-317 km", "317-350 km"]).astype(str)
    t.loc[t["x_present"] == 0, "depth_class"] = "no X"
    g = t["x_gradient_km"].astype(float)
    t["sharpness"] = np.where(t["x_present"] == 0, "no X", np.where(g > 0, "gradient 10-20 km", "sharp"))
    t["x_style"] = t["x_style"].fillna("").replace({"": "no X", "taper": "taper (410 kept)",
                                                    "to410": "to 410 (410 weakened)"})
    t["snr_class"] = pd.cut(t["median_snr_z"].astype(float), [0, 3, 10, 1e9],
                            labels=["median SNR < 3", "3-10", ">= 10"]).astype(str)
    t["events_class"] = pd.cut(t["n_events"].astype(float), [-1, 15, 40, 1e9],
                               labels=["<= 15 events", "16-40", "> 40"]).astype(str)
    # issue 21's classes: the Moho depth, and X at the window's edges (true depth: the middle of a gradient)
    t["moho_class"] = pd.cut(t["moho_km"].astype(float), [0, 30, 50, 1e9],
                             labels=["Moho 20-30 km", "Moho 30-50 km", "Moho 50-70 km"]).astype(str)
    t["edge_band"] = pd.cut(t["x_depth_km"].astype(float), [0, 260, 295, 305, 340, 1e9],
                            labels=["250-260 km", "260-295 km", "295-305 km", "305-340 km", "340-350 km"]).astype(str)
    t.loc[t["x_present"] == 0, "edge_band"] = "no X"
    return t


BREAKDOWNS = ("dvs_class", "depth_class", "sharpness", "x_style", "snr_class", "events_class", "decoy", "moho_class",
              "edge_band")


def _rates(truth_x, verdict) -> dict:
    truth_x = np.asarray(truth_x, dtype=bool)
    v = np.asarray(verdict, dtype=object)
    correct = ((v == "present") & truth_x) | ((v == "absent") & ~truth_x)
    decided = np.isin(v, ["present", "absent"])
    n = len(v)
    out = {"n": int(n), "accuracy": _f(correct.mean()) if n else None,
           "accuracy_decided": _f(correct[decided].mean()) if decided.any() else None,
           "undetermined": _f((~decided).mean()) if n else None}
    if (~truth_x).any():
        out["false_alarm"] = _f((v[~truth_x] == "present").mean())
    if truth_x.any():
        out["miss"] = _f((v[truth_x] != "present").mean())
    return out


def _f(x):
    return None if x is None or not np.isfinite(x) else round(float(x), 3)


def score(network: Path, workdir: Path) -> dict:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    truth = _classes(pd.read_csv(Path(network) / "truth" / "truth.csv"))
    res = Path(workdir) / "results" / "verdicts"
    stack = pd.read_csv(res / "stacking.csv", dtype={"station": str})
    methods = ("stacking", "cnn") if (res / "cnn.csv").exists() else ("stacking",)  # a --stacking-only run
    cnn = pd.read_csv(res / "cnn.csv", dtype={"station": str}) if "cnn" in methods else pd.DataFrame(
        {c: pd.Series(dtype=float if c.startswith("prob") else object)
         for c in ("station", "verdict", "probability", "probability_all")})
    t = truth.merge(stack[["station", "verdict", "x_depth_km", "n_rf"]].rename(
        columns={"verdict": "stacking", "x_depth_km": "stack_depth_km", "n_rf": "n_rf"}), on="station", how="left",
        suffixes=("", "_stack"))
    t = t.merge(cnn[["station", "verdict", "probability", "probability_all"]].rename(columns={"verdict": "cnn"}),
                on="station", how="left", suffixes=("", "_cnn"))
    t["stacking"] = t["stacking"].fillna("missing")
    t["cnn"] = t["cnn"].fillna("missing")
    x = t["x_present"].to_numpy() == 1
    out = {"network": str(network), "workdir": str(workdir), "n_stations": len(t),
           "n_missing": {m: int((t[m] == "missing").sum()) for m in methods}, "methods": {}}
    for m in methods:
        r = _rates(x, t[m])
        if m == "cnn":
            # "auc": of the mean over the station's images, as recorded since 2026-11-30; "auc_image0": of the
            # verdict's own statistic, image 0's probability (every receiver function)
            for key, column in (("auc", "probability"), ("auc_image0", "probability_all")):
                score = t[column].astype(float)
                scored = score.notna().to_numpy()
                r[key] = _f(roc_auc_score(x[scored], score[scored])) if len(set(x[scored])) == 2 else None
            prob = t["probability"].astype(float)
            ok = prob.notna().to_numpy()
            r["reliability"] = _reliability(x[ok], prob[ok].to_numpy(), Path(workdir))
        else:
            tp = (t["stacking"] == "present") & x
            err = (t.loc[tp, "stack_depth_km"].astype(float) - t.loc[tp, "x_depth_km"].astype(float)).abs()
            r["median_abs_depth_error_km"] = _f(err.median()) if len(err) else None
            r["n_true_positive"] = int(tp.sum())
        r["by"] = {}
        for col in BREAKDOWNS:
            r["by"][col] = {str(k): _rates(g["x_present"] == 1, g[m]) for k, g in t.groupby(col)}
        out["methods"][m] = r
    det = _detectability_check(t, Path(workdir))
    if det:
        out["detectability"] = det
    columns = ["station", "x_present", "x_depth_km", "x_dvs", "x_gradient_km", "moho_km", "sediment_km", "decoy",
               "median_snr_z", "n_events", "n_rf", "stacking", "stack_depth_km", "cnn", "probability"]
    columns += [c for c in BREAKDOWNS if c not in columns]
    out["per_station"] = t[columns].astype(object).where(t[columns].notna(), None).to_dict("records")
    return out


def _interval(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson ("exact") 95 % interval of a rate k / n; (0, 1) without any station."""
    from scipy.stats import binomtest

    if n == 0:
        return 0.0, 1.0
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def tally(paths: list[Path], out=print) -> dict:
    """The stations of several scored draws (``score``'s JSON) pooled: per method the stations right, X found,
    false alarms and undetermined over all of them (95 % intervals), and X found and false alarms by class."""
    import pandas as pd

    scores = [json.loads(Path(path).read_text()) for path in paths]
    methods = [m for m in scores[0]["methods"] if all(m in s["methods"] for s in scores)]  # those of every draw
    frames = []
    for path, s in zip(paths, scores, strict=True):
        table = pd.DataFrame(s["per_station"])
        missing = [c for c in BREAKDOWNS if c not in table]
        if missing:
            raise SystemExit(f"{path} has no {', '.join(missing)}: score it again with --reuse")
        left_out = [m for m in s["methods"] if m not in methods]
        if left_out:
            out(f"[tally] {path}: {', '.join(left_out)} left out (not scored in every draw; a --stacking-only run "
                "has the stacking alone)")
        frames.append(table.assign(draw=str(path)))
    t = pd.concat(frames, ignore_index=True)
    x = t["x_present"].astype(int).to_numpy() == 1
    n_x, n_no_x = int(x.sum()), int((~x).sum())
    result = {"draws": [str(p) for p in paths], "n_stations": len(t), "n_x": n_x, "methods": {}}
    out(f"{len(paths)} draws, {len(t)} stations ({n_x} with X)")
    for m in methods:
        v = t[m].to_numpy(dtype=object)
        right = int((((v == "present") & x) | ((v == "absent") & ~x)).sum())
        found = int(((v == "present") & x).sum())
        fa = int(((v == "present") & ~x).sum())
        und = int((~np.isin(v, ["present", "absent"])).sum())
        lo, hi = _interval(fa, n_no_x)
        r = {"right": right, "x_found": found, "false_alarms": fa, "undetermined": und,
             "accuracy": _f(right / len(v)), "false_alarm_rate": _f(fa / max(1, n_no_x)),
             "false_alarm_interval": [_f(lo), _f(hi)], "by": {}}
        out(f"{m:>9s}: right {right} ({100 * right / len(v):.1f} %), X found {found} of {n_x}, false alarms {fa} "
            f"of {n_no_x} ({100 * fa / max(1, n_no_x):.1f} %, 95 % {100 * lo:.1f}-{100 * hi:.1f} %), "
            f"undetermined {und} ({100 * und / len(v):.1f} %)")
        for col in ("dvs_class", "moho_class", "edge_band", "snr_class", "events_class", "decoy"):
            cells = []
            r["by"][col] = {}
            for k, g in t.groupby(col):
                gx = g["x_present"].astype(int).to_numpy() == 1
                gv = g[m].to_numpy(dtype=object)
                row = {"n_x": int(gx.sum()), "x_found": int(((gv == "present") & gx).sum()),
                       "n_no_x": int((~gx).sum()), "false_alarms": int(((gv == "present") & ~gx).sum())}
                r["by"][col][str(k)] = row
                text = []
                if row["n_x"]:
                    text.append(f"X {row['x_found']}/{row['n_x']} ({100 * row['x_found'] / row['n_x']:.0f} %)")
                if row["n_no_x"]:
                    text.append(f"FA {row['false_alarms']}/{row['n_no_x']} "
                                f"({100 * row['false_alarms'] / row['n_no_x']:.1f} %)")
                cells.append(f"{k}: {', '.join(text)}")
            out(f"    by {col}: " + "; ".join(cells))
        result["methods"][m] = r
    return result


def _detectability_check(t, workdir: Path) -> dict | None:
    """The per-station injection tests (results/detectability) against the truth: at each station with X,
    the detection probability its curve predicts for the true depth, gradient and dVs, against whether
    the method did call it present; at stations without X, the predicted false-alarm rate against the
    false alarms; and what 'not detectable' did to the absent verdicts of stations.csv."""
    import pandas as pd
    import xarray as xr

    folder = workdir / "results" / "detectability"
    if not folder.is_dir():
        return None
    out = {}
    found = {m: ([], [], [], []) for m in ("stacking", "cnn")}  # predicted, seen; at no X: predicted, seen
    # one file per station, in the folder of its batch (rule assess_detectability; flat in runs before batches)
    files = {p.stem: p for p in [*folder.glob("*.nc"), *folder.glob("*/*.nc")]}
    for _, row in t.iterrows():
        path = files.get(row["station"])
        if path is None:
            continue
        with xr.open_dataset(path) as ds:
            for m, (pred, seen, fa_pred, fa_seen) in found.items():
                if row[m] == "missing" or f"detection_{m}" not in ds or ds.attrs["n_rf"] == 0:
                    continue
                if row["x_present"] == 1:
                    g = 0.0 if not float(row["x_gradient_km"]) > 0 else float(row["x_gradient_km"])
                    curve = ds[f"detection_{m}"].sel(depth=float(row["x_depth_km"]), method="nearest")
                    curve = curve.sel(gradient=g, method="nearest").values
                    if np.all(np.isfinite(curve)):
                        pred.append(float(np.interp(float(row["x_dvs"]), ds["dvs"].values, curve)))
                        seen.append(row[m] == "present")
                elif np.isfinite(float(ds[f"false_alarm_rate_{m}"])):
                    fa_pred.append(float(ds[f"false_alarm_rate_{m}"]))
                    fa_seen.append(row[m] == "present")
    for m, (pred, seen, fa_pred, fa_seen) in found.items():
        pred, seen = np.array(pred), np.array(seen, bool)
        bins = []
        for lo, hi in ((0.0, 0.5), (0.5, 0.9), (0.9, 1.01)):
            k = (pred >= lo) & (pred < hi)
            bins.append({"predicted": f"{lo:.1f}-{min(hi, 1.0):.1f}", "n": int(k.sum()),
                         "mean_predicted": _f(pred[k].mean()) if k.any() else None,
                         "detected": _f(seen[k].mean()) if k.any() else None})
        out[m] = {"n_x": len(pred), "mean_predicted_detection": _f(pred.mean()) if len(pred) else None,
                  "detected": _f(seen.mean()) if len(seen) else None, "bins": bins,
                  "n_no_x": len(fa_pred), "mean_predicted_false_alarm": _f(np.mean(fa_pred)) if fa_pred else None,
                  "false_alarms": _f(np.mean(fa_seen)) if fa_seen else None}
    stations = workdir / "results" / "verdicts" / "stations.csv"
    if stations.is_file():
        st = pd.read_csv(stations, dtype={"station": str}).merge(t[["station", "x_present"]], on="station")
        for m in ("stacking", "cnn"):
            v = st[f"{m}_verdict"]
            raw = t.set_index("station").loc[st["station"], m].to_numpy()
            was_absent = raw == "absent"
            out[m]["absent_before"] = int(was_absent.sum())
            out[m]["absent_before_without_x"] = int((was_absent & (st["x_present"] == 0).to_numpy()).sum())
            out[m]["absent_after"] = int((v == "absent").sum())
            out[m]["absent_after_without_x"] = int(((v == "absent") & (st["x_present"] == 0)).sum())
            out[m]["not_detectable"] = int((v == "not detectable").sum())
    return out


def _reliability(x: np.ndarray, prob: np.ndarray, workdir: Path, n_bins: int = 5) -> dict:
    """Reliability of the CNN's station probabilities against the truth (5 bins: about 20 stations
    each at 100 stations), its ECE, and the diagram in WORKDIR/independent_reliability.png."""
    from xdisc.core.metrics import expected_calibration_error, reliability
    from xdisc.report.ml_figures import plot_reliability

    bins = reliability(x.astype(int), prob, n_bins)
    ece = expected_calibration_error(x.astype(int), prob, n_bins)
    plot_reliability(bins, workdir / "independent_reliability.png", ece,
                     title="Reliability of the CNN's station probability (independent network)")
    return {"ece": _f(ece), "edges": [round(float(e), 2) for e in bins.edges],
            "mean_probability": [_f(v) for v in bins.mean_prob], "frequency_of_x": [_f(v) for v in bins.frequency],
            "counts": [int(c) for c in bins.counts]}


def print_score(s: dict, out=print):
    out(f"stations: {s['n_stations']}  (missing from the tables: {s['n_missing']})")
    keys = [("accuracy", "accuracy (undetermined = wrong)"), ("accuracy_decided", "accuracy among decided"),
            ("false_alarm", "false-alarm rate (present at no-X)"), ("miss", "miss rate (X not called present)"),
            ("undetermined", "undetermined fraction"), ("auc", "AUC of CNN probability (mean)"),
            ("auc_image0", "AUC of CNN image 0 (the verdict's)"),
            ("median_abs_depth_error_km", "median |depth error| at TP (km)"), ("n_true_positive", "true positives")]
    methods = list(s["methods"])
    out(f"{'':40s}" + "".join(f"{m:>10s}" for m in methods))
    for k, label in keys:
        vals = [s["methods"][m].get(k) for m in methods]
        out(f"{label:40s}" + "".join(f"{'-' if v is None else v:>10}" for v in vals))
    rel = s["methods"].get("cnn", {}).get("reliability")
    if rel:
        out(f"-- reliability of the CNN probability (ECE {rel['ece']}): bin, mean probability, frequency of X, n")
        for lo, hi, mp, fx, n in zip(rel["edges"][:-1], rel["edges"][1:], rel["mean_probability"],
                                     rel["frequency_of_x"], rel["counts"], strict=True):
            out(f"   {lo:.1f}-{hi:.1f}  {'-' if mp is None else mp:>6}  {'-' if fx is None else fx:>6}  {n:>4d}")
    det = s.get("detectability")
    if det:
        out("-- detectability (results/detectability) against the truth")
        for m, d in det.items():
            out(f"   {m}: {d['n_x']} stations with X: predicted detection {d['mean_predicted_detection']}, detected "
                f"{d['detected']}; {d['n_no_x']} without X: predicted false alarms "
                f"{d['mean_predicted_false_alarm']}, false alarms {d['false_alarms']}")
            for b in d["bins"]:
                out(f"      predicted {b['predicted']}: n={b['n']:>3d}  mean predicted {b['mean_predicted']}  "
                    f"detected {b['detected']}")
            if "absent_before" in d:
                out(f"      absent {d['absent_before']} ({d['absent_before_without_x']} right) -> {d['absent_after']} "
                    f"({d['absent_after_without_x']} right); not detectable {d['not_detectable']}")
    for col in s["methods"]["stacking"]["by"]:
        out(f"-- by {col}: n, accuracy, false alarm, miss, undetermined ({' | '.join(methods)})")
        for k in s["methods"]["stacking"]["by"][col]:
            cells = []
            for m in methods:
                r = s["methods"][m]["by"][col][k]
                cells.append(" ".join(f"{'-' if r.get(q) is None else r.get(q):>5}"
                                      for q in ("accuracy", "false_alarm", "miss", "undetermined")))
            out(f"   {k:22s} n={s['methods']['stacking']['by'][col][k]['n']:>3d}  " + "  |  ".join(cells))


# ============================================================================ command line

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="generate the network (archive + hidden truth)")
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--stations", type=int, default=100)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    m.add_argument("--catalogue-events", type=int, help="events in the catalogue (default 1.6 x the most per station)")
    m.add_argument("--npts", type=int, default=4096, help="telewavesim points at 0.1 s (periodic in npts*0.1 s)")
    m.add_argument("--noise-free", action="store_true",
                   help="the same stations and events without noise (base SNR 1e5): a diagnostic of what the "
                        "processing itself does to each station (source, deconvolution)")
    sc = sub.add_parser("score", help="run the pipeline on the network as a user would, and score both methods")
    sc.add_argument("--network", required=True, type=Path, help="folder written by 'make'")
    sc.add_argument("--workdir", required=True, type=Path, help="fresh working folder of the pipeline run")
    sc.add_argument("--reuse", action="store_true", help="score the results already in --workdir (no run)")
    sc.add_argument("--snakemake-args", default="", help="extra Snakemake arguments (one string)")
    sc.add_argument("--cores", type=int, default=2)
    sc.add_argument("--no-detectability", action="store_true",
                    help="leave out the injection tests (about 25 min per 100 stations; the scores of cnn.csv and "
                         "stacking.csv do not read them)")
    sc.add_argument("--stacking-only", action="store_true",
                    help="run the pipeline to results/verdicts/stacking.csv only and score the stacking (no CNN, no "
                         "injection tests; about 5 instead of 20 min per 100 stations)")
    sc.add_argument("--json", type=Path, help="score JSON (default WORKDIR/independent_score.json)")
    ta = sub.add_parser("tally", help="pool the stations of several scored draws (score's JSON files)")
    ta.add_argument("json", nargs="+", type=Path, help="WORKDIR/independent_score.json of each draw")
    ta.add_argument("--out", type=Path, help="write the pooled rates as JSON")
    a = ap.parse_args(argv)
    if a.cmd == "tally":
        result = tally(a.json)
        if a.out:
            a.out.write_text(json.dumps(result, indent=1))
        return
    if a.cmd == "make":
        quiet = {i: {"base_snr": 1e5} for i in range(a.stations)} if a.noise_free else None
        make(a.out, a.stations, a.seed, a.workers, a.catalogue_events, a.npts, overrides=quiet)
        return
    wall = None
    if not a.reuse:
        import shlex

        wall = run_pipeline(a.network, a.workdir, shlex.split(a.snakemake_args), a.cores,
                            detectability=not a.no_detectability, stacking_only=a.stacking_only)
    s = score(a.network, a.workdir)
    s["pipeline_wall_s"] = wall if wall is not None else json.loads(
        (a.workdir / "run.json").read_text()).get("wall_s") if (a.workdir / "run.json").exists() else None
    print_score(s)
    path = a.json or a.workdir / "independent_score.json"
    path.write_text(json.dumps(s, indent=1))
    print(f"[score] written {path}")


if __name__ == "__main__":
    main()
