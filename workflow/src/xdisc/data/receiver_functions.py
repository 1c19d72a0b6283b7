"""P receiver functions of one station from its event waveform windows (stage ``xdisc rf``).

Per event: gaps, missing components, NaNs and unusable sampling are rejected with a reason;
the rest is demeaned, detrended, tapered, corrected for the instrument (response or gain),
band-passed, resampled onto a grid aligned on the TauP-predicted P at the common rate,
rotated ZNE -> ZRT (or LQT) and windowed. All events of the station are then deconvolved
in one batch with :func:`xdisc.core.deconvolution.deconvolve` (the code path the synthetics use)
and quality-controlled: SNR on Z and R, deconvolution fit, direct-P polarity and timing.
Rejected receiver functions stay in the output, flagged with their reason.
"""

from __future__ import annotations

import csv
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.fft import irfft, next_fast_len, rfft

from xdisc.config import config_hash
from xdisc.core.artifacts import as_float32, provenance_attrs
from xdisc.core.deconvolution import RFSettings, deconvolve, direct_p
from xdisc.core.earthmodel import EARTH_RADIUS_KM
from xdisc.data.events import event_id

log = logging.getLogger(__name__)
QC_HINT_FRACTION = 0.5   # qc_note: at least this share of the tested events fail the SNR test


class Rejected(Exception):
    """This event-station window cannot give a receiver function (reason in the message)."""


@dataclass
class Prepared:
    z: np.ndarray  # vertical (or L), on the common grid, P at index of t = 0
    r: np.ndarray  # radial (or Q)
    t: np.ndarray  # transverse
    meta: dict


@dataclass
class _Raw:
    """Checked raw samples of one event: Z, N, E (rotated from 1/2 if needed), cut around P."""

    data: np.ndarray      # (3, n) float64
    rate: float
    offset_s: float       # time of data[:, 0] relative to P
    ids: tuple            # trace ids of Z, N, E (for gains and responses)
    starttime: object     # UTCDateTime of data[:, 0]


def _grid(window_s, dt):
    n = round((window_s[1] - window_s[0]) / dt) + 1
    return window_s[0] + np.arange(n) * dt


def _first_gap(stream) -> str:
    """Describe the first gap, or overlap whose samples disagree, between consecutive traces of one channel
    ('' when none). Overlaps with identical samples (records stored twice) are fine: they are merged."""
    by_id: dict = {}
    for tr in stream:
        by_id.setdefault(tr.id, []).append(tr)
    for tid, trs in sorted(by_id.items()):
        trs.sort(key=lambda tr: tr.stats.starttime)
        for a, b in itertools.pairwise(trs):
            gap = b.stats.starttime - a.stats.endtime
            if gap > 1.5 * a.stats.delta:
                return f"gap of {gap - a.stats.delta:.1f} s in {tid}"
            if gap < 0.5 * a.stats.delta:  # b's first sample at or before a's last one: an overlap
                t1 = min(a.stats.endtime, b.stats.endtime)
                x, y = a.slice(b.stats.starttime, t1).data, b.slice(b.stats.starttime, t1).data
                n = min(x.size, y.size)
                if n and not np.array_equal(x[:n], y[:n]):
                    span = t1 - b.stats.starttime + a.stats.delta
                    return f"overlap of {span:.1f} s with conflicting samples in {tid}"
    return ""


_PAD_S = 20.0  # extra seconds on both sides of the analysis window, consumed by taper and filters
SOURCE_TAPER_S = 5.0  # cosine ramps at both ends of the source window before the deconvolution
PRE_P_SKIP_S = 10.0  # the first seconds of the noise window are left out of the kept pre-P noise: the
# raw window's taper (5 % of it) may reach into them
BLOCK_EVENTS = 32  # events processed together: large enough to vectorise, small enough to stay in cache


