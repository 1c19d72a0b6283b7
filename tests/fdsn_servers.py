"""Real FDSN web services on 127.0.0.1 for downloader tests, with fault injection.

Three pieces, each an object with ``.base_url`` (usable as
``obspy.clients.fdsn.Client(base_url, _discover_services=False)``) and ``.stop()``:

* ``start_dataselect(files, workdir)``: the real ``portable-fdsnws-dataselect`` server (PyPI, 2.0.2) run as a
  subprocess on an index built by the ``mseedindex`` program (PyPI).
* ``start_metadata_server(inventory, events)``: fdsnws-station/1 and fdsnws-event/1 ``query`` answered from a
  StationXML and a QuakeML file with ObsPy (``Inventory.select`` / ``write``, ``Catalog`` / ``write``).
* ``FaultProxy(routes)``: one base URL in front of both, which records every request and injects faults
  (``"400"``, ``"413"``, ``"429"``, ``"500"``, ``"503"`` (the last two with an optional ``Retry-After``),
  ``"204"``, ``"slow"``, ``"truncate"``, ``"close"``).

``rf_example_stack(tmp_path)`` builds all three from the rf package's example files (CX.PB01, 2011).

With ``_discover_services=False`` ObsPy never asks for ``version`` or ``application.wadl``, so the metadata
server does not implement them. Everything listens on 127.0.0.1 only; every wait has a bounded timeout.
"""

from __future__ import annotations

import copy
import http.client
import io
import itertools
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

import obspy
from obspy import UTCDateTime
from obspy.core.event import Catalog
from obspy.core.inventory import Inventory
from obspy.geodetics import locations2degrees

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 20.0  # a server that is not answering after this long has failed
STOP_TIMEOUT_S = 5.0  # grace period for a subprocess or thread to end before it is killed / abandoned
UPSTREAM_TIMEOUT_S = 30.0  # proxy -> real server
REQUEST_READ_TIMEOUT_S = 10.0  # a handler waits at most this long for a client to send its request
MAX_FAULT_DELAY_S = 60.0
FAULT_KINDS = ("400", "413", "429", "500", "503", "204", "slow", "truncate", "close", "html", "badxml")
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\n"
             b"<body><h1>Down for maintenance</h1><p>Please come back later.</p></body></html>\n")
BAD_XML = b'<?xml version="1.0" encoding="UTF-8"?>\n<FDSNStationXML schemaVersion="1.1"><Network code="CX">'
THREAD_PREFIX = "fdsn-test"  # every thread started here is named "fdsn-test..." (leak checks)


class Server:
    """A running service: ``base_url`` for ObsPy's FDSN client, ``stop()`` to end it (idempotent)."""

    base_url: str

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------------------
# fdsnws-dataselect: portable-fdsnws-dataselect on an mseedindex SQLite index
# --------------------------------------------------------------------------------------------------------------

class DataselectServer(Server):
    """``portable-fdsnws-dataselect`` running as a subprocess; its log is ``workdir/dataselect.log``."""

    def __init__(self, process: subprocess.Popen, base_url: str, workdir: Path, index_path: Path,
                 config_path: Path, log_path: Path, maxsectiondays: int):
        self.process = process
        self.base_url = base_url
        self.workdir = workdir
        self.index_path = index_path
        self.config_path = config_path
        self.log_path = log_path
        self.maxsectiondays = maxsectiondays

    def stop(self) -> None:
        _end_process(self.process)

    def log_text(self) -> str:
        return _read_text(self.log_path)


