"""Archives written by other hands: does ``data.source: local`` read them as it reads the archive as made?

A small independent network (``independent_network.py make --stations 3 --seed 5 --workers 1
--catalogue-events 30 --npts 2048``: 3 stations, 28 windows each, SDS miniSEED, BH? at 20 Hz) is
rewritten the ways real archives differ (channel codes and orientations, sampling rates, location codes,
two sensors on one station, encodings, full responses, station epochs, windows across midnight, QuakeML
with several origins, folders of miniSEED or SAC files, LQT rotation) and broken the ways they break (gaps,
overlaps, missing components, truncated and corrupt files, codes the inventory does not know). Each variant
runs through the pipeline to ``results/verdicts/stacking.csv`` in a fresh working folder (config/config.yaml,
config/full.yaml and ``my.yaml`` with ``data.source: local``), and its receiver functions are compared,
event by event (correlation and amplitude), with those of the archive as made (variant ``base``; the LQT
variant of the BH1/BH2 archive with ``lqt``). Layout under ``--out``: ``network/`` (the archive as made
and its truth), ``variants/NAME/`` (SDS or files, stations.xml, events.xml, changes.txt), ``work/NAME/``
(the run; ``run.json`` holds its exit status and wall time).

    python tests/benchmarks/archive_variants.py make --out /data/av            # about 20 s
    python tests/benchmarks/archive_variants.py run --out /data/av [--only hh loc]
    python tests/benchmarks/archive_variants.py compare --out /data/av [--only hh loc]
    python tests/benchmarks/archive_variants.py all --out /data/av             # about 8 min on 2 cores

About 30 s per variant run on 2 cores (16-27 s each, 8 min for ``all``, measured 2026-12-03). Not part of
CI. Expected with the current pipeline (after the fixes of 2026-12-02 in xdisc/data/receiver_functions.py
and xdisc/data/download.py): every variant exits 0; where only the format changed, every radial receiver
function correlates with the base run's at 0.96 or more and the median at 0.99 or more (the iterative
deconvolution turns differences at the 1e-4 level of the traces into per-event correlations of
0.96-0.99; measured: orient12 0.988/0.999, hh and hh_extra 0.978/0.999, the others 1.000; resp, where the
full response is removed, 0.956/0.994); the fault variants reject exactly the faulty windows, each with a
reason, and leave the others unchanged (in ``faults`` the truncated day file of S002 is named in a warning
of the download log; its windows give "window does not cover" and "missing component(s)"); ``epochs`` and
``midnight`` give the base's receiver functions, ``orient12_lqt`` those of ``lqt``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BASE_STATIONS, BASE_SEED, BASE_CATALOGUE_EVENTS, BASE_NPTS = 3, 5, 30, 2048
TARGET = "results/verdicts/stacking.csv"
LISTED_BELOW_CORRELATION = 0.99  # compare lists the events whose correlation is lower
LISTED_SCALE_OFF = 0.02  # or whose amplitude differs from the base's by more than this fraction


def _independent_network():
    spec = importlib.util.spec_from_file_location("independent_network", HERE / "independent_network.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass(frozen=True)
class Variant:
    """How to make a variant archive and how a user would point the pipeline at it."""

    build: Callable[[Path, Path], list[str]]  # (archive as made, variant folder) -> notes on what it changed
    waveforms: str  # relative to the variant folder: SDS root, folder or glob of files
    response: str  # rf_processing.response
    rf_processing: dict = field(default_factory=dict)  # other rf_processing settings of the run
    reference: str = "base"  # the run its receiver functions are compared with

    @property
    def format(self) -> str:
        return "sds" if self.waveforms == "SDS" else "files"


VARIANTS: dict[str, Variant] = {}


def variant(waveforms: str = "SDS", response: str = "gain", rf_processing: dict | None = None,
            reference: str = "base"):
    """Registers a variant under its function's name; variants are made in the order they are defined."""

    def register(build):
        VARIANTS[build.__name__] = Variant(build, waveforms, response, rf_processing or {}, reference)
        return build

    return register


# ---------------------------------------------------------------------------------------- archive helpers


def _stream(archive: Path):
    from obspy import read

    return read(str(archive / "SDS" / "*" / "*" / "*" / "*" / "*"))


def _inventory(archive: Path):
    from obspy import read_inventory

    return read_inventory(str(archive / "stations.xml"))