def _sensors(stream, order: tuple = ()) -> list:
    """The traces of one window grouped by sensor: location code and the band and instrument codes of the
    channel (e.g. '00.BH', '--.HH'). ``order``: (channel patterns, location patterns) as in
    ``data.stations`` (e.g. ``("BH?,HH?", "*")``); a sensor whose channels match an earlier pattern comes
    first, then the location codes in the order of their patterns, then sorted ('' before '00' before
    '10', BH before HH)."""
    from fnmatch import fnmatchcase

    from obspy import Stream

    def patterns(text: str | None) -> list[str]:  # "--" is the empty location code
        return [p.strip().replace("-", "") for p in (text or "*").split(",") if p.strip()] or ["*"]

    def rank(pats: list[str], code: str) -> int:
        return next((i for i, p in enumerate(pats) if fnmatchcase(code, p)), len(pats))

    channels, locations = (patterns(text) for text in (*order, None, None)[:2])
    groups: dict = {}
    for tr in stream:
        groups.setdefault((tr.stats.location, tr.stats.channel[:2]), []).append(tr)
    keys = sorted(groups, key=lambda k: (min(rank(channels, tr.stats.channel) for tr in groups[k]),
                                         rank(locations, k[0]), k))
    return [(f"{loc or '--'}.{band}", Stream(groups[loc, band])) for loc, band in keys]


def _extract(stream, inventory, request: dict, proc: dict, cache: dict, order: tuple = ()) -> _Raw:
    """Check one event's stream and cut its samples; raise :class:`Rejected` with a reason. A window that
    holds several sensors (location codes, BH? beside HH?) gives the first sensor that passes every check,
    in the order of :func:`_sensors`; the components of one receiver function never come from different
    sensors."""
    sensors = _sensors(stream, order)
    if len(sensors) <= 1:
        return _extract_sensor(stream, inventory, request, proc, cache)
    reasons = []
    for name, st in sensors:
        try:
            return _extract_sensor(st, inventory, request, proc, cache)
        except Rejected as exc:
            reasons.append(f"{name}: {exc}")
    raise Rejected("; ".join(reasons))


def _extract_sensor(stream, inventory, request: dict, proc: dict, cache: dict) -> _Raw:
    """:func:`_extract` for the traces of one sensor."""
    from obspy import UTCDateTime
    from obspy.signal.rotate import rotate2zne

    if not len(stream):
        raise Rejected("no traces")
    for tr in stream:
        if tr.data.dtype.kind == "f" and not np.all(np.isfinite(tr.data)):
            raise Rejected(f"NaN or infinite samples in {tr.id}")
    gap = _first_gap(stream)
    if gap:
        raise Rejected(gap)
    st = stream.copy() if len({tr.id for tr in stream}) != len(stream) else stream
    if st is not stream:
        st.merge(method=1)
    by_comp = {tr.stats.channel[-1]: tr for tr in st}
    comps = set(by_comp)
    if "Z" not in comps or not ({"N", "E"} <= comps or {"1", "2"} <= comps):
        raise Rejected(f"missing component(s): have {''.join(sorted(comps)) or 'none'}, need Z and N/E or 1/2")
    horiz = ("N", "E") if {"N", "E"} <= comps else ("1", "2")
    traces = [by_comp["Z"], by_comp[horiz[0]], by_comp[horiz[1]]]
    rates = {tr.stats.sampling_rate for tr in traces}
    if len(rates) > 1:
        raise Rejected(f"components sampled at different rates: {sorted(rates)} Hz")
    rate = rates.pop()
    if rate < 2.2 * proc["prefilter_hz"][1]:
        raise Rejected(f"sampling rate {rate} Hz too low for the {proc['prefilter_hz'][1]} Hz band")
    p_utc = UTCDateTime(request["p_time"])
    p_time = p_utc.timestamp  # float seconds: cheap arithmetic for every event
    t_lo = min(proc["source_window_s"][0], proc["noise_window_s"][0])
    t_hi = proc["source_window_s"][1]
    starts = [tr.stats.starttime.timestamp for tr in traces]
    ends = [tr.stats.endtime.timestamp for tr in traces]
    if max(starts) > p_time + t_lo + 1e-6 or min(ends) < p_time + t_hi - 1e-6:
        raise Rejected(f"window does not cover {t_lo}..{t_hi} s around P")
    cut0 = max(max(starts), p_time + t_lo - _PAD_S)
    cut1 = min(min(ends), p_time + t_hi + _PAD_S)
    n = int(np.floor((cut1 - cut0) * rate + 1e-6)) + 1
    rows = []
    for tr, t0 in zip(traces, starts, strict=True):
        i0 = round((cut0 - t0) * rate)
        seg = np.asarray(tr.data[i0:i0 + n], dtype=float)
        if seg.size != n:
            raise Rejected(f"{tr.id}: {seg.size} samples where {n} are needed")
        rows.append(seg)
    start = starts[0] + round((cut0 - starts[0]) * rate) / rate
    data = np.stack(rows)
    ids = tuple(tr.id for tr in traces)
    orient = []
    for tid in ids:
        key = ("orientation", tid, str(p_utc.date))
        if key not in cache:
            try:
                o = inventory.get_orientation(tid, p_utc)
                az, dip = o["azimuth"], o["dip"]
                if az is None or dip is None:  # optional in StationXML: the SEED convention of Z, N and E
                    default = {"Z": (0.0, -90.0), "N": (0.0, 0.0), "E": (90.0, 0.0)}.get(tid[-1])
                    if default is None:
                        raise ValueError("the inventory gives no azimuth or dip")
                    az, dip = default[0] if az is None else az, default[1] if dip is None else dip
                    log.warning("%s: the inventory gives no azimuth or dip; taking %g/%g (SEED channel code)",
                                tid, az, dip)
                cache[key] = (float(az), float(dip))
            except Exception as exc:  # noqa: BLE001 - cached and reported per trace as a rejection
                cache[key] = exc
        if isinstance(cache[key], Exception):
            why = str(cache[key])
            if "No matching channel metadata" in why:  # ObsPy's words for "no epoch of this channel then"
                why = f"the inventory has no epoch of this channel at {p_utc.isoformat()[:19]} ({why})"
            raise Rejected(f"no orientation for {tid}: {why}")
        orient.append(cache[key])
    if orient != [(orient[0][0], -90.0), (0.0, 0.0), (90.0, 0.0)]:
        z, n_, e = rotate2zne(data[0], *orient[0], data[1], *orient[1], data[2], *orient[2])
        data = np.stack([z, n_, e])
    return _Raw(data, rate, float(start - p_time), ids, UTCDateTime(start))


