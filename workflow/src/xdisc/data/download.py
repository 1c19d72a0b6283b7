"""Data acquisition: events, stations and waveform windows around P.

Split by concern (after ObsPy's mass downloader): *where* (a :class:`Source`: FDSN web
services, a local archive, or the embedded rf example data), *what/when* (events and
stations filtered by the ``data`` configuration, windows around the TauP-predicted P) and
orchestration (:func:`fetch_station`: bounded parallelism, retries with back-off, a
per-window manifest so that a rerun after a kill fetches only what is missing). From FDSN
services a station's windows go in bulk POSTs of ``data.fdsn.bulk_windows`` windows, within
per-provider limits on connections and request rate (:mod:`xdisc.data.bulk`); events and stations
are one request each (per provider).

Every event-station window is one miniSEED file written atomically. While a station is
being fetched, its progress is kept in a journal (``.journal.csv`` in the station's window
folder); the manifest (CSV, the Snakemake output) is written once, atomically, when every
planned window has been tried, so an interrupted download (any signal, any sender) never
leaves a manifest that looks finished. Both record for each request: ok, nodata (HTTP 204 /
empty archive), error (after the last retry) or rejected (corrupt, truncated or unreadable
data), with the reason.

Network, station, location and channel codes are checked against the SEED rules where they
enter (:func:`station_rows`, :func:`valid_inventory`): a station with an invalid code is
listed with its reason and never becomes a job, a file name or a request.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from http.client import HTTPException
from pathlib import Path

from xdisc.core.artifacts import atomic_output, write_csv
from xdisc.core.earthmodel import EARTH_RADIUS_KM
from xdisc.data.codes import code_problem
from xdisc.data.events import event_id
from xdisc.data.examples import demo_paths, embedded_paths
from xdisc.data.mseed import LIBMSEED, not_mseed, select_channels, to_mseed

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ("event_id", "origin_time", "network", "station", "starttime", "endtime", "p_time",
                   "distance_deg", "back_azimuth_deg", "slowness_s_per_km", "incidence_deg", "status", "reason",
                   "attempts", "file", "source")
DONE = ("ok", "nodata")
JOURNAL_NAME = ".journal.csv"  # progress of an unfinished download, in the station's window folder


class RetryableError(RuntimeError):
    """A server error or timeout: try again later."""


class NoData(RuntimeError):
    """The source has no data for the request (HTTP 204, empty archive)."""


class CorruptData(RuntimeError):
    """The source answered, but the data cannot be used (truncated or unreadable miniSEED)."""


# ----------------------------------------------------------------------------- what/when

@dataclass
class Request:
    event_id: str
    origin_time: str
    network: str
    station: str
    starttime: str
    endtime: str
    p_time: str
    distance_deg: float
    back_azimuth_deg: float
    slowness_s_per_km: float
    incidence_deg: float
    status: str = "pending"
    reason: str = ""
    attempts: int = 0
    file: str = ""
    source: str = ""


def plan_requests(events, network: str, station: str, latitude: float, longitude: float, data_cfg: dict,
                  earth_model: str = "ak135",
                  epochs: list | None = None) -> tuple[list[Request], list[tuple[str, str]]]:
    """Windows around the predicted P of every event in the distance range of one station.

    ``epochs`` (:func:`station_epochs`): where the station's epochs sit at different places, each event
    is taken at the coordinates of the epoch it falls in (``latitude``, ``longitude`` outside them all).
    Returns the requests and (event_id, reason) for events left out."""
    from obspy.geodetics import gps2dist_azimuth, locations2degrees
    from obspy.taup import TauPyModel

    ev_cfg = data_cfg["events"]
    taup = TauPyModel(earth_model)
    requests, skipped = [], []
    for event in events:
        eid = event_id(event)
        origin = event.preferred_origin() or event.origins[0]
        if origin.latitude is None or origin.longitude is None:
            skipped.append((eid, "origin without coordinates"))
            continue
        lat, lon = _coordinates_at(epochs, str(origin.time), latitude, longitude)
        # azimuth from the station to the epicentre = the back azimuth of the arriving wave;
        # great-circle distance on the sphere, as TauP's get_travel_times_geo
        _, baz, _ = gps2dist_azimuth(lat, lon, origin.latitude, origin.longitude)
        dist = locations2degrees(lat, lon, origin.latitude, origin.longitude)
        if not ev_cfg["min_distance_deg"] <= dist <= ev_cfg["max_distance_deg"]:
            skipped.append((eid, f"distance {dist:.1f} deg outside {ev_cfg['min_distance_deg']}-"
                                 f"{ev_cfg['max_distance_deg']}"))
            continue
        depth_km = max((origin.depth or 0.0) / 1000.0, 0.0)
        arrivals = taup.get_travel_times(source_depth_in_km=depth_km, distance_in_degree=dist, phase_list=["P"])
        if not arrivals:
            skipped.append((eid, f"no P arrival at {dist:.1f} deg"))
            continue
        p_time = origin.time + arrivals[0].time
        requests.append(Request(
            eid, str(origin.time), network, station, str(p_time - data_cfg["window_before_p_s"]),
            str(p_time + data_cfg["window_after_p_s"]), str(p_time), round(dist, 4), round(baz, 4),
            arrivals[0].ray_param / EARTH_RADIUS_KM, arrivals[0].incident_angle))
    return requests, skipped


def station_epochs(text: str) -> list | None:
    """The ``epochs`` column of the station table (:func:`station_rows`): None where it is empty."""
    return json.loads(text) if text else None


def _coordinates_at(epochs: list | None, time_iso: str, latitude: float, longitude: float) -> tuple[float, float]:
    """The coordinates of the epoch that holds ``time_iso`` (ISO 8601; epochs as ``[start, end, lat, lon]``
    with ISO times, None for open ends), else (``latitude``, ``longitude``)."""
    t = time_iso[:19]  # the ISO strings of one format compare as times
    for start, end, lat, lon in epochs or ():
        if (start is None or start[:19] <= t) and (end is None or t < end[:19]):
            return float(lat), float(lon)
    return latitude, longitude


# ----------------------------------------------------------------------------- where

class Source:
    """Where waveforms come from. ``get_waveforms`` returns miniSEED bytes or raises
    NoData / RetryableError / CorruptData."""

    name = "source"

    def get_waveforms(self, network, station, location, channel, starttime, endtime) -> bytes:
        raise NotImplementedError


class FDSNSource(Source):
    """An FDSN data centre. With ``bulk`` (:class:`xdisc.data.bulk.BulkSettings`) a station's windows go in
    bulk POSTs (:func:`fetch_station`), through ``gate`` (:class:`xdisc.data.bulk.ProviderGate`) when given;
    ``get_waveforms`` is the per-window GET."""

    def __init__(self, provider: str, timeout_s: float = 60.0, client=None, bulk=None, gate=None):
        from obspy.clients.fdsn import Client

        self.name = provider
        self.client = client or Client(provider, timeout=timeout_s, _discover_services=False)
        self.bulk, self.gate = bulk, gate

    def bulk_url(self) -> str:
        return self.client._build_url("dataselect", "query")

    def get_waveforms(self, network, station, location, channel, starttime, endtime) -> bytes:
        from obspy import UTCDateTime
        from obspy.clients.fdsn.header import FDSNException, FDSNNoDataException

        buf = io.BytesIO()
        try:
            with self.gate.slot() if self.gate is not None else nullcontext():
                self.client.get_waveforms(network, station, location, channel, UTCDateTime(starttime),
                                          UTCDateTime(endtime), filename=buf)
        except FDSNNoDataException as exc:
            raise NoData(str(exc).splitlines()[0]) from None
        except FDSNException as exc:
            text = " ".join(str(exc).split())
            if _is_client_error(exc):
                raise CorruptData(f"request refused: {text[:200]}") from None
            raise RetryableError(text[:200]) from None
        except (OSError, ValueError, HTTPException) as exc:  # dropped connection, incomplete read, timeouts
            raise RetryableError(f"{type(exc).__name__}: {exc}"[:200]) from None
        data = buf.getvalue()
        if not data:
            raise NoData("empty answer")
        return data


def _is_client_error(exc) -> bool:
    from obspy.clients.fdsn import header as h

    return isinstance(exc, (h.FDSNBadRequestException, h.FDSNUnauthorizedException, h.FDSNForbiddenException,
                            h.FDSNRequestTooLargeException))


class StreamSource(Source):
    """Waveforms held in memory (a folder of files, or the embedded example data)."""

    def __init__(self, stream, name: str):
        self.stream = stream
        self.name = name

    def get_waveforms(self, network, station, location, channel, starttime, endtime) -> bytes:
        from obspy import UTCDateTime

        matched = select_channels(self.stream, network, station, location, channel)
        sel = matched.slice(UTCDateTime(starttime), UTCDateTime(endtime))
        if not len(sel):
            # SAC files often lack the network (knetwk) or carry other codes: say so where the user looks
            other = sorted({tr.id for tr in self.stream.select(station=station)} - {tr.id for tr in matched})
            hint = (f" (the files hold {len(other)} trace id(s) of station {station} that do not match "
                    f"{network}.{station}.{location}.{channel}, e.g. {other[0]!r})") if other else ""
            raise NoData(f"no data in the archive{hint}")
        return to_mseed(sel)


class SDSSource(Source):
    def __init__(self, root: str):
        from obspy.clients.filesystem.sds import Client

        if not Path(root).is_dir():
            raise FileNotFoundError(f"SDS root {root} does not exist")
        self.client = Client(root)
        self.root = Path(root)
        self.name = f"sds:{root}"
        self._checked: set = set()  # day files already checked for a cut-off last record
        self._lock = threading.Lock()

    def get_waveforms(self, network, station, location, channel, starttime, endtime) -> bytes:
        from obspy import Stream, UTCDateTime

        st = Stream()
        t1, t2 = UTCDateTime(starttime), UTCDateTime(endtime)
        for cha in channel.split(","):
            self._warn_truncated(network, station, location, cha, t1, t2)
            try:
                with LIBMSEED:
                    st += self.client.get_waveforms(network, station, location, cha, t1, t2)
            except Exception as exc:  # noqa: BLE001 - obspy raises many types for a bad file: reject this window
                culprit = self._culprit(network, station, location, cha, t1, t2)
                raise CorruptData(f"unreadable file in the SDS archive: {culprit}"
                                  f" ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
        if not len(st):
            raise NoData("no data in the SDS archive")
        return to_mseed(st)

    def _warn_truncated(self, network, station, location, channel, t1, t2) -> None:
        """Warn, once per file, about a day file whose size is not a whole number of its records: its last
        record was cut off (a copy that stopped early) and ObsPy drops it without a word, so that the
        windows it held lose their end ("window does not cover" in the receiver functions)."""
        from obspy.io.mseed.util import get_record_information

        for name in self.client._get_filenames(network, station, location, channel, t1, t2):
            with self._lock:
                if name in self._checked:
                    continue
                self._checked.add(name)
            try:
                size = Path(name).stat().st_size
                with LIBMSEED:  # ObsPy detects the record length in libmseed
                    reclen = int(get_record_information(name)["record_length"])
            except Exception:  # noqa: BLE001 - missing or unreadable files are reported where they are read
                continue
            if reclen > 0 and size % reclen:
                shown = Path(name).relative_to(self.root) if Path(name).is_relative_to(self.root) else name
                log.warning("%s: %d bytes, not a whole number of %d-byte records (its first record's length): "
                            "the file looks truncated, and ObsPy drops a cut-off last record without a word",
                            shown, size, reclen)

    def _culprit(self, network, station, location, channel, t1, t2) -> str:
        """The archive file(s) of this request that obspy cannot read (for the reason in the manifest)."""
        from obspy import read

        bad = []
        for name in self.client._get_filenames(network, station, location, channel, t1, t2):
            try:
                with LIBMSEED:
                    read(name, headonly=True)
            except Exception:  # noqa: BLE001 - any reader failure marks the file
                bad.append(str(Path(name).relative_to(self.root)) if Path(name).is_relative_to(self.root) else name)
        return ", ".join(bad) or f"{network}.{station}.{location}.{channel}"


def effective_data(data_cfg: dict) -> dict:
    """``data`` as the downloader reads it: ``source: demo`` is the local archive that
    :func:`xdisc.data.demo.make_demo` writes to ``data.demo.folder``."""
    if data_cfg["source"] != "demo":
        return data_cfg
    paths = demo_paths(data_cfg["demo"]["folder"])
    return {**data_cfg, "source": "local", "local": {**data_cfg["local"], "waveforms": str(paths["sds"]),
                                                     "format": "sds", "inventory": str(paths["inventory"]),
                                                     "events": str(paths["events"])}}


def make_source(data_cfg: dict, provider: str | None = None) -> Source:
    """The waveform source named by the configuration."""
    from obspy import read

    data_cfg = effective_data(data_cfg)
    kind = data_cfg["source"]
    if kind == "fdsn":
        from xdisc.data.bulk import BulkSettings, ProviderGate

        fd = data_cfg["fdsn"]
        provider = provider or fd["providers"][0]
        bulk = (BulkSettings(fd["bulk_windows"], fd["retries"], fd["backoff_s"], fd["retry_after_max_s"],
                             fd["timeout_s"]) if fd["bulk_windows"] > 1 else None)
        gate = ProviderGate(Path(data_cfg["raw_dir"]) / ".providers", provider, fd["max_connections"],
                            fd["max_requests_per_s"])
        return FDSNSource(provider, fd["timeout_s"], bulk=bulk, gate=gate)
    if kind == "embedded":
        return StreamSource(read(str(embedded_paths()["waveforms"])), "embedded:rf-example")
    local = data_cfg["local"]
    if not local["waveforms"]:
        raise ValueError("data.local.waveforms is not set")
    if local["format"] == "sds":
        return SDSSource(local["waveforms"])
    path = Path(local["waveforms"])
    pattern = str(path / "*") if path.is_dir() else str(path)
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no waveform files match {pattern}")
    from obspy import Stream

    st = Stream()
    for f in files:
        try:
            with LIBMSEED:
                st += read(f)
        except Exception as exc:  # noqa: BLE001 - obspy raises many types for a bad file: log, skip, go on
            log.warning("skipping unreadable waveform file %s: %s", f, exc)
    return StreamSource(st, f"files:{local['waveforms']}")


# ----------------------------------------------------------------------------- orchestration

def validate_mseed(data: bytes, req: Request):
    """Parse miniSEED bytes; reject truncated or unreadable data and windows with no samples."""
    from obspy import read

    what = not_mseed(data)
    if what:
        raise CorruptData(what)
    if len(data) % 128:
        raise CorruptData(f"truncated miniSEED: {len(data)} bytes is not a whole number of records")
    try:
        with LIBMSEED:
            st = read(io.BytesIO(data), format="MSEED")
    except Exception as exc:  # noqa: BLE001 - any reader failure is corrupt data
        raise CorruptData(f"unreadable miniSEED: {exc}") from None
    st = st.select(network=req.network, station=req.station)
    if not len(st) or all(tr.stats.npts == 0 for tr in st):
        raise NoData("answer holds no samples of this station")
    return st


def journal_path(out_dir: str | Path) -> Path:
    """Progress of an unfinished download of one station (see the module docstring)."""
    return Path(out_dir) / JOURNAL_NAME


def read_manifest(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["event_id"]: row for row in csv.DictReader(f)}


def write_manifest(path: Path, rows: list[dict]) -> None:
    write_csv(sorted(rows, key=lambda r: r["event_id"]), MANIFEST_FIELDS, path)


@dataclass
class FetchSummary:
    ok: int = 0
    nodata: int = 0
    error: int = 0
    rejected: int = 0
    reused: int = 0
    reasons: dict = field(default_factory=dict)


def fetch_station(requests: list[Request], source: Source, out_dir: Path, manifest_path: Path,
                  channel: str = "BH?,HH?", location: str = "*", retries: int = 3, backoff_s: float = 2.0,
                  max_parallel: int = 4, progress=None, stop: threading.Event | None = None) -> FetchSummary:
    """Fetch every request not already done; write the manifest once all have been tried.

    Progress goes to the journal (:func:`journal_path`) after each request; the manifest, one row
    per request, is written atomically at the end, so it exists only for a finished download. A
    request counts as done when the journal or an earlier manifest says ok (and its file exists)
    or nodata; a file present without a row (the process was killed between the two writes) is
    validated and kept. Errors and rejections are tried again on the next run. An interrupt
    (Ctrl-C, SystemExit) stops new requests and leaves the journal, not a manifest; so does setting
    ``stop`` from another thread (a batch of stations interrupted).
    """
    out_dir = Path(out_dir)
    manifest_path = Path(manifest_path)
    journal = journal_path(out_dir)
    for stale in out_dir.glob(".*.part") if out_dir.is_dir() else []:
        log.info("removing %s, left by an interrupted run", stale.name)
        stale.unlink(missing_ok=True)
    previous = read_manifest(manifest_path) | read_manifest(journal)  # the journal is the newer of the two
    rows: dict[str, dict] = {}
    todo: list[Request] = []
    summary = FetchSummary()
    for req in requests:
        target = out_dir / f"{req.event_id}.mseed"
        old = previous.get(req.event_id)
        if old and (old.get("starttime"), old.get("endtime")) != (req.starttime, req.endtime):
            log.info("%s: window changed since the last run, fetching it again", req.event_id)
            old = None
            target.unlink(missing_ok=True)
        if (old and old["status"] == "nodata") or (old and old["status"] == "ok" and target.is_file()):
            rows[req.event_id] = old
            summary.reused += 1
            continue
        if target.is_file():
            try:
                validate_mseed(target.read_bytes(), req)
            except (CorruptData, NoData):
                target.unlink()
            else:
                req.status, req.reason, req.file, req.source = "ok", "found complete on disk", target.name, \
                    old.get("source", source.name) if old else source.name
                rows[req.event_id] = asdict(req)
                summary.reused += 1
                continue
        todo.append(req)
    lock = threading.Lock()
    stop = threading.Event() if stop is None else stop
    write_manifest(journal, list(rows.values()))
    done, t0 = 0, time.perf_counter()

    def finish(reqs: list[Request]) -> None:
        """Record requests whose status is final (journal, summary, progress): one journal write."""
        nonlocal done
        reqs = [r for r in reqs if r.status != "pending"]  # pending: interrupted before an answer
        if not reqs:
            return
        for req in reqs:
            if req.status != "ok":
                log.info("%s.%s %s: %s (%s)", req.network, req.station, req.event_id, req.status, req.reason)
        with lock:
            for req in reqs:
                rows[req.event_id] = asdict(req)
                setattr(summary, req.status, getattr(summary, req.status) + 1)
                summary.reasons[req.event_id] = req.reason
            write_manifest(journal, list(rows.values()))
            done += len(reqs)
            if progress is not None:
                progress(done, len(todo), time.perf_counter() - t0, "windows")

    bulk = getattr(source, "bulk", None)
    if bulk is not None and todo:
        from xdisc.data.bulk import fetch_bulk

        def write(req: Request, data: bytes) -> None:
            _store(req, data, out_dir / f"{req.event_id}.mseed")

        fetch_bulk(todo, source.bulk_url(), source.gate, bulk, channel, location, write, finish, stop, source.name,
                   max_parallel)
    else:
        def one(req: Request) -> None:
            if stop.is_set():
                return
            _fetch_one(req, source, out_dir / f"{req.event_id}.mseed", channel, location, retries, backoff_s, stop)
            finish([req])

        pool = ThreadPoolExecutor(max_workers=max(1, max_parallel))
        try:
            for future in [pool.submit(one, req) for req in todo]:
                future.result()
        except BaseException:
            stop.set()  # Ctrl-C or a bug: no new requests, no manifest; the journal keeps what finished
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    missing = [req.event_id for req in requests if req.event_id not in rows]
    if stop.is_set() and missing:
        raise InterruptedError(f"download stopped with {len(missing)} window(s) left")
    if missing:
        raise RuntimeError(f"download of {len(missing)} window(s) did not finish: {', '.join(missing[:5])}")
    write_manifest(manifest_path, list(rows.values()))
    return summary


def _fetch_one(req: Request, source: Source, target: Path, channel: str, location: str, retries: int,
               backoff_s: float, stop: threading.Event) -> None:
    """Ask ``source`` for one window, with retries; set the request's status, reason and file."""
    wait = backoff_s
    req.source = source.name
    for attempt in range(retries + 1):
        req.attempts = attempt + 1
        retry = False
        try:
            data = source.get_waveforms(req.network, req.station, location, channel, req.starttime, req.endtime)
            validate_mseed(data, req)
        except NoData as exc:
            req.status, req.reason = "nodata", str(exc)
        except CorruptData as exc:
            req.status, req.reason = "rejected", str(exc)
            retry = "truncated" in str(exc)  # a cut transfer may succeed next time
        except RetryableError as exc:
            req.status, req.reason = "error", str(exc)
            retry = True
        except Exception as exc:  # noqa: BLE001 - a source failing in an unforeseen way rejects this window only
            req.status = "rejected"
            req.reason = (f"unexpected error from {source.name}: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]}")
            log.warning("%s.%s %s: %s", req.network, req.station, req.event_id, req.reason)
        else:
            _write_window(req, data, target)
        if not (retry and attempt < retries):
            break
        log.warning("%s.%s %s: %s; retry %d/%d in %.1f s", req.network, req.station, req.event_id, req.reason,
                    attempt + 1, retries, wait)
        if stop.wait(wait):  # interrupted: no answer for this request
            req.status = "pending"
            return
        wait *= 2