def _write_sds(stream, root: Path, encoding: str = "STEIM2", reclen: int = 512) -> None:
    """One day file per channel, as SDS, in the given miniSEED encoding."""
    from obspy import Stream

    dtype = np.float64 if encoding == "FLOAT64" else np.int32
    groups = {}
    for tr in stream:
        s = tr.stats
        key = (s.network, s.station, s.location, s.channel, s.starttime.year, s.starttime.julday)
        groups.setdefault(key, []).append(tr)
    for (net, sta, loc, cha, year, doy), traces in groups.items():
        path = root / f"{year}" / net / sta / f"{cha}.D" / f"{net}.{sta}.{loc}.{cha}.D.{year}.{doy:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        day = Stream(sorted(traces, key=lambda t: t.stats.starttime))
        for tr in day:
            tr.data = np.asarray(tr.data).astype(dtype)
        day.write(str(path), format="MSEED", encoding=encoding, reclen=reclen)


def _station(inv, code: str):
    return next(s for s in inv[0].stations if s.code == code)


def _channel(inv, station: str, code: str, location: str = "00"):
    return next(c for c in _station(inv, station).channels if c.code == code and c.location_code == location)


def _windows(stream, station: str) -> list:
    """Start times of the station's event windows, in time order."""
    from obspy import UTCDateTime

    starts = {tr.stats.starttime.ns for tr in stream.select(station=station, channel="BHZ")}
    return [UTCDateTime(ns=ns) for ns in sorted(starts)]


def _window(stream, station: str, t0):
    from obspy import Stream

    return Stream([tr for tr in stream.select(station=station) if abs(tr.stats.starttime - t0) < 0.01])


def _split(tr, end_s: float, start_s: float):
    """The trace as two pieces: up to ``end_s`` and from ``start_s`` after its start (a gap or an overlap)."""
    t0 = tr.stats.starttime
    return [tr.slice(t0, t0 + end_s).copy(), tr.slice(t0 + start_s, tr.stats.endtime).copy()]


# ---------------------------------------------------------------------------------------- variants


@variant()
def base(archive: Path, out: Path) -> list[str]:
    """The archive as made: the reference run every other variant is compared with."""
    shutil.copytree(archive / "SDS", out / "SDS")
    return []


@variant()
def orient12(archive: Path, out: Path) -> list[str]:
    """Horizontals as BH1/BH2 at any azimuth, or BHN/BHE turned by 10 deg: rotated by their azimuths, as the base."""
    from obspy import Stream

    st, inv, rotated = _stream(archive), _inventory(archive), Stream()
    spec = {
        "S001": ("BH1", 30.0, "BH2", 120.0),
        "S002": ("BH1", 120.0, "BH2", 30.0),
        "S003": ("BHN", 10.0, "BHE", 100.0),
    }
    for sta, (c1, az1, c2, az2) in spec.items():
        for t0 in _windows(st, sta):
            w = _window(st, sta, t0)
            z, n, e = (w.select(channel=c)[0] for c in ("BHZ", "BHN", "BHE"))
            rotated += z
            for code, az in ((c1, az1), (c2, az2)):
                tr = n.copy()
                tr.stats.channel = code
                tr.data = np.round(n.data * np.cos(np.radians(az)) + e.data * np.sin(np.radians(az))).astype(np.int32)
                rotated += tr
        cn, ce = _channel(inv, sta, "BHN"), _channel(inv, sta, "BHE")
        cn.code, cn.azimuth = c1, az1
        ce.code, ce.azimuth = c2, az2
    _write_sds(rotated, out / "SDS")
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    return [f"{sta}: {c1} at {az1:g} deg, {c2} at {az2:g} deg" for sta, (c1, az1, c2, az2) in spec.items()]