def _instrument(raw: dict, idx: list[int], rate: float, n_fft: int, inventory, proc: dict, cache: dict):
    """Per (row, component): the gain (a number) or the displacement response on the rfft grid of
    ``n_fft`` points at ``rate``; and rejection reasons by item index."""
    factors, bad = {}, {}
    if proc["response"] == "none":
        return factors, bad
    for row, k in enumerate(idx):
        for c, tid in enumerate(raw[k].ids):
            key = (proc["response"], tid, str(raw[k].starttime.date), rate, n_fft)
            if key not in cache:
                try:
                    resp = inventory.get_response(tid, raw[k].starttime)
                    if proc["response"] == "gain":
                        cache[key] = float(resp.instrument_sensitivity.value)
                    else:
                        if not resp.response_stages:
                            raise ValueError("the inventory holds no response stages (use response: gain)")
                        cache[key] = resp.get_evalresp_response(t_samp=1.0 / rate, nfft=n_fft, output="DISP")[0]
                except Exception as exc:  # noqa: BLE001 - cached and reported per trace as a rejection
                    cache[key] = exc
            value = cache[key]
            if isinstance(value, Exception):
                bad[k] = f"{'gain' if proc['response'] == 'gain' else 'response'} of {tid}: {value}"
            else:
                factors[row, c] = value
    return factors, bad


def bandpass_response(freqs_hz, band_hz, rate, phase: str = "zero", corners=4):
    """Frequency response of ObsPy's Butterworth band-pass: ``|H(f)|^2`` for the zero-phase
    (forward-backward) filter, ``H(f)`` for the causal one (one forward pass, ``zerophase=False``)."""
    from scipy.signal import iirfilter, sosfreqz

    nyq = 0.5 * rate
    sos = iirfilter(corners, [band_hz[0] / nyq, min(band_hz[1] / nyq, 0.999)], btype="band", ftype="butter",
                    output="sos")
    _, h = sosfreqz(sos, worN=np.asarray(freqs_hz), fs=rate)
    if phase == "causal":
        return h
    return np.abs(h) ** 2