def _write_window(req: Request, data: bytes, target: Path) -> None:
    with atomic_output(target) as tmp:
        tmp.write_bytes(data)
    req.status, req.reason, req.file = "ok", "", target.name


def _store(req: Request, data: bytes, target: Path) -> None:
    """A window cut from a bulk answer: validated as a per-window answer is, then written."""
    try:
        validate_mseed(data, req)
    except NoData as exc:
        req.status, req.reason = "nodata", str(exc)
    except CorruptData as exc:
        req.status, req.reason = "rejected", str(exc)
    else:
        _write_window(req, data, target)


@dataclass
class StationDownload:
    summary: FetchSummary
    requests: list[Request]
    skipped: list[tuple[str, str]]  # (event id, reason) of events left out
    source: str


def download_station(events, station: dict, data_cfg: dict, out_dir: Path, manifest_path: Path,
                     earth_model: str = "ak135", progress=None, stop: threading.Event | None = None,
                     source: Source | None = None) -> StationDownload:
    """Plan the windows of one station (a row of :func:`station_rows`) and fetch what is missing,
    from ``source`` (default: the source of the ``data`` configuration) and with its retry settings."""
    requests, skipped = plan_requests(events, station["network"], station["station"], float(station["latitude"]),
                                      float(station["longitude"]), data_cfg, earth_model,
                                      station_epochs(station.get("epochs") or ""))
    provider = station.get("provider") if data_cfg["source"] == "fdsn" else None
    source = source or make_source(data_cfg, provider)
    st_cfg, fd = data_cfg["stations"], data_cfg["fdsn"]
    summary = fetch_station(requests, source, out_dir, manifest_path, channel=st_cfg["channel"],
                            location=st_cfg["location"], retries=fd["retries"], backoff_s=fd["backoff_s"],
                            max_parallel=fd["max_parallel"], progress=progress, stop=stop)
    return StationDownload(summary, requests, skipped, source.name)