@variant()
def hh(archive: Path, out: Path) -> list[str]:
    """HH? at 100 and 40 Hz, a complete BH? beside a faulty HH? (S003): resampled, one sensor used whole, as base."""
    from obspy import Stream

    st, inv, written, notes = _stream(archive), _inventory(archive), Stream(), []
    plan = {"S001": [("HH", 100.0)], "S002": [("HH", 40.0)], "S003": [("BH", 20.0), ("HH", 100.0)]}
    for sta, sensors in plan.items():
        for band, fs in sensors:
            for k, t0 in enumerate(_windows(st, sta)):
                for tr in _window(st, sta, t0):
                    tr = tr.copy()
                    if fs != tr.stats.sampling_rate:
                        tr.data = tr.data.astype(float)
                        tr.resample(fs, no_filter=True)
                        tr.data = np.round(tr.data).astype(np.int32)
                    tr.stats.channel = band + tr.stats.channel[2]
                    faulty = sta == "S003" and band == "HH"
                    if faulty and k in (1, 2, 3) and tr.stats.channel == "HHE":
                        notes.append(f"S003 {t0}: HHE missing")
                        continue
                    if faulty and k in (5, 6) and tr.stats.channel == "HHZ":
                        written.extend(_split(tr, 200.0, 203.0))  # 3 s gap 20 s after P
                        notes.append(f"S003 {t0}: HHZ gap of 3 s at P+20 s")
                        continue
                    written += tr
        s = _station(inv, sta)
        channels = []
        for band, fs in sensors:
            for c in s.channels:
                c2 = copy.deepcopy(c)
                c2.code, c2.sample_rate = band + c.code[2], fs
                channels.append(c2)
        s.channels = channels
    _write_sds(written, out / "SDS")
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    sensors = [f"{sta}: " + ", ".join(f"{band}? at {fs:g} Hz" for band, fs in plan[sta]) for sta in plan]
    return sensors + notes


@variant()
def loc(archive: Path, out: Path) -> list[str]:
    """Two location codes (S002: '' complete, '10' faulty): one sensor used whole, as the base."""
    from obspy import Stream

    st, inv, written, notes = _stream(archive), _inventory(archive), Stream(), []
    s002 = _windows(st, "S002")
    for tr in st:
        tr = tr.copy()
        if tr.stats.station in ("S001", "S002"):
            tr.stats.location = ""
        written += tr
        if tr.stats.station != "S002":
            continue
        t10 = tr.copy()
        t10.stats.location = "10"
        k = next(i for i, t0 in enumerate(s002) if abs(t0 - t10.stats.starttime) < 1)
        if k in (1, 2, 3) and t10.stats.channel == "BHE":
            notes.append(f"S002 {t10.stats.starttime}: 10.BHE missing")
        elif k in (5, 6) and t10.stats.channel == "BHZ":
            written.extend(_split(t10, 200.0, 203.0))
            notes.append(f"S002 {t10.stats.starttime}: 10.BHZ gap of 3 s at P+20 s")
        else:
            written += t10
    for c in _station(inv, "S001").channels:
        c.location_code = ""
    s2 = _station(inv, "S002")
    loc10 = []
    for c in s2.channels:
        c10 = copy.deepcopy(c)
        c10.location_code = "10"
        loc10.append(c10)
        c.location_code = ""
    s2.channels += loc10
    _write_sds(written, out / "SDS")
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    return ["S001: location ''", "S002: locations '' and '10'", *sorted(notes)]


@variant()
def faults(archive: Path, out: Path) -> list[str]:
    """Gaps, overlaps, a missing component, a truncated and a corrupt file: only the faulty windows rejected."""
    from obspy import Stream

    st, written, notes = _stream(archive), Stream(), []
    s001 = _windows(st, "S001")
    for tr in st:
        tr = tr.copy()
        s = tr.stats
        k = next(i for i, t0 in enumerate(s001) if abs(t0 - s.starttime) < 0.01) if s.station == "S001" else -1
        if k == 2 and s.channel == "BHZ":
            written.extend(_split(tr, 190.0, 192.05))
            notes.append(f"S001 {s.starttime}: BHZ gap of 2 s at P+10 s")
        elif k == 3 and s.channel == "BHN":
            written.extend(_split(tr, 195.0, 190.0))
            notes.append(f"S001 {s.starttime}: BHN overlap of 5 s, identical samples (merged)")
        elif k == 4 and s.channel == "BHZ":
            first, second = _split(tr, 195.0, 190.0)
            second.stats.starttime += 2.0
            second.trim(s.starttime + 190.0, None)
            written += first
            written += second
            notes.append(f"S001 {s.starttime}: BHZ overlap, conflicting samples")
        elif k == 5 and s.channel == "BHE":
            notes.append(f"S001 {s.starttime}: BHE missing")
        elif k == 6 and s.channel == "BHZ":
            written.extend(_split(tr, 190.0, 190.1))
            notes.append(f"S001 {s.starttime}: BHZ gap of one sample")
        else:
            written += tr
    _write_sds(written, out / "SDS")
    truncated = max((out / "SDS").glob("*/*/S002/BHZ.D/*"), key=lambda p: p.stat().st_size)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2 + 100])
    notes.append(f"S002 {truncated.name}: truncated mid-record ({len(data)} -> {len(data) // 2 + 100} bytes)")
    corrupt = max((out / "SDS").glob("*/*/S003/BHN.D/*"), key=lambda p: p.stat().st_size)
    rng = np.random.default_rng(4)
    corrupt.write_bytes(rng.integers(0, 256, corrupt.stat().st_size, dtype=np.uint8).tobytes())
    notes.append(f"S003 {corrupt.name}: random bytes")
    return sorted(notes)


