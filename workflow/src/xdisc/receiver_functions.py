"""P receiver functions of one station from its event waveform windows (stage ``xdisc rf``).

Per event: gaps, missing components, NaNs and unusable sampling are rejected with a reason;
the rest is demeaned, detrended, tapered, corrected for the instrument (response or gain),
band-passed, resampled onto a grid aligned on the TauP-predicted P at the common rate,
rotated ZNE -> ZRT (or LQT) and windowed. All events of the station are then deconvolved
in one batch with :func:`xdisc.deconvolution.deconvolve` (the code path the synthetics use)
and quality-controlled: SNR on Z and R, deconvolution fit, direct-P polarity and timing.
Rejected receiver functions stay in the output, flagged with their reason.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from xdisc.artifacts import as_float32, provenance_attrs
from xdisc.config import config_hash
from xdisc.deconvolution import RFSettings, deconvolve
from xdisc.earthmodel import EARTH_RADIUS_KM

log = logging.getLogger(__name__)


class Rejected(Exception):
    """This event-station window cannot give a receiver function (reason in the message)."""


@dataclass
class Prepared:
    z: np.ndarray  # vertical (or L), on the common grid, P at index of t = 0
    r: np.ndarray  # radial (or Q)
    t: np.ndarray  # transverse
    meta: dict


def _grid(window_s, dt):
    n = int(round((window_s[1] - window_s[0]) / dt)) + 1
    return window_s[0] + np.arange(n) * dt


def prepare_event(stream, inventory, request: dict, rf: RFSettings, proc: dict, taup) -> Prepared:
    """Pre-process one event-station window; raise :class:`Rejected` with a reason."""
    from obspy import UTCDateTime
    from obspy.signal.rotate import rotate_ne_rt, rotate_zne_lqt

    st = stream.copy()
    if not len(st):
        raise Rejected("no traces")
    for tr in st:
        if not np.all(np.isfinite(np.asarray(tr.data, float))):
            raise Rejected(f"NaN or infinite samples in {tr.id}")
    gaps = st.get_gaps()
    if gaps:
        g = gaps[0]
        raise Rejected(f"gap of {g[6]:.1f} s in {'.'.join(g[:4])}")
    st.merge(method=1)
    comps = {tr.stats.channel[-1] for tr in st}
    if "Z" not in comps or not ({"N", "E"} <= comps or {"1", "2"} <= comps):
        raise Rejected(f"missing component(s): have {''.join(sorted(comps)) or 'none'}, need Z and N/E or 1/2")
    rates = {tr.stats.sampling_rate for tr in st}
    if min(rates) < 2.2 * proc["prefilter_hz"][1]:
        raise Rejected(f"sampling rate {min(rates)} Hz too low for the {proc['prefilter_hz'][1]} Hz band")
    p_time = UTCDateTime(request["p_time"])
    window = proc["source_window_s"]
    if any(tr.stats.starttime > p_time + min(window[0], proc["noise_window_s"][0]) + 1e-6
           or tr.stats.endtime < p_time + window[1] - 1e-6 for tr in st):
        raise Rejected(f"window does not cover {min(window[0], proc['noise_window_s'][0])}..{window[1]} s around P")
    st.detrend("demean")
    st.detrend("linear")
    st.taper(max_percentage=0.05, type="hann")
    if proc["response"] == "remove":
        try:
            st.remove_response(inventory=inventory, output="DISP", water_level=None,
                               pre_filt=None, taper=False)
        except Exception as exc:  # noqa: BLE001 - obspy raises several kinds for missing metadata
            raise Rejected(f"response removal failed: {exc}") from None
    elif proc["response"] == "gain":
        for tr in st:
            try:
                sens = inventory.get_response(tr.id, tr.stats.starttime).instrument_sensitivity.value
            except Exception as exc:  # noqa: BLE001
                raise Rejected(f"no gain for {tr.id}: {exc}") from None
            tr.data = tr.data / sens
    fmin, fmax = proc["prefilter_hz"]
    st.filter("bandpass", freqmin=fmin, freqmax=fmax, corners=4, zerophase=True)
    try:
        st.rotate("->ZNE", inventory=inventory)
    except Exception as exc:  # noqa: BLE001
        raise Rejected(f"rotation to ZNE failed: {exc}") from None
    grid = _grid(window, rf.dt)
    data = {}
    for comp in "ZNE":
        sel = st.select(component=comp)
        if len(sel) != 1:
            raise Rejected(f"component {comp}: {len(sel)} traces after rotation")
        tr = sel[0].copy()
        tr.interpolate(rf.sampling_rate_hz, method="lanczos", a=12, starttime=p_time + grid[0], npts=grid.size)
        data[comp] = np.asarray(tr.data, float)
    baz = float(request["back_azimuth_deg"])
    r, t = rotate_ne_rt(data["N"], data["E"], baz)
    z = data["Z"]
    meta = dict(request)
    if proc["rotation"] == "LQT":
        inc = float(request["incidence_deg"])
        z, r, t = rotate_zne_lqt(data["Z"], data["N"], data["E"], baz, inc)
        r = -r  # rf convention: Q positive away from the source, like R
    return Prepared(z, r, t, meta)


def _rms(x, t, window):
    w = (t >= window[0]) & (t <= window[1])
    return np.sqrt(np.mean(x[..., w] ** 2, axis=-1))


def compute_station(items: list[tuple[dict, object]], inventory, station: dict, rf: RFSettings, proc: dict,
                    earth_model: str = "ak135", event_meta: dict | None = None) -> xr.Dataset:
    """Receiver functions of one station. ``items`` = (request row, Stream or exception) per event."""
    from obspy.taup import TauPyModel

    taup = TauPyModel(earth_model)
    prepared, rows = [], []
    for request, stream in items:
        row = dict(request)
        row.update(_ray(taup, request, event_meta or {}))
        try:
            if isinstance(stream, Exception):
                raise Rejected(str(stream))
            prepared.append((len(rows), prepare_event(stream, inventory, row, rf, proc, taup)))
            row["reason"] = ""
        except Rejected as exc:
            row["reason"] = str(exc)
            log.info("%s.%s %s rejected: %s", station["network"], station["station"], request["event_id"], exc)
        rows.append(row)
    out_t = rf.time_axis()
    n_ev = len(rows)
    rf_r = np.full((n_ev, out_t.size), np.nan)
    rf_t = np.full((n_ev, out_t.size), np.nan)
    fit = np.full(n_ev, np.nan)
    snr_z = np.full(n_ev, np.nan)
    snr_r = np.full(n_ev, np.nan)
    if prepared:
        idx = [i for i, _ in prepared]
        z = np.stack([p.z for _, p in prepared])
        r = np.stack([p.r for _, p in prepared])
        tt = np.stack([p.t for _, p in prepared])
        grid = _grid(proc["source_window_s"], rf.dt)
        snr_z[idx] = _rms(z, grid, proc["signal_window_s"]) / _rms(z, grid, proc["noise_window_s"])
        snr_r[idx] = _rms(r, grid, proc["signal_window_s"]) / _rms(r, grid, proc["noise_window_s"])
        taper = _cosine_taper(grid.size, int(round(5.0 / rf.dt)))
        # deconvolve radial and transverse against the vertical in one batch
        src = np.concatenate([z, z]) * taper
        rsp = np.concatenate([r, tt]) * taper
        n_out = out_t.size
        shift = rf.time_before_p_s
        res = deconvolve(src[:, _crop(grid, shift)], rsp[:, _crop(grid, shift)], rf.dt, rf.deconvolution,
                         rf.gaussian_width_hz, time_before_p_s=shift, n_out=n_out, water_level=rf.water_level,
                         max_iterations=rf.max_iterations, min_fit_change_percent=rf.min_fit_change_percent)
        k = len(idx)
        rf_r[idx] = res.rf[:k]
        rf_t[idx] = res.rf[k:]
        fit[idx] = res.fit_percent[:k]
    near_p = np.abs(out_t) <= proc["max_p_offset_s"]
    with np.errstate(invalid="ignore"):
        p_idx = np.where(np.isfinite(rf_r).all(1), np.nanargmax(np.where(near_p, np.abs(np.nan_to_num(rf_r)), -1), 1), 0)
    p_amp = np.where(np.isfinite(fit), rf_r[np.arange(n_ev), p_idx], np.nan)
    p_off = np.where(np.isfinite(fit), out_t[p_idx], np.nan)
    reasons = []
    for i, row in enumerate(rows):
        why = [row["reason"]] if row["reason"] else []
        if not why:
            if not snr_z[i] >= proc["min_snr_z"]:
                why.append(f"SNR Z {snr_z[i]:.1f} < {proc['min_snr_z']}")
            if not snr_r[i] >= proc["min_snr_r"]:
                why.append(f"SNR R {snr_r[i]:.1f} < {proc['min_snr_r']}")
            if not fit[i] >= proc["min_fit_percent"]:
                why.append(f"fit {fit[i]:.0f} % < {proc['min_fit_percent']} %")
            if not p_amp[i] > 0:
                why.append(f"direct P negative ({p_amp[i]:.2f})")
        reasons.append("; ".join(why))
    return _to_dataset(rows, reasons, out_t, rf_r, rf_t, fit, snr_z, snr_r, p_amp, p_off, station, rf, proc,
                       earth_model)


def _crop(grid, before_s):
    """Samples from ``before_s`` before P to the end of the source window."""
    return slice(int(np.argmin(np.abs(grid + before_s))), grid.size)


def _cosine_taper(n, m):
    w = np.ones(n)
    if m > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
        w[:m] = ramp
        w[-m:] = ramp[::-1]
    return w


def _ray(taup, request, event_meta) -> dict:
    """Slowness and incidence of P from TauP for the event's distance and depth."""
    meta = event_meta.get(request["event_id"], {})
    depth = float(meta.get("depth_km", 0.0) or 0.0)
    arr = taup.get_travel_times(source_depth_in_km=max(depth, 0.0), distance_in_degree=float(request["distance_deg"]),
                                phase_list=["P"])
    out = {k: meta.get(k, np.nan) for k in ("latitude", "longitude", "depth_km", "magnitude")}
    if arr:
        out["slowness_s_per_km"] = arr[0].ray_param / EARTH_RADIUS_KM
        out["incidence_deg"] = arr[0].incident_angle
    else:
        out["slowness_s_per_km"] = np.nan
        out["incidence_deg"] = np.nan
    return out