BATCH_FIELDS = ("network", "station", "manifest", "source", "windows", "ok", "nodata", "error", "rejected", "reused")


def waveform_folder(manifest: Path) -> Path:
    """The folder of a station's event windows: its manifest path without the suffix
    (data/raw/waveforms/NET.STA.csv -> data/raw/waveforms/NET.STA/)."""
    return Path(manifest).with_suffix("")


def download_batch(events, stations: list[dict], data_cfg: dict, manifest_dir: Path, earth_model: str = "ak135",
                   progress=None, report=None) -> list[dict]:
    """:func:`download_station` for several stations (rows of :func:`station_rows`), up to
    ``data.fdsn.max_connections`` of them at once (their requests share the per-provider limits), each
    with its manifest ``manifest_dir/NET.STA.csv`` and windows beside it. Returns one row per station
    (:data:`BATCH_FIELDS`). A station that fails does not stop the others; once they have finished, a
    RuntimeError names every failed station (their journals keep what they fetched: a rerun resumes).
    An interrupt stops every station's new requests. ``progress(code)`` makes a station's progress
    callback; ``report(code, StationDownload)`` is called as each station finishes."""
    manifest_dir = Path(manifest_dir)
    # a folder of files (or the embedded data) is read into memory: once per batch, not once per station
    eff = effective_data(data_cfg)
    shared = make_source(data_cfg) if eff["source"] != "fdsn" and eff["local"]["format"] != "sds" else None
    stops = {f"{row['network']}.{row['station']}": threading.Event() for row in stations}

    def one(row: dict) -> dict:
        code = f"{row['network']}.{row['station']}"
        manifest = manifest_dir / f"{code}.csv"
        result = download_station(events, row, data_cfg, waveform_folder(manifest), manifest, earth_model,
                                  progress(code) if progress else None, stops[code], shared)
        if report is not None:
            report(code, result)
        s = result.summary
        return {"network": row["network"], "station": row["station"], "manifest": str(manifest),
                "source": result.source, "windows": len(result.requests), "ok": s.ok, "nodata": s.nodata,
                "error": s.error, "rejected": s.rejected, "reused": s.reused}

    workers = max(1, min(len(stations), int(data_cfg["fdsn"]["max_connections"])))
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = {code: pool.submit(one, row) for code, row in zip(stops, stations, strict=True)}
    rows, failed = [], []
    try:
        for code, future in futures.items():
            try:
                rows.append(future.result())
            except Exception as exc:  # noqa: BLE001 - one station's failure is reported, the others go on
                log.error("download waveforms %s failed: %s: %s", code, type(exc).__name__, exc)
                failed.append(f"{code} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
    except BaseException:
        for stop in stops.values():  # Ctrl-C, SIGTERM: no new requests anywhere; journals keep what finished
            stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    if failed:
        raise RuntimeError(f"download of {len(failed)} of {len(stations)} station(s) failed (a rerun resumes "
                           f"them): {'; '.join(failed)}")
    return rows


# ----------------------------------------------------------------------------- events, stations

def _with_retries(fn, what: str, retries: int, backoff_s: float):
    from obspy.clients.fdsn.header import FDSNException, FDSNNoDataException

    wait = backoff_s
    for attempt in range(retries + 1):
        try:
            return fn()
        except FDSNNoDataException:
            raise NoData(f"{what}: no data") from None
        except (FDSNException, OSError, ValueError, HTTPException) as exc:
            if attempt == retries or (isinstance(exc, FDSNException) and _is_client_error(exc)):
                raise RetryableError(f"{what}: {' '.join(str(exc).split())[:200]}") from None
            log.warning("%s: %s; retry %d/%d in %.1f s", what, " ".join(str(exc).split())[:120], attempt + 1,
                        retries, wait)
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


def get_events(data_cfg: dict, client=None):
    """Event catalog filtered by the configuration (time, magnitude, depth); events without an origin
    time or a magnitude value are left out with a warning."""
    from obspy import Catalog, read_events

    data_cfg = effective_data(data_cfg)
    ev, st = data_cfg["events"], data_cfg["stations"]
    t1, t2 = _time_range(st)
    if data_cfg["source"] == "fdsn":
        from obspy.clients.fdsn import Client

        fd = data_cfg["fdsn"]
        client = client or Client(fd["event_provider"], timeout=fd["timeout_s"], _discover_services=False)
        kwargs = dict(starttime=t1, endtime=t2, minmagnitude=ev["min_magnitude"], maxmagnitude=ev["max_magnitude"],
                      maxdepth=ev["max_depth_km"])
        if ev["catalog"]:
            kwargs["catalog"] = ev["catalog"]
        try:
            cat = _with_retries(lambda: client.get_events(**kwargs), "events", fd["retries"], fd["backoff_s"])
        except NoData:
            return Catalog()
        except RetryableError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad answer (HTML, broken XML): one clear error
            raise RuntimeError(f"events from {fd['event_provider']}: answer is not usable QuakeML: "
                               f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
        # the server filtered by magnitude; an event it returns without a magnitude value is kept
        return Catalog([e for e, _, _ in _judgeable(cat, fd["event_provider"], need_magnitude=False)])
    path = embedded_paths()["events"] if data_cfg["source"] == "embedded" else data_cfg["local"]["events"]
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"event file {path} does not exist (data.local.events)")
    keep = []
    for e, o, m in _judgeable(read_events(str(path)), path):
        if not ev["min_magnitude"] <= m.mag <= ev["max_magnitude"]:
            continue
        if (t1 and o.time < t1) or (t2 and o.time > t2) or (o.depth or 0) / 1000.0 > ev["max_depth_km"]:
            continue
        keep.append(e)
    return Catalog(keep)


def _time_range(stations_cfg: dict) -> tuple:
    """(start, end) of ``data.stations`` as UTCDateTime, None where it is not set (no limit)."""
    from obspy import UTCDateTime

    return tuple(None if stations_cfg[k] is None else UTCDateTime(stations_cfg[k]) for k in ("starttime", "endtime"))


def _judgeable(cat, source, need_magnitude: bool = True) -> list:
    """(event, origin, magnitude) of the events that have an origin time (and, with ``need_magnitude``,
    a magnitude value); the others are left out with one warning naming how many, where from and the
    first of them."""
    out, unusable = [], []
    for e in cat:
        o = e.preferred_origin() or (e.origins[0] if e.origins else None)
        m = e.preferred_magnitude() or (e.magnitudes[0] if e.magnitudes else None)
        if o is None or o.time is None or (need_magnitude and (m is None or m.mag is None)):
            unusable.append(str(e.resource_id))
        else:
            out.append((e, o, m))
    if unusable:
        what = "no origin time or no magnitude value" if need_magnitude else "no origin time"
        log.warning("events: %d of %d event(s) from %s have %s and are left out (first: %s)", len(unusable),
                    len(cat), source, what, unusable[0])
    return out


PROVIDER_FIELDS = ("provider", "status", "n_stations", "reason")


def get_stations(data_cfg: dict, clients: dict | None = None, report: list | None = None,
                 dropped: dict | None = None):
    """Station inventory (with responses) and the provider of each station.

    Every provider of ``data.fdsn.providers`` is asked in turn; one that fails (server error after
    the retries, an answer that is not StationXML) is logged and skipped. When ``report`` is a list,
    one row per provider (:data:`PROVIDER_FIELDS`: status ok / nodata / error, the reason) is
    appended to it. When ``dropped`` is a dict, the stations of a local inventory that the channel or
    location patterns leave out are put in it ({NET.STA: (network, station, reason)})."""
    from obspy import Inventory, read_inventory
    from obspy.geodetics import inside_geobounds

    data_cfg = effective_data(data_cfg)
    st = data_cfg["stations"]
    t1, t2 = _time_range(st)
    providers: dict[str, str] = {}
    report = [] if report is None else report
    if data_cfg["source"] == "fdsn":
        from obspy.clients.fdsn import Client

        fd = data_cfg["fdsn"]
        inv = Inventory(networks=[], source="xdisc")
        region = st["region"] or {}
        for provider in fd["providers"]:
            try:
                client = (clients or {}).get(provider) or Client(provider, timeout=fd["timeout_s"],
                                                                 _discover_services=False)
                got = _with_retries(lambda client=client: client.get_stations(
                    network=st["network"], station=st["station"], location=st["location"], channel=st["channel"],
                    starttime=t1, endtime=t2, level="response", **region), f"stations from {provider}",
                    fd["retries"], fd["backoff_s"])
            except NoData:
                log.info("stations: %s has none matching", provider)
                report.append({"provider": provider, "status": "nodata", "n_stations": 0,
                               "reason": "no matching station"})
                continue
            except RetryableError as exc:
                log.error("stations: %s failed: %s; asking the next provider", provider, exc)
                report.append({"provider": provider, "status": "error", "n_stations": 0, "reason": str(exc)})
                continue
            except Exception as exc:  # noqa: BLE001 - a bad answer (HTML, broken XML) from one provider: go on
                reason = f"answer is not usable StationXML: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
                log.error("stations: %s failed: %s; asking the next provider", provider, reason)
                report.append({"provider": provider, "status": "error", "n_stations": 0, "reason": reason})
                continue
            report.append({"provider": provider, "status": "ok", "n_stations": sum(len(net) for net in got),
                           "reason": ""})
            for net in got:
                for sta in net:
                    key = f"{net.code}.{sta.code}"
                    if key not in providers:
                        providers[key] = provider
            inv += got
        return inv, providers
    path = embedded_paths()["inventory"] if data_cfg["source"] == "embedded" else data_cfg["local"]["inventory"]
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"inventory {path} does not exist (data.local.inventory)")
    inv = read_inventory(str(path))
    sel = Inventory(networks=[], source=inv.source)
    for cha in st["channel"].split(","):
        sel += inv.select(network=st["network"], station=st["station"], location=st["location"], channel=cha,
                          starttime=t1, endtime=t2)
    # obspy's box test on the station's coordinates, bounds included (Inventory.select(minlatitude=...) would
    # also drop the channels whose own coordinates lie outside)
    region = st["region"] or {}
    for net in sel:
        net.stations = [s for s in net.stations if inside_geobounds(s, **region)]
        for s in net:
            providers[f"{net.code}.{s.code}"] = data_cfg["source"]
    if dropped is not None:
        chosen = set(providers)
        for net in inv.select(network=st["network"], station=st["station"], starttime=t1, endtime=t2):
            for s in net:
                if f"{net.code}.{s.code}" not in chosen and inside_geobounds(s, **region):
                    have = ", ".join(sorted({f"{c.location_code}.{c.code}" for c in s.channels})) or "none"
                    dropped[f"{net.code}.{s.code}"] = (net.code, s, f"no channel matching data.stations.channel "
                                                       f"{st['channel']!r} and location {st['location']!r} "
                                                       f"(the inventory has {have})")
    report.append({"provider": f"{data_cfg['source']}:{path}", "status": "ok",
                   "n_stations": sum(len(net) for net in sel), "reason": ""})
    return sel, providers


