"""Bulk waveform requests: many event windows of a station in one FDSN dataselect POST.

A global study is 10^4 stations x 10^2-10^3 events; one HTTP request per window would be 10^6-10^7
requests, the traffic data centres throttle or block. FDSN dataselect takes many selections
("NET STA LOC CHA START END" lines) in one POST, as ObsPy's ``Client.get_waveforms_bulk`` and
MassDownloader use it. Here:

* :func:`fetch_bulk` sends a station's missing windows in POSTs of at most ``data.fdsn.bulk_windows``
  windows, cuts each answer back into one miniSEED file per window (:func:`cut_windows`) and gives every
  window its own status, as the per-window path does: ``ok``; ``nodata`` (the answer holds none of its
  samples: a partial answer, or 204/404 for the whole request); ``rejected`` with the reason (a bad
  request that stays bad when the request is split down to this window alone, data that cannot be read);
  ``error`` after the last retry (server errors, timeouts, cut transfers).
* An answer too large for the server (HTTP 413) or a request it calls bad (400) is split in halves and
  each half asked again, down to single windows.
* :class:`ProviderGate` keeps every process that downloads from one provider (all parallel Snakemake
  jobs on this machine, or on a cluster sharing the raw-data folder) to at most
  ``data.fdsn.max_connections`` requests in flight and ``data.fdsn.max_requests_per_s``; a 429 or 503
  answer with ``Retry-After`` is waited out (up to ``data.fdsn.retry_after_max_s``) before the retry.

The POST is sent with the standard library (``urllib``) because ObsPy's client does not expose the
answer's status and headers (``Retry-After``); the URL and the request body are ObsPy's
(``Client._build_url``, ``get_bulk_string``).
"""

from __future__ import annotations

import email.utils
import fcntl
import io
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from xdisc.data.mseed import LIBMSEED, not_mseed, select_channels, to_mseed

log = logging.getLogger(__name__)

USER_AGENT = "xdisc (FDSN bulk dataselect; https://github.com/xdisc)"


class BulkError(RuntimeError):
    """Base of the bulk request outcomes that are not data."""


class SplitRequest(BulkError):
    """The server refuses the request as too large (413) or bad (400): ask for halves of it."""


@dataclass(frozen=True)
class Answer:
    status: int
    data: bytes
    retry_after_s: float | None = None
    reason: str = ""


# ----------------------------------------------------------------------------- politeness