def prepare_events(items: list[tuple[dict, object]], inventory, rf: RFSettings, proc: dict,
                   sensor_order: tuple = ()) -> list:
    """Pre-process every event of a station; a :class:`Prepared` or the :class:`Rejected` per item.
    ``sensor_order``: which sensor a window with several gives (:func:`_sensors`); the trace ids used are
    in the :class:`Prepared`'s ``meta['channels']``.

    Checks and cutting run per event; detrending, tapering, instrument correction, band-pass,
    resampling, alignment on P and rotation run on all events of one sampling rate at once.
    """
    from fractions import Fraction

    cache: dict = {}
    out: list = [None] * len(items)
    raws: dict[int, _Raw] = {}
    for k, (request, stream) in enumerate(items):
        try:
            if isinstance(stream, Exception):
                raise Rejected(str(stream))
            raws[k] = _extract(stream, inventory, request, proc, cache, sensor_order)
        except Rejected as exc:
            out[k] = exc
    grid = _grid(proc["source_window_s"], rf.dt)
    for rate in sorted({r.rate for r in raws.values()}):
        idx = [k for k, r in raws.items() if r.rate == rate]
        n = max(raws[k].data.shape[-1] for k in idx)
        x = np.zeros((len(idx), 3, n))
        for row, k in enumerate(idx):
            x[row, :, :raws[k].data.shape[-1]] = raws[k].data
        lengths = np.array([raws[k].data.shape[-1] for k in idx])
        # demean and remove a linear trend (least squares over each trace's samples), 5 % Hann taper
        for m in np.unique(lengths):
            rows = np.flatnonzero(lengths == m)
            seg = x[rows, :, :m]
            t = np.arange(m) - (m - 1) / 2.0
            seg -= seg.mean(-1, keepdims=True)
            seg -= (seg @ t / (t @ t))[..., None] * t
            w = max(int(0.05 * m), 1)
            window = np.ones(m)
            window[:w] = 0.5 * (1 - np.cos(np.pi * np.arange(w) / w))
            window[m - w:] = window[:w][::-1]
            x[rows, :, :m] = seg * window
        # one FFT per trace: instrument, band-pass, resampling and alignment on P
        ratio = Fraction(rf.sampling_rate_hz / rate).limit_denominator(1000)
        q = ratio.denominator
        n_in = q * next_fast_len(int(np.ceil(1.25 * n / q)), real=True)  # 5-smooth: fast FFTs
        n_out = n_in * ratio.numerator // q
        f_in = np.fft.rfftfreq(n_in, 1.0 / rate)
        spec = rfft(x, n_in) * bandpass_response(f_in, proc["prefilter_hz"], rate, proc["filter_phase"])
        factors, bad = _instrument(raws, idx, rate, n_in, inventory, proc, cache)
        for k, why in bad.items():
            out[k] = Rejected(why)
        for (row, c), value in factors.items():
            if np.isscalar(value):
                spec[row, c] /= value
            else:
                spec[row, c] = np.where(np.abs(value) > 0, spec[row, c] / np.where(value == 0, 1, value), 0)
        f_out = np.fft.rfftfreq(n_out, rf.dt)
        m = min(f_in.size, f_out.size)
        out_spec = np.zeros((len(idx), 3, f_out.size), complex)
        out_spec[..., :m] = spec[..., :m] * (n_out / n_in)
        # advance each event so that output sample j sits at grid[j] after P
        advance = grid[0] - np.array([raws[k].offset_s for k in idx])
        out_spec *= np.exp(2j * np.pi * f_out[None, :] * advance[:, None])[:, None, :]
        x = irfft(out_spec, n_out)
        for row, k in enumerate(idx):
            if out[k] is not None:
                continue
            seg = x[row, :, :grid.size]
            if seg.shape[-1] != grid.size or advance[row] < 0:
                out[k] = Rejected("window too short after resampling")
                continue
            z, north, east = seg
            b = np.radians(float(items[k][0]["back_azimuth_deg"]))
            r = -east * np.sin(b) - north * np.cos(b)
            tr = -east * np.cos(b) + north * np.sin(b)
            if proc["rotation"] == "LQT":  # then Z and R to L and Q in the ray plane; T stays
                (z,), (r,) = zr_to_lq(z, r, float(items[k][0]["incidence_deg"]))
            out[k] = Prepared(np.ascontiguousarray(z), np.ascontiguousarray(r), np.ascontiguousarray(tr),
                              dict(items[k][0], channels=",".join(raws[k].ids)))
    return out