def event_table(catalog) -> dict[str, dict]:
    """Event id -> latitude, longitude, depth_km, magnitude."""
    from xdisc.download import event_id

    table = {}
    for e in catalog:
        o = e.preferred_origin() or e.origins[0]
        m = e.preferred_magnitude() or (e.magnitudes[0] if e.magnitudes else None)
        table[event_id(e)] = {"latitude": o.latitude, "longitude": o.longitude,
                              "depth_km": (o.depth or 0.0) / 1000.0, "magnitude": m.mag if m else np.nan}
    return table


def _to_dataset(rows, reasons, out_t, rf_r, rf_t, fit, snr_z, snr_r, p_amp, p_off, station, rf, proc,
                earth_model) -> xr.Dataset:
    n = len(rows)
    col = lambda key, dtype=float: np.array([row.get(key, np.nan) for row in rows], dtype=dtype)  # noqa: E731
    qc = np.array([not r for r in reasons], np.int8)
    ds = xr.Dataset(
        {
            "rf": (("event", "time"), as_float32(rf_r), {"units": "1", "long_name": "radial receiver function",
                                                         "description": "amplitude relative to the vertical direct P"}),
            "rf_transverse": (("event", "time"), as_float32(rf_t), {"units": "1",
                                                                    "long_name": "transverse receiver function"}),
            "qc_pass": ("event", qc, {"long_name": "1 = passed every quality check", "units": "1"}),
            "rejection_reason": ("event", np.array(reasons, dtype=object),
                                 {"long_name": "why the event failed processing or quality control"}),
            "snr_z": ("event", snr_z, {"units": "1", "long_name": "rms signal/noise of the vertical (or L) trace"}),
            "snr_r": ("event", snr_r, {"units": "1", "long_name": "rms signal/noise of the radial (or Q) trace"}),
            "fit_percent": ("event", fit, {"units": "percent", "long_name": "deconvolution fit of the radial"}),
            "p_amplitude": ("event", p_amp, {"units": "1", "long_name": "largest RF amplitude near 0 s"}),
            "p_offset_s": ("event", p_off, {"units": "s", "long_name": "time of that amplitude"}),
            "origin_time": ("event", np.array([r["origin_time"] for r in rows], dtype=object),
                            {"long_name": "origin time (UTC, ISO 8601)"}),
            "event_latitude": ("event", col("latitude"), {"units": "degrees_north", "long_name": "epicentre latitude"}),
            "event_longitude": ("event", col("longitude"), {"units": "degrees_east",
                                                            "long_name": "epicentre longitude"}),
            "event_depth_km": ("event", col("depth_km"), {"units": "km", "long_name": "hypocentre depth"}),
            "magnitude": ("event", col("magnitude"), {"units": "1", "long_name": "magnitude"}),
            "distance_deg": ("event", col("distance_deg"), {"units": "degree", "long_name": "epicentral distance"}),
            "back_azimuth_deg": ("event", col("back_azimuth_deg"), {"units": "degree", "long_name": "back azimuth"}),
            "slowness_s_per_km": ("event", col("slowness_s_per_km"), {"units": "s km-1",
                                                                      "long_name": "P horizontal slowness (TauP)"}),
            "incidence_deg": ("event", col("incidence_deg"), {"units": "degree", "long_name": "P incidence (TauP)"}),
        },
        coords={
            "event": ("event", np.array([r["event_id"] for r in rows], dtype=object), {"long_name": "event id"}),
            "time": ("time", out_t, {"units": "s", "long_name": "time after direct P"}),
            "network": ((), station["network"], {"long_name": "network code"}),
            "station": ((), station["station"], {"long_name": "station code"}),
            "latitude": ((), float(station["latitude"]), {"units": "degrees_north", "long_name": "station latitude"}),
            "longitude": ((), float(station["longitude"]), {"units": "degrees_east",
                                                            "long_name": "station longitude"}),
            "elevation_m": ((), float(station.get("elevation_m") or 0.0), {"units": "m",
                                                                           "long_name": "station elevation"}),
        },
    )
    sect = {"receiver_function": rf.__dict__, "rf_processing": proc, "earth_model": earth_model}
    ds.attrs.update(provenance_attrs(
        title=f"P receiver functions of {station['network']}.{station['station']}",
        source=f"xdisc rf: {rf.deconvolution} deconvolution, rotation {proc['rotation']}, response {proc['response']}",
        config_hash=config_hash(sect), references="Ligorria & Ammon 1999; Langston 1979"))
    ds.attrs.update({f"rf_{k}": v for k, v in rf.__dict__.items()})
    ds.attrs["earth_model"] = earth_model
    ds.attrs["n_events"] = n
    ds.attrs["n_pass"] = int(qc.sum())
    return ds


def load_items(manifest_path: Path, waveform_dir: Path) -> list[tuple[dict, object]]:
    """(request row, Stream or the reason it cannot be read) for every ok row of a manifest."""
    from obspy import read

    items = []
    with open(manifest_path, newline="") as f:
        for row in csv.DictReader(f):
            if row["status"] != "ok":
                continue
            path = Path(waveform_dir) / row["file"]
            try:
                stream = read(str(path), format="MSEED")
            except Exception as exc:  # noqa: BLE001
                stream = Rejected(f"cannot read {path.name}: {exc}")
            items.append((row, stream))
    return items