@variant()
def enc(archive: Path, out: Path) -> list[str]:
    """Steim2 in 4096-byte records, INT32 and FLOAT64 records (one station each): as the base."""
    st, notes = _stream(archive), []
    for sta, encoding, reclen in (("S001", "STEIM2", 4096), ("S002", "INT32", 512), ("S003", "FLOAT64", 4096)):
        _write_sds(st.select(station=sta), out / "SDS", encoding, reclen)
        notes.append(f"{sta}: {encoding}, {reclen}-byte records")
    return notes


@variant(response="remove")
def resp(archive: Path, out: Path) -> list[str]:
    """Full responses to remove, S002's epoch ending mid-way, S003 without data: as the base while the epoch lasts."""
    from obspy import Stream, UTCDateTime
    from obspy.core.inventory import Response

    zeros = [0j, 0j]
    poles = [-0.037 + 0.037j, -0.037 - 0.037j, -251.3 + 0j, -131 + 467.3j, -131 - 467.3j]
    w = 2j * np.pi * 1.0
    st, made, inv, convolved = _stream(archive), _inventory(archive), _inventory(archive), Stream()
    for sta in ("S001", "S002", "S003"):
        for c in _station(inv, sta).channels:
            r = Response.from_paz(
                zeros,
                poles,
                1500.0 * 4e5,
                stage_gain_frequency=1.0,
                input_units="M/S",
                output_units="COUNTS",
                normalization_frequency=1.0,
            )
            r.response_stages[0].normalization_factor = float(
                1 / abs(np.prod(w - np.array(zeros)) / np.prod(w - np.array(poles)))
            )
            r.recalculate_overall_sensitivity(1.0)
            c.response = r
    for tr in st.select(station="S00[12]"):
        s = tr.stats
        gain = _channel(made, s.station, s.channel).response.instrument_sensitivity.value
        displacement_m = tr.data.astype(float) / gain
        nfft = 2 * len(displacement_m)
        h, _ = _channel(inv, s.station, s.channel).response.get_evalresp_response(
            t_samp=s.delta, nfft=nfft, output="DISP"
        )
        tr = tr.copy()
        tr.data = np.round(np.fft.irfft(np.fft.rfft(displacement_m, nfft) * h, nfft)[: len(tr.data)]).astype(np.int32)
        convolved += tr
    end = UTCDateTime("2021-01-15")
    s2 = _station(inv, "S002")
    s2.end_date = end
    for c in s2.channels:
        c.end_date = end
    _write_sds(convolved, out / "SDS")
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    return ["S002: station and channel epochs end 2021-01-15", "S003: no waveforms"]


@variant()
def quakeml(archive: Path, out: Path) -> list[str]:
    """A bogus first origin and an mb before the Mww, an event twice: the preferred ones, once, as the base."""
    from obspy import read_events
    from obspy.core.event import Magnitude, Origin, ResourceIdentifier

    shutil.copytree(archive / "SDS", out / "SDS")
    cat = read_events(str(archive / "events.xml"))
    for i, e in enumerate(cat):
        o, m = e.origins[0], e.magnitudes[0]
        bogus = Origin(
            resource_id=ResourceIdentifier(f"smi:local/bogus/{i}"),
            time=o.time + 47.0,
            latitude=o.latitude + 7,
            longitude=o.longitude - 5,
            depth=33000.0,
        )
        e.origins = [bogus, o]
        mb = Magnitude(
            resource_id=ResourceIdentifier(f"smi:local/mb/{i}"),
            mag=round(m.mag - 0.6, 2),
            magnitude_type="mb",
            origin_id=bogus.resource_id,
        )
        m.magnitude_type = "Mww"
        e.magnitudes = [mb, m]
        e.preferred_origin_id, e.preferred_magnitude_id = o.resource_id, m.resource_id
    dup = copy.deepcopy(cat[0])
    dup.resource_id = ResourceIdentifier("smi:other/agency/0")
    for item in (*dup.origins, *dup.magnitudes):
        item.resource_id = ResourceIdentifier(f"{item.resource_id}/other")
    dup.preferred_origin_id, dup.preferred_magnitude_id = dup.origins[1].resource_id, dup.magnitudes[1].resource_id
    cat.append(dup)
    cat.write(str(out / "events.xml"), format="QUAKEML")
    return [f"event of {cat[0].origins[1].time} twice"]