def zr_to_lq(z: np.ndarray, r: np.ndarray, incidence_deg) -> tuple[np.ndarray, np.ndarray]:
    """L and Q (event, time) of vertical and radial traces at each event's incidence: ObsPy's
    ``rotate_zne_lqt`` with Q positive away from the source, like R (as the rf package). The one LQT
    rotation of xdisc: :func:`prepare_events` rotates the data with it after ZRT, the CNN's calibration
    draws their synthetic Z and R."""
    from obspy.signal.rotate import rotate_zne_lqt

    z, r = np.atleast_2d(np.asarray(z, float)), np.atleast_2d(np.asarray(r, float))
    out_l, out_q = np.empty_like(z), np.empty_like(r)
    for i, inc in enumerate(np.broadcast_to(np.asarray(incidence_deg, float), (z.shape[0],))):
        # back azimuth 0: R = -N and E = 0 in the ZRT convention of prepare_events
        out_l[i], q, _ = rotate_zne_lqt(z[i], -r[i], np.zeros_like(r[i]), 0.0, float(inc))
        out_q[i] = -q
    return out_l, out_q


def prepare_event(stream, inventory, request: dict, rf: RFSettings, proc: dict,
                  sensor_order: tuple = ()) -> Prepared:
    """Pre-process one event-station window (see :func:`prepare_events`); raise :class:`Rejected`."""
    result = prepare_events([(request, stream)], inventory, rf, proc, sensor_order)[0]
    if isinstance(result, Rejected):
        raise result
    return result


def _rms(x, t, window):
    w = (t >= window[0]) & (t <= window[1])
    return np.sqrt(np.mean(x[..., w] ** 2, axis=-1))


def compute_station(items: list[tuple[dict, object]], inventory, station: dict, rf: RFSettings, proc: dict,
                    earth_model: str = "ak135", event_meta: dict | None = None, progress=None,
                    sensor_order: tuple = ()) -> xr.Dataset:
    """Receiver functions of one station. ``items`` = (request row, Stream or exception) per event;
    ``progress(done, total, elapsed_s, unit)`` is called after each block of events; ``sensor_order``:
    (channel patterns, location patterns) that rank the sensors of a window holding several
    (:func:`_sensors`; the ``data.stations`` patterns). The dataset's ``channels`` says which were used."""
    import time

    t0 = time.perf_counter()
    taup = _LazyTauP(earth_model)  # only built when a manifest row lacks slowness and incidence
    rows = []
    for request, _ in items:
        row = dict(request)
        row.update(_ray(taup, request, event_meta or {}))
        rows.append(row)
    pairs = [(row, stream) for row, (_, stream) in zip(rows, items, strict=True)]
    # prepared from the start of the noise window, so that the pre-P noise travels with the receiver
    # functions (noise pools; cnn.adapt.calibration_noise); everything else uses the source window
    ext = dict(proc, source_window_s=[min(proc["source_window_s"][0], proc["noise_window_s"][0]),
                                      proc["source_window_s"][1]])
    grid_ext = _grid(ext["source_window_s"], rf.dt)
    lead = round((proc["source_window_s"][0] - ext["source_window_s"][0]) / rf.dt)
    noise_t = pre_p_samples(grid_ext, proc)
    results = []
    for a in range(0, len(pairs), BLOCK_EVENTS):
        results += prepare_events(pairs[a:a + BLOCK_EVENTS], inventory, rf, ext, sensor_order)
        if progress is not None:
            progress(len(results), len(pairs), time.perf_counter() - t0, "events prepared")
    prepared = []
    for i, (row, res) in enumerate(zip(rows, results, strict=True)):
        if isinstance(res, Rejected):
            row["reason"] = str(res)
            log.info("%s.%s %s rejected: %s", station["network"], station["station"], row["event_id"], res)
        else:
            row["reason"] = ""
            row["channels"] = res.meta["channels"]
            prepared.append((i, res))
    out_t = rf.time_axis()
    n_ev = len(rows)
    rf_r = np.full((n_ev, out_t.size), np.nan)
    rf_t = np.full((n_ev, out_t.size), np.nan)
    fit = np.full(n_ev, np.nan)
    snr_z = np.full(n_ev, np.nan)
    snr_r = np.full(n_ev, np.nan)
    pre_z = np.full((n_ev, int(noise_t.sum())), np.nan)
    pre_r = np.full_like(pre_z, np.nan)
    signal_rms_z = np.full(n_ev, np.nan)
    grid = source_grid(rf, proc)
    for a in range(0, len(prepared), BLOCK_EVENTS):
        block = prepared[a:a + BLOCK_EVENTS]
        idx = [i for i, _ in block]
        z_ext = np.stack([p.z for _, p in block])
        r_ext = np.stack([p.r for _, p in block])
        pre_z[idx], pre_r[idx] = z_ext[:, noise_t], r_ext[:, noise_t]
        z, r = z_ext[:, lead:lead + grid.size], r_ext[:, lead:lead + grid.size]
        tt = np.stack([p.t[lead:lead + grid.size] for _, p in block])
        signal_rms_z[idx] = _rms(z, grid, proc["signal_window_s"])
        snr_z[idx] = _rms(z, grid, proc["signal_window_s"]) / _rms(z, grid, proc["noise_window_s"])
        snr_r[idx] = _rms(r, grid, proc["signal_window_s"]) / _rms(r, grid, proc["noise_window_s"])
        # deconvolve radial and transverse against the vertical in one batch
        src = deconvolution_window(np.concatenate([z, z]), grid, rf)
        rsp = deconvolution_window(np.concatenate([r, tt]), grid, rf)
        res = deconvolve(src, rsp, rf.dt, rf.deconvolution, rf.gaussian_width_hz, time_before_p_s=rf.time_before_p_s,
                         n_out=out_t.size, water_level=rf.water_level, max_iterations=rf.max_iterations,
                         min_fit_change_percent=rf.min_fit_change_percent)
        k = len(idx)
        rf_r[idx] = res.rf[:k]
        rf_t[idx] = res.rf[k:]
        fit[idx] = res.fit_percent[:k]
        if progress is not None:
            progress(a + len(block), len(prepared), time.perf_counter() - t0, "events deconvolved")
    p_amp, p_off = direct_p(rf_r, out_t, proc["max_p_offset_s"])
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
    ds = _to_dataset(rows, reasons, out_t, rf_r, rf_t, fit, snr_z, snr_r, p_amp, p_off, station, rf, proc,
                     earth_model)
    return add_pre_p_noise(ds, pre_z, pre_r, signal_rms_z, grid_ext[noise_t])