class ProviderGate:
    """At most ``max_connections`` requests in flight and ``max_requests_per_s`` started per second to one
    provider, across every process that shares ``folder`` (POSIX file locks: the parallel download jobs
    of one Snakemake run on a workstation, or on cluster nodes sharing the raw-data folder where the file
    system honours locks). Threads of one process share the same limits."""

    def __init__(self, folder: str | Path, provider: str, max_connections: int = 3, max_requests_per_s: float = 5.0,
                 poll_s: float = 0.05):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = re.sub(r"[^A-Za-z0-9_.-]+", "_", provider)[:100] or "provider"
        self.max_connections = max(1, int(max_connections))
        self.interval_s = 1.0 / max_requests_per_s if max_requests_per_s > 0 else 0.0
        self.poll_s = poll_s
        self._local = threading.Lock()  # flock is per open file: threads take slots through their own fds

    @contextmanager
    def slot(self, stop: threading.Event | None = None):
        """Hold one connection slot and a start time within the rate limit while the body runs."""
        fd = self._take_connection(stop)
        try:
            self._wait_turn(stop)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _take_connection(self, stop) -> int:
        while True:
            for i in range(self.max_connections):
                fd = os.open(self.folder / f"{self.key}.slot{i}", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return fd
            if stop is not None and stop.wait(self.poll_s):
                raise InterruptedError("stopped while waiting for a connection slot")
            if stop is None:
                time.sleep(self.poll_s)

    def _wait_turn(self, stop) -> None:
        """Reserve the next start time (shared file: the earliest time the next request may start)."""
        if self.interval_s <= 0:
            return
        path = self.folder / f"{self.key}.next"
        with self._local, open(path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            text = f.read().strip()
            now = time.time()
            start = max(now, float(text) if _is_float(text) else 0.0)
            f.seek(0)
            f.truncate()
            f.write(f"{start + self.interval_s:.6f}")
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
        delay = start - now
        if delay > 0 and stop is not None and stop.wait(delay):
            raise InterruptedError("stopped while waiting for the rate limit")
        if delay > 0 and stop is None:
            time.sleep(delay)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# ----------------------------------------------------------------------------- one POST

def post_bulk(url: str, body: bytes, timeout_s: float) -> Answer:
    """POST ``body`` (FDSN bulk selection lines) to a dataselect ``query`` URL: the status, the data, and the
    ``Retry-After`` of a 429/503. Network failures (refused, reset, timeout, a cut transfer) raise
    ``OSError`` / ``HTTPException`` for the caller to retry."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"User-Agent": USER_AGENT, "Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return Answer(answer.status, answer.read())
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read()[:300].decode("utf-8", errors="replace")
        except (OSError, HTTPException):
            text = ""
        return Answer(exc.code, b"", retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None),
                      f"HTTP {exc.code}: {' '.join(text.split())[:200] or exc.reason}")


def bulk_lines(requests: Sequence, location: str, channel: str) -> list[tuple]:
    """The selections of ``requests`` (one per window and channel pattern of ``channel``, comma separated;
    bulk lines take no comma lists) as ObsPy's ``get_bulk_string`` takes them."""
    from obspy import UTCDateTime

    loc = "*" if location in ("*", "") else location
    return [(r.network, r.station, loc, cha.strip(), UTCDateTime(r.starttime), UTCDateTime(r.endtime))
            for r in requests for cha in channel.split(",") if cha.strip()]


# ----------------------------------------------------------------------------- answer -> windows

@dataclass(frozen=True)
class Record:
    """One miniSEED 2 record of an answer: its codes, first and last sample time (POSIX s), and bytes."""

    network: str
    station: str
    location: str
    channel: str
    start: float
    end: float
    offset: int
    length: int


def records(data: bytes) -> list[Record]:
    """The records of miniSEED 2 ``data``, from their fixed headers and blockette 1000 (no decoding): the
    way a dataselect answer is cut into windows without decoding and re-encoding it. ValueError where
    the bytes are not whole miniSEED 2 records with a blockette 1000 (the caller then decodes instead)."""
    import calendar
    import struct

    out, pos, n = [], 0, len(data)
    while pos < n:
        if n - pos < 48:
            raise ValueError(f"{n - pos} bytes left at offset {pos}: not a record")
        head = data[pos:pos + 48]
        if head[6:7] not in b"DRQM" or not head[:6].replace(b" ", b"0").replace(b"\0", b"0").isdigit():
            raise ValueError(f"no miniSEED 2 record header at offset {pos}")
        order = ">" if 1900 <= struct.unpack(">H", head[20:22])[0] <= 2100 else "<"
        year, doy, hh, mm, ss, _, frac, nsamp, factor, mult = struct.unpack(order + "HHBBBBHHhh", head[20:36])
        activity = head[36]
        correction, = struct.unpack(order + "i", head[40:44])
        blockette, = struct.unpack(order + "H", head[46:48])
        length = 0
        for _ in range(64):  # the blockette chain, to blockette 1000 (record length)
            if not blockette or blockette + 8 > n - pos:
                break
            kind, following = struct.unpack(order + "HH", data[pos + blockette:pos + blockette + 4])
            if kind == 1000:
                length = 1 << data[pos + blockette + 6]
                break
            blockette = following
        if length < 128 or pos + length > n:
            raise ValueError(f"record at offset {pos}: no blockette 1000 or cut short")
        rate = _sample_rate(factor, mult)
        start = calendar.timegm((year, 1, 1, hh, mm, ss)) + (doy - 1) * 86400 + frac * 1e-4
        if correction and not activity & 0x02:  # a correction not yet applied to the start time
            start += correction * 1e-4
        end = start + (nsamp - 1) / rate if rate > 0 and nsamp > 0 else start
        codes = head[8:20].decode("ascii", errors="replace")
        out.append(Record(codes[10:12].strip(), codes[0:5].strip(), codes[5:7].strip(), codes[7:10].strip(), start,
                          end, pos, length))
        pos += length
    return out


def _sample_rate(factor: int, mult: int) -> float:
    """SEED 2.4 sample-rate factor and multiplier -> samples per second."""
    if factor == 0:
        return 0.0
    f = float(factor) if factor > 0 else -1.0 / factor
    m = float(mult) if mult > 0 else (-1.0 / mult if mult < 0 else 1.0)
    return f * m


def cut_windows(data: bytes, requests: Sequence, channel: str, location: str) -> dict[str, bytes | None]:
    """One miniSEED file's bytes per request (by event id) from a bulk answer, None where the answer holds
    none of its samples. miniSEED 2 answers are cut record by record (every record of the request's station
    and channels that overlaps its window, bytes as the server sent them: what a GET of that window
    returns); other answers are decoded, sliced and encoded again (:func:`_cut_decoded`)."""
    import fnmatch

    from obspy import UTCDateTime

    try:
        recs = records(data)
    except ValueError:
        return _cut_decoded(data, requests, channel, location)
    patterns = [c.strip() for c in channel.split(",") if c.strip()]
    loc_ok = (lambda code: True) if location in ("*", "") else (lambda code: fnmatch.fnmatchcase(code, location))
    by_station: dict[tuple, list[Record]] = {}
    for rec in recs:
        if loc_ok(rec.location) and any(fnmatch.fnmatchcase(rec.channel, p) for p in patterns):
            by_station.setdefault((rec.network, rec.station), []).append(rec)
    out: dict[str, bytes | None] = {}
    for r in requests:
        t1, t2 = UTCDateTime(r.starttime).timestamp, UTCDateTime(r.endtime).timestamp
        mine = [rec for rec in by_station.get((r.network, r.station), ()) if rec.start <= t2 and rec.end >= t1]
        seen, parts = set(), []
        for rec in mine:  # a record the server sent for two overlapping windows is kept once per window
            chunk = data[rec.offset:rec.offset + rec.length]
            if chunk not in seen:
                seen.add(chunk)
                parts.append(chunk)
        out[r.event_id] = b"".join(parts) or None
    return out


def _cut_decoded(data: bytes, requests: Sequence, channel: str, location: str) -> dict[str, bytes | None]:
    """:func:`cut_windows` for answers that are not whole miniSEED 2 records with blockette 1000 (miniSEED 3):
    decode, merge records sent twice (``Stream.merge(method=-1)``), slice per window, encode."""
    from obspy import UTCDateTime, read

    with LIBMSEED:
        st = read(io.BytesIO(data))
    st.merge(method=-1)
    out: dict[str, bytes | None] = {}
    for r in requests:
        sel = select_channels(st, r.network, r.station, location, channel)
        sel = sel.slice(UTCDateTime(r.starttime), UTCDateTime(r.endtime))
        sel.traces = [tr for tr in sel if tr.stats.npts > 0]
        out[r.event_id] = to_mseed(sel.copy()) if len(sel) else None
    return out


# ----------------------------------------------------------------------------- orchestration

@dataclass
class BulkSettings:
    windows: int = 100
    retries: int = 3
    backoff_s: float = 2.0
    retry_after_max_s: float = 600.0
    timeout_s: float = 60.0


def fetch_bulk(requests: list, url: str, gate: ProviderGate, settings: BulkSettings, channel: str, location: str,
               write: Callable, finish: Callable, stop: threading.Event, source_name: str, max_parallel: int = 1
               ) -> None:
    """Fetch ``requests`` (one station's windows) in POSTs of at most ``settings.windows`` windows, up to
    ``max_parallel`` at a time (and never more than ``gate`` lets through). ``write(request, bytes)``
    stores a window's data and sets its status (it validates); ``finish(requests)`` records requests once
    their status is final (one journal write per bulk answer). On ``stop`` (or an exception in the
    calling thread) no new POST starts and the unanswered requests stay pending."""
    from concurrent.futures import ThreadPoolExecutor

    n = max(1, settings.windows)
    chunks = [requests[i:i + n] for i in range(0, len(requests), n)]
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(chunks))))
    try:
        for future in [pool.submit(_fetch_chunk, c, url, gate, settings, channel, location, write, finish, stop,
                                   source_name) for c in chunks]:
            future.result()
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _fetch_chunk(chunk: list, url: str, gate: ProviderGate, s: BulkSettings, channel: str, location: str,
                 write: Callable, finish: Callable, stop: threading.Event, source_name: str) -> None:
    from obspy.clients.fdsn.client import get_bulk_string


    body = get_bulk_string(bulk_lines(chunk, location, channel), {})
    wait = s.backoff_s
    for attempt in range(s.retries + 1):
        if stop.is_set():
            return
        for r in chunk:
            r.attempts, r.source = r.attempts + 1, source_name
        retry_after = None
        try:
            with gate.slot(stop):
                answer = post_bulk(url, body, s.timeout_s)
        except InterruptedError:
            _undo_attempt(chunk)
            return
        except (OSError, HTTPException) as exc:  # refused, reset, timeout, a transfer cut short
            status, reason = "error", f"{type(exc).__name__}: {exc}"[:200]
        else:
            if answer.status == 200 and answer.data:
                problem = not_mseed(answer.data) or (
                    f"truncated miniSEED: {len(answer.data)} bytes is not a whole number of records"
                    if len(answer.data) % 128 else None)
                if problem is None:
                    try:
                        pieces = cut_windows(answer.data, chunk, channel, location)
                    except Exception as exc:  # noqa: BLE001 - an unreadable answer: the whole request again
                        problem = f"unreadable miniSEED: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
                    else:
                        for r in chunk:
                            if pieces[r.event_id] is None:
                                r.status, r.reason = "nodata", "no samples in the bulk answer"
                            else:
                                write(r, pieces[r.event_id])
                        finish(chunk)
                        return
                status, reason = "rejected", problem
                if "truncated" not in problem:  # the same bytes again would not help: split or reject
                    return _split_or_reject(chunk, reason, url, gate, s, channel, location, write, finish, stop,
                                            source_name)
            elif answer.status in (200, 204, 404):
                for r in chunk:
                    r.status, r.reason = "nodata", f"HTTP {answer.status}: no data for this window"
                finish(chunk)
                return
            elif answer.status in (400, 413):
                return _split_or_reject(chunk, answer.reason, url, gate, s, channel, location, write, finish, stop,
                                        source_name)
            elif answer.status in (401, 403):
                for r in chunk:
                    r.status, r.reason = "rejected", f"request refused: {answer.reason}"
                finish(chunk)
                return
            else:  # 429, 5xx: the server is busy or failing
                status, reason, retry_after = "error", answer.reason, answer.retry_after_s
        for r in chunk:
            r.status, r.reason = status, reason
        if attempt == s.retries:
            break
        pause = wait if retry_after is None else min(max(retry_after, 0.0), s.retry_after_max_s)
        log.warning("%s.%s: bulk request of %d window(s): %s; retry %d/%d in %.1f s", chunk[0].network,
                    chunk[0].station, len(chunk), reason, attempt + 1, s.retries, pause)
        if stop.wait(pause):
            for r in chunk:
                r.status = "pending"
            return
        wait *= 2
    finish(chunk)


def _split_or_reject(chunk: list, reason: str, url, gate, s, channel, location, write, finish, stop,
                     source_name) -> None:
    if len(chunk) == 1:
        chunk[0].status, chunk[0].reason = "rejected", reason
        finish(chunk)
        return
    log.info("%s.%s: %s; asking for the %d window(s) in two halves", chunk[0].network, chunk[0].station, reason,
             len(chunk))
    half = len(chunk) // 2
    for part in (chunk[:half], chunk[half:]):
        if stop.is_set():
            return
        _fetch_chunk(part, url, gate, s, channel, location, write, finish, stop, source_name)


def _undo_attempt(chunk: list) -> None:
    for r in chunk:
        r.attempts = max(0, r.attempts - 1)
        r.status = "pending"