def _write_files(archive: Path, out: Path, name: Callable, file_format: str) -> None:
    """Every window and channel of the archive as one file, at ``out/files/name(trace)``."""
    for tr in _stream(archive):
        path = out / "files" / name(tr)
        path.parent.mkdir(parents=True, exist_ok=True)
        tr.write(str(path), format=file_format)


def _stamp(tr) -> str:
    return tr.stats.starttime.strftime("%Y%m%dT%H%M%S")


@variant(waveforms="files")
def files_mseed(archive: Path, out: Path) -> list[str]:
    """A flat folder of miniSEED files, one per window and channel: as the base."""
    _write_files(archive, out, lambda tr: f"{tr.id}.{_stamp(tr)}.mseed", "MSEED")
    return []


@variant(waveforms="files")
def files_sac(archive: Path, out: Path) -> list[str]:
    """A flat folder of SAC files, one per window and channel: as the base."""
    _write_files(archive, out, lambda tr: f"{tr.id}.{_stamp(tr)}.SAC", "SAC")
    return []


@variant(waveforms="files/*/*.SAC")
def files_subdirs(archive: Path, out: Path) -> list[str]:
    """SAC files in one subfolder per window, read through a glob: as the base."""
    _write_files(archive, out, lambda tr: f"{_stamp(tr)}/{tr.id}.SAC", "SAC")
    return []


@variant()
def zdown(archive: Path, out: Path) -> list[str]:
    """Z with dip +90 and inverted data, and a Z without azimuth or dip (SEED convention): as the base."""
    st, inv = _stream(archive), _inventory(archive)
    for tr in st.select(station="S00[12]", channel="BHZ"):
        tr.data = -tr.data
    _channel(inv, "S001", "BHZ").dip = 90.0
    c = _channel(inv, "S002", "BHZ")
    c.dip, c.azimuth = 90.0, 0.0
    c = _channel(inv, "S003", "BHZ")
    c.dip, c.azimuth = None, None
    _write_sds(st, out / "SDS")
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    return ["S001: BHZ inverted, dip +90", "S002: BHZ inverted, dip +90, azimuth 0", "S003: BHZ without azimuth or dip"]


@variant()
def loc_extra(archive: Path, out: Path) -> list[str]:
    """The SDS of loc, the inventory listing only location '': the listed sensor used, as the base."""
    shutil.copytree(out.parent / "loc" / "SDS", out / "SDS")
    inv = _inventory(archive)
    for s in ("S001", "S002"):
        for c in _station(inv, s).channels:
            c.location_code = ""
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    return ["SDS: S001 at location '', S002 at '' (complete) and '10' (faulty)", "inventory: S001, S002 at ''"]


@variant()
def hh_extra(archive: Path, out: Path) -> list[str]:
    """The SDS of hh, the inventory listing only BH? for S003: the listed sensor used, as the base."""
    shutil.copytree(out.parent / "hh" / "SDS", out / "SDS")
    inv = _inventory(out.parent / "hh")
    s3 = _station(inv, "S003")
    s3.channels = [c for c in s3.channels if c.code.startswith("BH")]
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    return ["SDS: S003 BH? (complete) and HH? (faulty)", "inventory: S003 BH? only"]


@variant(waveforms="files")
def files_sac_nonet(archive: Path, out: Path) -> list[str]:
    """files_sac, S001's files without network and location codes: S001 nodata, naming the ids they hold."""
    from obspy import read

    (out / "files").mkdir()
    for f in sorted((out.parent / "files_sac" / "files").iterdir()):
        tr = read(str(f))[0]
        if tr.stats.station == "S001":
            tr.stats.network, tr.stats.location = "", ""
        tr.write(str(out / "files" / f.name), format="SAC")
    return ["S001: knetwk and khole unset"]