def add_pre_p_noise(ds: xr.Dataset, pre_z: np.ndarray, pre_r: np.ndarray, signal_rms_z: np.ndarray,
                    noise_time: np.ndarray) -> xr.Dataset:
    """The events' pre-P noise of the vertical and radial (as deconvolved: instrument, band-pass,
    rotation) and the vertical's rms in the signal window: the noise that the redeconvolved calibration
    draws (:mod:`xdisc.cnn.redecon`) add to synthetic seismograms before deconvolving them."""
    ds["pre_p_vertical"] = (("event", "noise_time"), as_float32(pre_z),
                            {"units": "counts or m s-1 (rf_processing.response)",
                             "long_name": "pre-P noise of the vertical (or L) trace"})
    ds["pre_p_radial"] = (("event", "noise_time"), as_float32(pre_r),
                          {"units": "as pre_p_vertical", "long_name": "pre-P noise of the radial (or Q) trace"})
    ds["signal_rms_z"] = ("event", signal_rms_z,
                          {"units": "as pre_p_vertical", "long_name": "rms of the vertical in the signal window"})
    ds = ds.assign_coords(noise_time=("noise_time", np.round(noise_time, 6),
                                      {"units": "s", "long_name": "time relative to P of the pre-P noise"}))
    return ds


def qc_note(reasons: list[str], snr_z: np.ndarray, snr_r: np.ndarray, proc: dict) -> str:
    """A hint for the user when most of a station's events with data fail the SNR test (empty otherwise):
    long-period noise (microseisms) is the usual cause, and a narrower ``rf_processing.prefilter_hz``
    often keeps those events."""
    tested = np.isfinite(snr_z) | np.isfinite(snr_r)
    low = tested & ~((snr_z >= proc["min_snr_z"]) & (snr_r >= proc["min_snr_r"]))
    n_tested, n_low = int(tested.sum()), int(low.sum())
    if n_low < 3 or n_low < QC_HINT_FRACTION * n_tested:
        return ""
    lo, hi = proc["prefilter_hz"]
    return (f"{n_low} of {n_tested} events fail the SNR test (min_snr_z {proc['min_snr_z']}, min_snr_r "
            f"{proc['min_snr_r']}); if the noise is long-period, a narrower band keeps more of them: "
            f"rf_processing.prefilter_hz (now [{lo:g}, {hi:g}] Hz; try a low corner of 0.1-0.2 Hz)")