def valid_inventory(inventory):
    """A copy of ``inventory`` without the channels whose location or channel code breaks the SEED rules,
    and {NET.STA: reason} for the stations left without a valid channel (for :func:`station_rows`)."""
    inventory = inventory.copy()
    no_channel = {}
    for net in inventory:
        for sta in net:
            problems = [code_problem("location", cha.location_code or "") or code_problem("channel", cha.code)
                        for cha in sta.channels]
            for cha, problem in zip(sta.channels, problems, strict=True):
                if problem:
                    log.warning("stations: leaving out channel %r of %s.%s: %s", cha.code, net.code, sta.code,
                                problem)
            if sta.channels and all(problems):
                no_channel[f"{net.code}.{sta.code}"] = f"no valid channel ({problems[0]})"
            sta.channels = [cha for cha, problem in zip(sta.channels, problems, strict=True) if not problem]
    return inventory, no_channel


def station_rows(inventory, providers: dict[str, str], skipped: dict[str, str] | None = None) -> list[dict]:
    """One row per station: code, coordinates, provider, and ``status``: "selected", or "skipped" with the
    ``reason`` (a network or station code that breaks the SEED rules, or a reason given in ``skipped``,
    keyed NET.STA). Unique, sorted."""
    rows, places = {}, {}
    for net in inventory:
        for sta in net:
            key = f"{net.code}.{sta.code}"
            reason = code_problem("network", net.code) or code_problem("station", sta.code) or \
                (skipped or {}).get(key, "")
            if reason and key not in rows:
                log.warning("stations: skipping %r: %s", key, reason)
            rows.setdefault(key, _station_row(net.code, sta, providers.get(key, ""), reason))
            span = [None if d is None else str(d)[:19] for d in (sta.start_date, sta.end_date)]
            places.setdefault(key, []).append([*span, sta.latitude, sta.longitude])
    for key, epochs in places.items():
        # a station re-installed elsewhere, or a code re-used (temporary networks re-use theirs): each
        # window is planned at the coordinates of its own epoch; the table's are the first epoch's
        if len({(round(e[2], 4), round(e[3], 4)) for e in epochs}) > 1:
            epochs.sort(key=lambda e: e[0] or "")
            rows[key]["epochs"] = json.dumps(epochs)
            log.info("stations: %s has %d epochs at different places; each event's window is planned at its "
                     "epoch's coordinates", key, len(epochs))
    return [rows[k] for k in sorted(rows)]


def _station_row(network: str, sta, provider: str, reason: str) -> dict:
    """A row of the station table: "selected", or "skipped" when there is a ``reason``."""
    return {"network": network, "station": sta.code, "latitude": sta.latitude, "longitude": sta.longitude,
            "elevation_m": sta.elevation, "provider": provider, "status": "skipped" if reason else "selected",
            "reason": reason, "epochs": ""}


def select_stations(data_cfg: dict):
    """The stations of the ``data`` configuration: (inventory without channels whose codes break the
    SEED rules, one :func:`station_rows` row per station with its status and reason, one row per
    provider with what it answered, :data:`PROVIDER_FIELDS`)."""
    report: list[dict] = []
    dropped: dict = {}
    inventory, providers = get_stations(data_cfg, report=report, dropped=dropped)
    inventory, no_channel = valid_inventory(inventory)
    rows = station_rows(inventory, providers, no_channel)
    for key, (net, sta, reason) in dropped.items():
        log.warning("stations: skipping %s: %s", key, reason)
        rows.append(_station_row(net, sta, data_cfg["source"], reason))
    return inventory, sorted(rows, key=lambda r: f"{r['network']}.{r['station']}"), report