@variant()
def zneg(archive: Path, out: Path) -> list[str]:
    """Z inverted by a negative sensitivity (S001), only EH? channels (S002): S001 as the base, S002 skipped."""
    st, inv = _stream(archive), _inventory(archive)
    for tr in st:
        if tr.stats.station == "S001" and tr.stats.channel == "BHZ":
            tr.data = -tr.data
        if tr.stats.station == "S002":
            tr.stats.channel = "EH" + tr.stats.channel[2]
    _channel(inv, "S001", "BHZ").response.instrument_sensitivity.value *= -1
    for c in _station(inv, "S002").channels:
        c.code = "EH" + c.code[2]
    _write_sds(st, out / "SDS")
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    return ["S001: BHZ inverted, sensitivity negative, dip -90", "S002: EHZ, EHN, EHE"]


@variant()
def epochs(archive: Path, out: Path) -> list[str]:
    """Every station re-installed on 2021-01-16: two station and channel epochs, the second 550 m away, 20 m
    higher, its horizontals with twice the sensitivity (their samples doubled): the gain of each window's
    epoch used, so the receiver functions keep the base's amplitudes (``scale`` 1)."""
    from obspy import UTCDateTime

    split = UTCDateTime(2021, 1, 16)
    st, inv = _stream(archive), _inventory(archive)
    for tr in st:
        if tr.stats.starttime >= split and tr.stats.channel[-1] in "NE":
            tr.data = np.asarray(tr.data) * 2
    stations = []
    for sta in inv[0].stations:
        new = copy.deepcopy(sta)
        sta.end_date = split - 1e-6
        for c in sta.channels:
            c.end_date = split - 1e-6
        new.start_date, new.latitude, new.elevation = split, new.latitude + 0.005, new.elevation + 20.0
        for c in new.channels:
            c.start_date, c.latitude, c.elevation = split, c.latitude + 0.005, c.elevation + 20.0
            if c.code[-1] in "NE":
                c.response.instrument_sensitivity.value *= 2
                for stage in c.response.response_stages[:1]:
                    stage.stage_gain *= 2
        stations += [sta, new]
    inv[0].stations = stations
    _write_sds(st, out / "SDS")
    inv.write(str(out / "stations.xml"), format="STATIONXML")
    return [f"two epochs per station, split at {split}; the second +0.005 deg latitude, +20 m, N and E gain x2"]


@variant()
def midnight(archive: Path, out: Path) -> list[str]:
    """Each event (origin and windows) moved so that its P arrives 30 s before midnight: every window spans two
    SDS day files. The same receiver functions as the base (``event_map.json`` maps the event ids)."""
    from obspy import UTCDateTime, read_events

    st = _stream(archive)
    cat = read_events(str(archive / "events.xml"))
    starts = sorted({tr.stats.starttime.ns for tr in st})
    used, mapping, moved = set(), {}, 0
    for e in cat:
        o = e.preferred_origin() or e.origins[0]
        # the windows of this event: those starting within 20 min after its origin
        mine = [ns for ns in starts if 0 <= UTCDateTime(ns=ns) - o.time < 1200]
        if not mine:
            continue
        p = UTCDateTime(ns=mine[0]) + 60.0  # the windows start 60 s before P
        midnight_ = UTCDateTime(p.date) + (86400 if p - UTCDateTime(p.date) > 43200 else 0)
        if midnight_.date in used:  # two events near one midnight would overlap: the second stays
            continue
        used.add(midnight_.date)
        shift = (midnight_ - 30.0) - p
        old = o.time.strftime("%Y%m%dT%H%M%S")
        for tr in st:
            if tr.stats.starttime.ns in mine:
                tr.stats.starttime += shift
        for origin in e.origins:
            origin.time += shift
        mapping[(o.time).strftime("%Y%m%dT%H%M%S")] = old
        moved += 1
    _write_sds(st, out / "SDS")
    cat.write(str(out / "events.xml"), format="QUAKEML")
    (out / "event_map.json").write_text(json.dumps(mapping, indent=1))
    return [f"{moved} of {len(cat)} events moved to P 30 s before midnight (the others share a midnight)"]