def start_dataselect(mseed_files: Iterable[str | os.PathLike], workdir: str | os.PathLike, *,
                     maxsectiondays: int | None = None,
                     startup_timeout_s: float = STARTUP_TIMEOUT_S) -> DataselectServer:
    """Index ``mseed_files`` with mseedindex and serve them with portable-fdsnws-dataselect on 127.0.0.1.

    ``maxsectiondays`` (the server's limit on how far before a request an index row may start; its default of
    10 answers 204 for rows that start earlier) defaults to the longest index row, in days, plus 1-2 days.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files = [Path(f).resolve() for f in mseed_files]
    if not files:
        raise ValueError("start_dataselect needs at least one miniSEED file")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"miniSEED files not found: {missing}")

    index_path = workdir / "ts.sqlite"
    index_path.unlink(missing_ok=True)
    _run_mseedindex(index_path, files)
    longest_row_days = _repair_index(index_path)
    days = maxsectiondays if maxsectiondays is not None else max(10, int(longest_row_days) + 2)

    log_path = workdir / "dataselect.log"
    config_path = workdir / "dataselect.ini"
    last_error = ""
    for _attempt in range(3):  # the free port is found before the server binds it: retry if someone took it
        port = _free_port()
        config_path.write_text(_dataselect_config(index_path, port, days, log_path))
        console = workdir / "dataselect.console.txt"
        log_start = log_path.stat().st_size if log_path.exists() else 0  # the log appends across attempts
        with open(console, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", _DATASELECT_LAUNCHER, str(os.getpid()), str(config_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        base_url = f"http://{LOOPBACK}:{port}"
        try:
            _wait_until_answering(f"{base_url}/fdsnws/dataselect/1/version", process, startup_timeout_s)
        except _ProcessDied:
            last_error = _read_text(console) + _read_text(log_path)[log_start:][-2000:]
            if "Address already in use" in last_error:
                continue
            raise RuntimeError(f"portable-fdsnws-dataselect exited with code {process.returncode}:\n"
                               f"{last_error}") from None
        except TimeoutError:
            _end_process(process)
            raise RuntimeError(f"portable-fdsnws-dataselect did not answer within {startup_timeout_s} s:\n"
                               f"{_read_text(console)}{_read_text(log_path)[log_start:][-2000:]}") from None
        return DataselectServer(process, base_url, workdir, index_path, config_path, log_path, days)
    raise RuntimeError(f"portable-fdsnws-dataselect could not bind a free port:\n{last_error}")


# portable_fdsnws_dataselect.server.main() (the console script) plus a watchdog: if the test process dies
# without stop() (a crash, a SIGKILL from a timeout), the server ends within half a second instead of lingering.
_DATASELECT_LAUNCHER = """
import os, sys, threading, time
parent = int(sys.argv.pop(1))
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from portable_fdsnws_dataselect.server import main
main()
"""


def _dataselect_config(index_path: Path, port: int, maxsectiondays: int, log_path: Path) -> str:
    # Keys and sections as read by portable_fdsnws_dataselect/server.py main() (2.0.2).
    return (
        "[index_db]\n"
        f"path = {index_path}\n"
        "table = tsindex\n"
        "\n[server]\n"
        f"interface = {LOOPBACK}\n"
        f"port = {port}\n"
        f"maxsectiondays = {maxsectiondays}\n"
        "\n[logging]\n"
        f"path = {log_path}\n"
        "level = INFO\n"
    )


def _mseedindex_program() -> str:
    beside_python = Path(sys.executable).parent / "mseedindex"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("mseedindex")
    if found:
        return found
    raise RuntimeError("the mseedindex program is not installed (pip install mseedindex)")


def _run_mseedindex(index_path: Path, files: list[Path]) -> None:
    env = dict(os.environ, LIBMSEED_LEAPSECOND_FILE="NONE")  # built-in leap second list; no warning
    run = subprocess.run([_mseedindex_program(), "-sqlite", str(index_path), *map(str, files)],
                         check=False, capture_output=True, text=True, timeout=120, env=env)
    if run.returncode != 0:
        raise RuntimeError(f"mseedindex failed (exit {run.returncode}):\n{run.stdout}{run.stderr}")


def _repair_index(index_path: Path) -> float:
    """Make the index readable by portable-fdsnws-dataselect 2.0.2; return the longest row in days.

    mseedindex ends every ``timeindex`` with ``latest=>0|1``, a flag (records in time order), not an offset.
    portable-fdsnws-dataselect 2.0.2 (``miniseed._parse_timeindex``) reads it as "byte offset 1 at the row's
    end time", so any request ending inside a row gets an end offset of 1 and that row ships nothing (BHZ/BHE
    of a window inside one event come back empty while BHN, whose row has no timeindex, does). Dropping the
    flag leaves real (time, offset) pairs, and the server then reads to the end of the row as it should.
    """
    with sqlite3.connect(index_path, timeout=10) as db:
        rows = db.execute("SELECT rowid, timeindex FROM tsindex").fetchall()
        if not rows:
            raise RuntimeError(f"mseedindex wrote no rows to {index_path}")
        for rowid, timeindex in rows:
            if timeindex:
                entries = [e for e in timeindex.split(",") if not e.startswith("latest=>")]
                db.execute("UPDATE tsindex SET timeindex = ? WHERE rowid = ?", (",".join(entries) or None, rowid))
        (longest,) = db.execute("SELECT max(julianday(endtime) - julianday(starttime)) FROM tsindex").fetchone()
    return float(longest or 0.0)


class _ProcessDied(Exception):
    pass


def _wait_until_answering(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _ProcessDied
        try:
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                answer.read()
                return
        except urllib.error.HTTPError:
            return  # it answers HTTP, which is all we wait for
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


def _end_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------------------------
# Threaded HTTP plumbing shared by the metadata server and the proxy
# --------------------------------------------------------------------------------------------------------------

class _LoopbackHTTPServer(ThreadingHTTPServer):
    """Binds 127.0.0.1 on a free port; one named daemon thread per request, joined (bounded) on close."""

    daemon_threads = True

    def __init__(self, handler_class, owner, name: str):
        self.owner = owner
        self.thread_name = name
        self._request_threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        super().__init__((LOOPBACK, 0), handler_class)

    def process_request(self, request, client_address):
        thread = threading.Thread(target=self._run_request, args=(request, client_address),
                                  name=f"{self.thread_name}-request", daemon=True)
        with self._threads_lock:
            self._request_threads.add(thread)
        thread.start()

    def _run_request(self, request, client_address):
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._threads_lock:
                self._request_threads.discard(threading.current_thread())

    def join_request_threads(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._threads_lock:
            threads = list(self._request_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _ThreadedServer(Server):
    def __init__(self, handler_class, name: str):
        self._stopping = threading.Event()
        self._httpd = _LoopbackHTTPServer(handler_class, self, name)
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{name}:{port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()  # wakes handlers sleeping in a "slow" fault
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(STOP_TIMEOUT_S)
        self._httpd.join_request_threads(STOP_TIMEOUT_S)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection, as ObsPy (urllib) uses it
    server_version = "xdisc-test-fdsn/1"
    timeout = REQUEST_READ_TIMEOUT_S

    def log_message(self, format, *args):  # quiet test output
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8",
              extra_headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        if status != 204:  # a 204 carries no body and no length
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        for key, value in extra_headers:
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if status != 204 and body:
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


# --------------------------------------------------------------------------------------------------------------
# fdsnws-station/1 and fdsnws-event/1 from files
# --------------------------------------------------------------------------------------------------------------

class _BadRequest(Exception):
    pass


_ALIASES = {"net": "network", "sta": "station", "loc": "location", "cha": "channel", "start": "starttime",
            "end": "endtime", "minlat": "minlatitude", "maxlat": "maxlatitude", "minlon": "minlongitude",
            "maxlon": "maxlongitude", "lat": "latitude", "lon": "longitude", "minmag": "minmagnitude",
            "maxmag": "maxmagnitude", "magtype": "magnitudetype"}
_GEO = ("minlatitude", "maxlatitude", "minlongitude", "maxlongitude", "latitude", "longitude", "minradius",
        "maxradius")
_SELECTION = ("network", "station", "location", "channel", "starttime", "endtime")
# Parameters accepted and ignored: there is no restricted data, no availability information, and the
# metadata server does not know what the dataselect server holds (matchtimeseries=true answers as if every
# channel had data; ObsPy's mass downloader sends it).
_STATION_IGNORED = ("includerestricted", "includeavailability", "matchtimeseries")
STATION_PARAMETERS = frozenset(_SELECTION + _GEO + ("level", "format", "nodata") + _STATION_IGNORED)
_EVENT_IGNORED = ("includeallorigins", "includeallmagnitudes", "includearrivals")  # answers hold what the file has
EVENT_PARAMETERS = frozenset(("starttime", "endtime", "mindepth", "maxdepth", "minmagnitude", "maxmagnitude",
                              "magnitudetype", "eventid", "limit", "offset", "orderby", "format", "nodata",
                              *_GEO, *_EVENT_IGNORED))
_LEVELS = ("network", "station", "channel", "response")


def _parameters(pairs: Iterable[tuple[str, str]], allowed: frozenset) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs:
        key = _ALIASES.get(key.lower(), key.lower())
        if key not in allowed:
            raise _BadRequest(f"unsupported parameter: {key}")
        if key in out:
            raise _BadRequest(f"parameter given more than once: {key}")
        out[key] = value.strip()
    return out


def _time(params: Mapping[str, str], key: str) -> UTCDateTime | None:
    if key not in params or params[key] in ("", "*"):
        return None
    try:
        return UTCDateTime(params[key])
    except Exception:  # noqa: BLE001 - any failure to parse the request is a 400 for the client
        raise _BadRequest(f"{key}: not a time: {params[key]!r}") from None


def _float(params: Mapping[str, str], key: str) -> float | None:
    if key not in params:
        return None
    try:
        return float(params[key])
    except ValueError:
        raise _BadRequest(f"{key}: not a number: {params[key]!r}") from None


def _int(params: Mapping[str, str], key: str) -> int | None:
    if key not in params:
        return None
    try:
        return int(params[key])
    except ValueError:
        raise _BadRequest(f"{key}: not an integer: {params[key]!r}") from None


def _nodata(params: Mapping[str, str]) -> int:
    code = params.get("nodata", "204")
    if code not in ("204", "404"):
        raise _BadRequest("nodata must be 204 or 404")
    return int(code)


def _geo(params: Mapping[str, str]) -> dict[str, float]:
    geo = {key: _float(params, key) for key in _GEO if key in params}
    radial = {"latitude", "longitude", "minradius", "maxradius"} & geo.keys()
    if radial and not {"latitude", "longitude"} <= geo.keys():
        raise _BadRequest("a radius search needs latitude and longitude")
    return geo


def select_inventory(inventory: Inventory, rows: Iterable[tuple[str, str, str, str, str, str]],
                     level: str = "station", **geo: float) -> Inventory:
    """fdsnws-station selection: rows of (net, sta, loc, cha, start, end) with comma lists and wildcards.

    Each code combination goes through ``Inventory.select``; the answer keeps the inventory's order, holds
    each element once, and is cut to ``level`` (no stations / no channels / channels without response).
    """
    if level not in _LEVELS:
        raise _BadRequest(f"level must be one of {', '.join(_LEVELS)}")
    keep: set[tuple] = set()
    for net, sta, loc, cha, start, end in rows:
        t1 = _time({"t": start}, "t")
        t2 = _time({"t": end}, "t")
        for n, s, lc, c in itertools.product(*(codes.split(",") for codes in (net, sta, loc, cha))):
            part = inventory.select(network=n, station=s, location="" if lc == "--" else lc, channel=c,
                                    starttime=t1, endtime=t2, **geo)
            for network in part:
                keep.add((network.code, _ns(network.start_date)))
                for station in network:
                    keep.add((network.code, station.code, _ns(station.start_date)))
                    for channel in station:
                        keep.add((network.code, station.code, channel.location_code, channel.code,
                                  _ns(channel.start_date)))
    networks = []
    for network in inventory:
        if (network.code, _ns(network.start_date)) not in keep:
            continue
        net = copy.copy(network)
        net.stations = []
        for station in (network if level != "network" else ()):
            if (network.code, station.code, _ns(station.start_date)) not in keep:
                continue
            sta = copy.copy(station)
            sta.channels = []
            for channel in (station if level in ("channel", "response") else ()):
                if (network.code, station.code, channel.location_code, channel.code, _ns(channel.start_date)) in keep:
                    if level == "channel":
                        channel = copy.copy(channel)
                        channel.response = None
                    sta.channels.append(channel)
            net.stations.append(sta)
        networks.append(net)
    return Inventory(networks=networks, source=inventory.source, sender=inventory.sender,
                     module="xdisc tests/fdsn_servers.py")


def _ns(t: UTCDateTime | None) -> int | None:
    return None if t is None else t.ns  # UTCDateTime is not hashable


def select_events(catalog: Catalog, params: Mapping[str, str]) -> Catalog:
    """fdsnws-event selection on the preferred (else first) origin and magnitude of each event."""
    t1, t2 = _time(params, "starttime"), _time(params, "endtime")
    geo = _geo(params)
    mindepth, maxdepth = _float(params, "mindepth"), _float(params, "maxdepth")  # km
    minmag, maxmag = _float(params, "minmagnitude"), _float(params, "maxmagnitude")
    magtype = params.get("magnitudetype")
    eventid = params.get("eventid")
    origin_filters = any(v is not None for v in (t1, t2, mindepth, maxdepth)) or bool(geo)

    def matches(event) -> bool:
        origin = event.preferred_origin() or (event.origins[0] if event.origins else None)
        magnitude = event.preferred_magnitude() or (event.magnitudes[0] if event.magnitudes else None)
        if eventid is not None:
            rid = str(event.resource_id)
            if not (rid == eventid or rid.endswith(("=" + eventid, "/" + eventid))):
                return False
        if origin is None:
            return not origin_filters
        if (t1 is not None and origin.time < t1) or (t2 is not None and origin.time > t2):
            return False
        lat, lon = origin.latitude, origin.longitude
        if not _inside(geo, "minlatitude", lat, 1) or not _inside(geo, "maxlatitude", lat, -1):
            return False
        if not _inside(geo, "minlongitude", lon, 1) or not _inside(geo, "maxlongitude", lon, -1):
            return False
        if "latitude" in geo:
            distance = locations2degrees(geo["latitude"], geo["longitude"], lat, lon)
            if not _inside(geo, "minradius", distance, 1) or not _inside(geo, "maxradius", distance, -1):
                return False
        depth_km = None if origin.depth is None else origin.depth / 1000.0
        if (mindepth is not None or maxdepth is not None) and depth_km is None:
            return False
        if (mindepth is not None and depth_km < mindepth) or (maxdepth is not None and depth_km > maxdepth):
            return False
        if minmag is not None or maxmag is not None or magtype is not None:
            if magnitude is None or magnitude.mag is None:
                return False
            if (minmag is not None and magnitude.mag < minmag) or (maxmag is not None and magnitude.mag > maxmag):
                return False
            if magtype is not None and (magnitude.magnitude_type or "").lower() != magtype.lower():
                return False
        return True

    def origin_time(event):
        origin = event.preferred_origin() or (event.origins[0] if event.origins else None)
        return origin.time if origin is not None else UTCDateTime(0)

    def magnitude_value(event):
        magnitude = event.preferred_magnitude() or (event.magnitudes[0] if event.magnitudes else None)
        return magnitude.mag if magnitude is not None and magnitude.mag is not None else float("-inf")

    orderby = params.get("orderby", "time")
    sort_keys = {"time": (origin_time, True), "time-asc": (origin_time, False),
                 "magnitude": (magnitude_value, True), "magnitude-asc": (magnitude_value, False)}
    if orderby not in sort_keys:
        raise _BadRequest(f"orderby must be one of {', '.join(sort_keys)}")
    key, descending = sort_keys[orderby]
    events = sorted((e for e in catalog if matches(e)), key=key, reverse=descending)
    offset = _int(params, "offset") or 1
    limit = _int(params, "limit")
    if offset < 1 or (limit is not None and limit < 1):
        raise _BadRequest("offset and limit must be >= 1")
    events = events[offset - 1:]
    if limit is not None:
        events = events[:limit]
    return Catalog(events=events)


def _inside(geo: Mapping[str, float], key: str, value: float, sign: int) -> bool:
    """value >= geo[key] (sign 1) or value <= geo[key] (sign -1); True when the bound is not given."""
    return key not in geo or (value - geo[key]) * sign >= 0


class MetadataServer(_ThreadedServer):
    """fdsnws-station/1 and fdsnws-event/1 ``query`` (GET; station also POST) from one StationXML and QuakeML.

    Answers StationXML (``format=xml``, or FDSN text with ``format=text``) and QuakeML; 204 (or ``nodata``)
    when nothing matches, 400 for unsupported parameters or values, 404 for other paths.
    """

    def __init__(self, inventory_path: str | os.PathLike, events_path: str | os.PathLike):
        self.inventory_path = Path(inventory_path)
        self.events_path = Path(events_path)
        self.inventory = obspy.read_inventory(str(self.inventory_path))
        self.catalog = obspy.read_events(str(self.events_path))
        self._obspy_lock = threading.Lock()  # ObsPy objects are shared; one query at a time works on them
        super().__init__(_MetadataHandler, f"{THREAD_PREFIX}-metadata")

    def station_query(self, params: Mapping[str, str], rows: list[tuple]) -> tuple[int, bytes, str]:
        level = params.get("level", "station")
        fmt = params.get("format", "xml")
        nodata = _nodata(params)
        if fmt not in ("xml", "text"):
            raise _BadRequest("format must be xml or text")
        if fmt == "text" and level == "response":
            raise _BadRequest("format=text supports level network, station or channel")
        with self._obspy_lock:
            inv = select_inventory(self.inventory, rows, level, **_geo(params))
            if not inv.networks:
                return nodata, b"", "text/plain"
            if fmt == "xml":
                buffer = io.BytesIO()
                inv.write(buffer, format="STATIONXML")
                return 200, buffer.getvalue(), "application/xml"
            text = io.StringIO()  # ObsPy's station text writer writes str
            inv.write(text, format="STATIONTXT", level=level)
            return 200, text.getvalue().encode(), "text/plain"

    def event_query(self, params: Mapping[str, str]) -> tuple[int, bytes, str]:
        if params.get("format", "xml") != "xml":
            raise _BadRequest("format must be xml")
        nodata = _nodata(params)
        with self._obspy_lock:
            catalog = select_events(self.catalog, params)
            if not catalog.events:
                return nodata, b"", "text/plain"
            buffer = io.BytesIO()
            catalog.write(buffer, format="QUAKEML")
            return 200, buffer.getvalue(), "application/xml"


class _MetadataHandler(_Handler):
    STATION = "/fdsnws/station/1/query"
    EVENT = "/fdsnws/event/1/query"

    def do_GET(self):
        url = urlsplit(self.path)
        pairs = parse_qsl(url.query, keep_blank_values=True)
        if url.path == self.STATION:
            self._answer(lambda: self._station_get(pairs))
        elif url.path == self.EVENT:
            self._answer(lambda: self.server.owner.event_query(_parameters(pairs, EVENT_PARAMETERS)))
        else:
            self._send(404, f"not found: {url.path}\n".encode())

    def do_POST(self):
        url = urlsplit(self.path)
        body = self._read_body().decode("utf-8", errors="replace")
        if url.path == self.STATION:
            self._answer(lambda: self._station_post(body))
        else:
            self._send(404 if url.path != self.EVENT else 405, f"no POST for {url.path}\n".encode())

    def _station_get(self, pairs):
        params = _parameters(pairs, STATION_PARAMETERS)
        row = tuple(params.get(key, "*") for key in _SELECTION)
        return self.server.owner.station_query(params, [row])

    def _station_post(self, body: str):
        pairs, rows = [], []
        for line in body.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" in line and not rows:
                key, _, value = line.partition("=")
                pairs.append((key.strip(), value.strip()))
                continue
            fields = line.split()
            if len(fields) != 6:
                raise _BadRequest(f"selection line needs 6 fields: {line!r}")
            rows.append(tuple(fields))
        if not rows:
            raise _BadRequest("no selection lines in POST body")
        params = _parameters(pairs, STATION_PARAMETERS - set(_SELECTION))
        return self.server.owner.station_query(params, rows)

    def _answer(self, compute):
        try:
            status, body, content_type = compute()
        except _BadRequest as exc:
            self._send(400, f"Error 400: Bad request\n\n{exc}\n".encode())
            return
        except Exception as exc:  # noqa: BLE001 - a bug in the test server answers 500, as a real one would
            self._send(500, f"Error 500: {type(exc).__name__}: {exc}\n".encode())
            return
        self._send(status, body, content_type)


def start_metadata_server(inventory_path: str | os.PathLike, events_path: str | os.PathLike) -> MetadataServer:
    """fdsnws-station/1 and fdsnws-event/1 on 127.0.0.1 (free port) from a StationXML and a QuakeML file."""
    return MetadataServer(inventory_path, events_path)


# --------------------------------------------------------------------------------------------------------------
# Fault-injecting proxy
# --------------------------------------------------------------------------------------------------------------

class ProxyRequest(NamedTuple):
    """One request seen by the proxy, logged in arrival order. ``status`` is the HTTP status sent (the real
    one for "truncate"); ``None`` while the request is in flight, when the connection was dropped ("close"),
    or when writing the answer failed because the client had gone (usually so after a "slow" timeout)."""

    path: str
    query: dict[str, str]  # URL parameters; for POST also the body's key=value lines and "bulk" (selection)
    status: int | None


@dataclass
class Fault:
    kind: str
    path_contains: str | None
    query_contains: str | None
    remaining: int
    delay_s: float
    retry_after: str | None = None

    def matches(self, path: str, query_text: str) -> bool:
        return ((self.path_contains is None or self.path_contains in path)
                and (self.query_contains is None or self.query_contains in query_text))


class FaultProxy(_ThreadedServer):
    """HTTP proxy on 127.0.0.1: ``routes`` maps a path prefix to an upstream base URL (or a ``Server``).

    ``inject(kind, ...)`` queues a fault; each request takes the first queued fault that matches it (path
    and query substrings), ``count`` times. Kinds: "400" / "413" / "429" / "500" / "503" / "204" answer that
    status without asking upstream (a "429" or "503" with ``retry_after`` as its Retry-After header when
    given); "slow" waits ``delay_s`` then answers normally; "truncate" sends the real status and
    Content-Length but half the body, then closes; "close" drops the connection without a status line;
    "html" answers 200 with an HTML maintenance page, "badxml" 200 with cut-off (malformed) XML.
    """

    def __init__(self, routes: Mapping[str, str | Server], *, upstream_timeout_s: float = UPSTREAM_TIMEOUT_S):
        self.routes = sorted(((prefix, getattr(target, "base_url", target).rstrip("/"))
                              for prefix, target in routes.items()), key=lambda r: -len(r[0]))
        self.upstream_timeout_s = upstream_timeout_s
        self._lock = threading.Condition()
        self._faults: list[Fault] = []
        self._requests: list[ProxyRequest] = []
        self._fired: list[tuple[str, str]] = []
        self._in_flight = 0
        self._generation = 0
        super().__init__(_ProxyHandler, f"{THREAD_PREFIX}-proxy")

    def inject(self, kind: str, path_contains: str | None = "dataselect", query_contains: str | None = None,
               count: int = 1, delay_s: float = 3.0, retry_after: str | None = None) -> None:
        """Queue a fault for the next ``count`` requests whose path contains ``path_contains`` (None: any) and
        whose URL-decoded query string or POST body contains ``query_contains`` (e.g. "channel=BHZ")."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {kind!r}")
        if count < 1:
            raise ValueError("count must be >= 1")
        if not 0 <= delay_s <= MAX_FAULT_DELAY_S:
            raise ValueError(f"delay_s must be within 0..{MAX_FAULT_DELAY_S} s")
        with self._lock:
            self._faults.append(Fault(kind, path_contains, query_contains, count, delay_s, retry_after))

    @property
    def requests(self) -> list[ProxyRequest]:
        """Snapshot of the request log (arrival order). A status is logged before it is sent, so once a client
        call has returned its entry is final; only a "slow" request the client gave up on may change later
        (``wait_idle()`` waits for it)."""
        with self._lock:
            return list(self._requests)

    @property
    def fired(self) -> list[tuple[str, str]]:
        """(fault kind, path) for every fault applied so far."""
        with self._lock:
            return list(self._fired)

    @property
    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return [copy.copy(f) for f in self._faults]

    def reset(self) -> None:
        """Forget queued faults and the request log (between tests sharing one proxy)."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._fired.clear()
            self._generation += 1

    def wait_idle(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Wait until no request is being handled (e.g. a "slow" one the client gave up on)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout_s)

    # called by the handler threads
    def _take_fault(self, path: str, query_text: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, query_text):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    self._fired.append((fault.kind, path))
                    return copy.copy(fault)
        return None

    def _begin(self, record: ProxyRequest) -> tuple[int, int]:
        with self._lock:
            self._in_flight += 1
            self._requests.append(record)
            return self._generation, len(self._requests) - 1

    def _set_status(self, slot: tuple[int, int], status: int | None) -> None:
        with self._lock:
            generation, index = slot
            if generation == self._generation:  # not reset() in the meantime
                self._requests[index] = self._requests[index]._replace(status=status)

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def _upstream(self, path: str) -> str | None:
        for prefix, base in self.routes:
            if path.startswith(prefix):
                return base
        return None

    def _forward(self, method: str, upstream: str, path_and_query: str, body: bytes, headers):
        target = urlsplit(upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=self.upstream_timeout_s)
        try:
            forwarded = {k: v for k, v in headers.items()
                         if k.lower() not in ("host", "connection", "accept-encoding", "keep-alive",
                                              "proxy-connection", "te", "upgrade")}
            connection.request(method, target.path + path_and_query, body=body or None, headers=forwarded)
            answer = connection.getresponse()
            data = answer.read()
            keep = [(k, v) for k, v in answer.getheaders() if k.lower() in ("content-type", "content-disposition")]
            return answer.status, keep, data
        finally:
            connection.close()


class _ProxyHandler(_Handler):
    def do_GET(self):
        self._proxy("GET")

    def do_POST(self):
        self._proxy("POST")

    def _proxy(self, method: str) -> None:
        proxy: FaultProxy = self.server.owner
        body = self._read_body() if method == "POST" else b""
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        body_text = body.decode("utf-8", errors="replace")
        if body_text:
            lines = [line.strip() for line in body_text.splitlines() if line.strip()]
            query.update(line.split("=", 1) for line in lines if "=" in line and " " not in line)
            query["bulk"] = "\n".join(line for line in lines if " " in line)
        self._slot = proxy._begin(ProxyRequest(url.path, query, None))
        try:
            self._answer(proxy, method, url, body, body_text)
        finally:
            proxy._end()

    def _log(self, status: int | None) -> None:
        """Log the status before sending it: a client holding its answer finds the request logged."""
        self.server.owner._set_status(self._slot, status)

    def _fail(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        self._log(status)
        self._send(status, f"Error {status}: {message}\n".encode(), extra_headers=headers)

    def _answer(self, proxy: FaultProxy, method: str, url, body: bytes, body_text: str) -> None:
        upstream = proxy._upstream(url.path)
        if upstream is None:
            return self._fail(404, f"no route for {url.path}")
        fault = proxy._take_fault(url.path, unquote(url.query) + "\n" + body_text)
        kind = fault.kind if fault else None
        if kind in ("400", "413", "429", "500", "503"):
            retry = [("Retry-After", fault.retry_after)] if fault.retry_after and kind in ("429", "503") else []
            return self._fail(int(kind), "injected by the test proxy", retry)
        if kind == "204":
            self._log(204)
            return self._send(204)
        if kind == "close":
            self.close_connection = True  # no status line at all; the log keeps None
            return None
        if kind in ("html", "badxml"):  # status 200 with a body that is not what the service promises
            self._log(200)
            return self._send(200, HTML_PAGE if kind == "html" else BAD_XML,
                              "text/html; charset=utf-8" if kind == "html" else "application/xml")
        if kind == "slow" and proxy._stopping.wait(fault.delay_s):
            return None  # the proxy is stopping: give up on this request
        try:
            status, headers, data = proxy._forward(method, upstream, self.path, body, self.headers)
        except (OSError, http.client.HTTPException) as exc:
            return self._fail(502, f"upstream {upstream}: {exc!r}")
        self._log(status)
        try:
            if kind == "truncate" and data:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
            else:
                self._send(status, data, dict(headers).get("Content-Type", "application/octet-stream"),
                           [(k, v) for k, v in headers if k.lower() != "content-type"])
        except OSError:  # the client gave up (e.g. timed out during a "slow" fault)
            self._log(None)
        return None


def asked_windows(proxy) -> list[str]:
    """The start times of the windows asked for in the proxy's dataselect requests (GET parameters, or the
    selection lines of a bulk POST), one entry per window and request."""
    out = []
    for r in proxy.requests:
        if "dataselect" not in r.path:
            continue
        if r.query.get("bulk"):
            out += sorted({line.split()[4][:19] for line in r.query["bulk"].splitlines()})
        else:
            out.append(r.query.get("starttime", "")[:19])
    return out


def fdsn_routes(dataselect: str | Server, metadata: str | Server) -> dict[str, str | Server]:
    """Routes for FaultProxy: dataselect to one server, station and event to the other."""
    return {"/fdsnws/dataselect/": dataselect, "/fdsnws/station/": metadata, "/fdsnws/event/": metadata}


# --------------------------------------------------------------------------------------------------------------
# The whole stack on the rf package's example data
# --------------------------------------------------------------------------------------------------------------

@dataclass
class FdsnStack:
    dataselect: DataselectServer
    metadata: MetadataServer
    proxy: FaultProxy
    mseed_path: Path
    inventory_path: Path
    events_path: Path

    @property
    def base_url(self) -> str:
        return self.proxy.base_url

    def client(self, timeout: float = 10.0):
        """ObsPy FDSN client on the proxy (no service discovery)."""
        from obspy.clients.fdsn import Client

        return Client(self.base_url, _discover_services=False, timeout=timeout)

    def stop(self) -> None:
        for server in (self.proxy, self.metadata, self.dataselect):
            server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def rf_example_paths() -> tuple[Path, Path, Path]:
    """(miniSEED, StationXML, QuakeML) shipped in rf/example: CX.PB01 BH?, 13 Mw~6 events of 2011, 5 Hz."""
    import rf

    example = Path(rf.__file__).parent / "example"
    return (example / "example_data.mseed", example / "example_inventory.xml", example / "example_events.xml")


def rf_example_stack(tmp_path: str | os.PathLike) -> FdsnStack:
    """Dataselect + metadata server + fault proxy on the rf example files; stop() ends all three."""
    mseed, inventory, events = rf_example_paths()
    started: list[Server] = []
    try:
        dataselect = start_dataselect([mseed], Path(tmp_path) / "dataselect")
        started.append(dataselect)
        metadata = start_metadata_server(inventory, events)
        started.append(metadata)
        proxy = FaultProxy(fdsn_routes(dataselect, metadata))
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return FdsnStack(dataselect, metadata, proxy, mseed, inventory, events)