def _crop(grid, before_s):
    """Samples from ``before_s`` before P to the end of the source window."""
    return slice(int(np.argmin(np.abs(grid + before_s))), grid.size)


def source_grid(rf: RFSettings, proc: dict) -> np.ndarray:
    """Times (s after P) of the prepared vertical and radial: ``rf_processing.source_window_s``."""
    return _grid(proc["source_window_s"], rf.dt)


def deconvolution_window(x: np.ndarray, grid: np.ndarray, rf: RFSettings) -> np.ndarray:
    """Traces (..., time on ``grid``) as they enter the deconvolution: tapered over ``SOURCE_TAPER_S`` at
    both ends, cut from ``rf.time_before_p_s`` before P (real data and calibration draws alike)."""
    taper = cosine_taper(grid.size, round(SOURCE_TAPER_S / rf.dt))
    return (x * taper)[..., _crop(grid, rf.time_before_p_s)]


def pre_p_samples(grid: np.ndarray, proc: dict) -> np.ndarray:
    """Mask of the samples of ``grid`` whose pre-P noise is kept: ``noise_window_s`` without its first
    ``PRE_P_SKIP_S``."""
    lo, hi = proc["noise_window_s"]
    return (grid >= lo + PRE_P_SKIP_S - 1e-9) & (grid <= hi + 1e-9)


def cosine_taper(n: int, m: int) -> np.ndarray:
    """Window of ``n`` samples with cosine ramps of ``m`` samples at both ends (the source window's taper)."""
    w = np.ones(n)
    if m > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
        w[:m] = ramp
        w[-m:] = ramp[::-1]
    return w


class _LazyTauP:
    def __init__(self, model_name: str):
        self.model_name = model_name
        self._model = None

    def get_travel_times(self, **kwargs):
        if self._model is None:
            from obspy.taup import TauPyModel

            self._model = TauPyModel(self.model_name)
        return self._model.get_travel_times(**kwargs)


def _ray(taup, request, event_meta) -> dict:
    """Slowness and incidence of P from TauP for the event's distance and depth (taken from the
    manifest, where the download stage recorded them, when present)."""
    meta = event_meta.get(request["event_id"], {})
    out = {k: meta.get(k, np.nan) for k in ("latitude", "longitude", "depth_km", "magnitude")}
    if request.get("slowness_s_per_km") not in (None, "") and request.get("incidence_deg") not in (None, ""):
        out["slowness_s_per_km"] = float(request["slowness_s_per_km"])
        out["incidence_deg"] = float(request["incidence_deg"])
        return out
    depth = float(meta.get("depth_km", 0.0) or 0.0)
    arr = taup.get_travel_times(source_depth_in_km=max(depth, 0.0), distance_in_degree=float(request["distance_deg"]),
                                phase_list=["P"])
    if arr:
        out["slowness_s_per_km"] = arr[0].ray_param / EARTH_RADIUS_KM
        out["incidence_deg"] = arr[0].incident_angle
    else:
        out["slowness_s_per_km"] = np.nan
        out["incidence_deg"] = np.nan
    return out


def event_table(catalog) -> dict[str, dict]:
    """Event id -> latitude, longitude, depth_km, magnitude."""
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
    def col(key, dtype=float):
        return np.array([row.get(key, np.nan) for row in rows], dtype=dtype)

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
            "channels": ("event", np.array([r.get("channels", "") for r in rows], dtype=object),
                         {"long_name": "trace ids of the three components used, as recorded (Z, N, E or "
                                       "Z, 1, 2); empty where the window was rejected before"}),
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
    ds.attrs["qc_note"] = qc_note(reasons, snr_z, snr_r, proc)
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
            except Exception as exc:  # noqa: BLE001 - an unreadable file rejects that event only
                stream = Rejected(f"cannot read {path.name}: {exc}")
            items.append((row, stream))
    return items