@variant(rf_processing={"rotation": "LQT"})
def lqt(archive: Path, out: Path) -> list[str]:
    """The archive as made, rotated to LQT (``rf_processing.rotation``): Q against the base's R, alike but not
    equal (measured: correlation 0.65-1.0, median 0.86; Q keeps a direct P); the reference of orient12_lqt."""
    shutil.copytree(archive / "SDS", out / "SDS")
    return []


@variant(rf_processing={"rotation": "LQT"}, reference="lqt")
def orient12_lqt(archive: Path, out: Path) -> list[str]:
    """The archive of orient12 (BH1/BH2, turned BHN/BHE) rotated to LQT: as lqt."""
    shutil.copytree(out.parent / "orient12" / "SDS", out / "SDS")
    shutil.copy(out.parent / "orient12" / "stations.xml", out / "stations.xml")
    return ["SDS and inventory of orient12"]


# ---------------------------------------------------------------------------------------- steps


def make(out: Path, names: list[str] | None = None) -> None:
    """The small independent network under ``out/network`` (kept when it is there), then every variant (or
    ``names``; some variants build on others) under ``out/variants``."""
    network = out / "network"
    t0 = time.time()
    if not (network / "archive" / "stations.xml").is_file():
        _independent_network().make(
            network, BASE_STATIONS, BASE_SEED, workers=1, n_catalog=BASE_CATALOGUE_EVENTS, npts=BASE_NPTS
        )
    archive = network / "archive"
    for name, v in VARIANTS.items():
        if names and name not in names:
            continue
        folder = out / "variants" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for f in ("stations.xml", "events.xml"):
            shutil.copy(archive / f, folder / f)
        notes = v.build(archive, folder)
        (folder / "changes.txt").write_text(f"{v.build.__doc__}\n" + "".join(f"  {n}\n" for n in notes))
        print(f"[make] {name}" + "".join(f"\n    {n}" for n in notes))
    print(f"[make] the network and {len(VARIANTS)} variants in {time.time() - t0:.0f} s -> {out / 'variants'}")


def run(out: Path, names: list[str], cores: int) -> None:
    """Each variant through the pipeline in a fresh ``out/work/NAME``; ``run.json`` holds rc and wall time."""
    import yaml

    for name in names:
        v, archive, work = VARIANTS[name], out / "variants" / name, out / "work" / name
        shutil.rmtree(work, ignore_errors=True)
        (work / "config").mkdir(parents=True)
        for f in ("config.yaml", "full.yaml"):
            shutil.copy(REPO / "config" / f, work / "config" / f)
        local = {
            "waveforms": str(archive / v.waveforms),
            "format": v.format,
            "inventory": str(archive / "stations.xml"),
            "events": str(archive / "events.xml"),
        }
        my = {"data": {"source": "local", "local": local}, "rf_processing": {"response": v.response, **v.rf_processing}}
        (work / "my.yaml").write_text(yaml.safe_dump(my, sort_keys=False))
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            TARGET,
            "--cores",
            str(cores),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(work),
            "--configfile",
            "config/config.yaml",
            "config/full.yaml",
            "my.yaml",
        ]
        t0 = time.time()
        with open(work / "snakemake.log", "w") as log:
            rc = subprocess.run(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT).returncode
        wall = time.time() - t0
        (work / "run.json").write_text(json.dumps({"command": cmd, "returncode": rc, "wall_s": round(wall, 1)}))
        print(f"[run] {name}: rc {rc}, {wall:.0f} s" + (f" (log: {work / 'snakemake.log'})" if rc else ""))


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def compare_variant(out: Path, name: str) -> dict:
    """Prints the variant's stations, manifests and receiver functions against the reference run's; returns the
    summary row (rc, events base/variant, min/median correlation, range of amplitudes, first problem reason).
    The reference is the variant's ``reference`` run (``base`` but for orient12_lqt)."""
    import xarray as xr

    base_run, work = out / "work" / VARIANTS[name].reference, out / "work" / name
    info = json.loads((work / "run.json").read_text()) if (work / "run.json").is_file() else {}
    problems, correlations, scales, n_base, n_variant = [], [], [], 0, 0
    map_file = out / "variants" / name / "event_map.json"
    event_map = json.loads(map_file.read_text()) if map_file.is_file() else {}
    print(f"== {name} (rc {info.get('returncode', '-')}, {info.get('wall_s', '-')} s; against {base_run.name})")
    for r in _rows(work / "data" / "raw" / "stations.csv"):
        if r["status"] != "selected":
            print(f"  station {r['network']}.{r['station']} {r['status']}: {r['reason']}")
            problems.append(f"{r['station']} {r['status']}: {r['reason']}")
    for base_file in sorted((base_run / "results" / "rf").glob("*.nc")):
        sta = base_file.stem
        manifest = _rows(work / "data" / "raw" / "waveforms" / f"{sta}.csv")
        reasons = {r["event_id"]: f"{r['status']}: {r['reason']}" for r in manifest if r["status"] != "ok"}
        counts = Counter(r["status"] for r in manifest)
        print(f"  {sta} manifest: " + (", ".join(f"{k} {n}" for k, n in counts.items()) or "none"))
        for event, reason in list(reasons.items())[:3]:
            print(f"    {event} {reason[:150]}")
        problems += [f"{sta} {e} {r}" for e, r in reasons.items()]
        variant_file = work / "results" / "rf" / base_file.name
        with xr.open_dataset(base_file) as b:
            n_base += b.sizes["event"]
            if not variant_file.is_file():
                print(f"  {sta}: no receiver functions (base: {b.sizes['event']} events)")
                problems.append(f"{sta}: no receiver functions")
                continue
            with xr.open_dataset(variant_file) as v:
                if event_map:  # variants that move events in time (midnight): their ids to the base's
                    v = v.assign_coords(event=[event_map.get(str(e), str(e)) for e in v.event.values])
                n_variant += v.sizes["event"]
                common = sorted(set(b.event.values) & set(v.event.values))
                missing = sorted(set(b.event.values) - set(v.event.values))
                print(
                    f"  {sta}: events base {b.sizes['event']} (QC pass {int(b.qc_pass.sum())}), variant "
                    f"{v.sizes['event']} (QC pass {int(v.qc_pass.sum())})"
                    + (f"; {len(missing)} not in the variant: {', '.join(missing[:4])}" if missing else "")
                    + (" ..." if len(missing) > 4 else "")
                )
                station_correlations = []
                for e in common:
                    x, y = b.rf.sel(event=e).values, v.rf.sel(event=e).values
                    if not np.all(np.isfinite(y)):
                        reason = str(v.rejection_reason.sel(event=e).values)
                        print(f"    {e} not computed: {reason[:150]}")
                        problems.append(f"{sta} {e} not computed: {reason}")
                    elif np.all(np.isfinite(x)):
                        c = float(np.corrcoef(x, y)[0, 1])
                        station_correlations.append(c)
                        scale = float(x @ y / (x @ x))  # least-squares amplitude of the variant's RF
                        scales.append(scale)
                        if c < LISTED_BELOW_CORRELATION or abs(scale - 1.0) > LISTED_SCALE_OFF:
                            print(f"    {e} correlation {c:.3f}, amplitude {scale:.3f} x the base's")
                if station_correlations:
                    print(
                        f"    correlation over {len(station_correlations)} events: min "
                        f"{min(station_correlations):.4f}, median {np.median(station_correlations):.4f}"
                    )
                correlations += station_correlations
    return {
        "variant": name,
        "rc": info.get("returncode", "-"),
        "events": f"{n_base}/{n_variant}",
        "min": f"{min(correlations):.3f}" if correlations else "-",
        "median": f"{np.median(correlations):.3f}" if correlations else "-",
        "scale": f"{min(scales):.3f}-{max(scales):.3f}" if scales else "-",
        "first problem": problems[0][:90] if problems else "",
    }


def compare(out: Path, names: list[str]) -> list[dict]:
    """Compares each variant with its reference run and prints the summary table."""
    table = [compare_variant(out, name) for name in names]
    columns = list(table[0])
    widths = [max(len(c), *(len(str(r[c])) for r in table)) for c in columns]
    print()
    for row in [dict(zip(columns, columns, strict=True)), *table]:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["make", "run", "compare", "all"])
    parser.add_argument("--out", type=Path, required=True, help="folder of the network, variants and runs")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), help="run/compare: these variants only")
    parser.add_argument("--cores", type=int, default=2, help="run: Snakemake cores per variant")
    a = parser.parse_args(argv)
    names = a.only or list(VARIANTS)
    if a.step in ("make", "all"):
        make(a.out, a.only)
    if a.step in ("run", "all"):
        run(a.out, names, a.cores)
    if a.step in ("compare", "all"):
        compare(a.out, names)


if __name__ == "__main__":
    main()
