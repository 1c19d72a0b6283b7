"""miniSEED helpers shared by the downloader and the bulk requests: is it miniSEED at all, channels of a
configuration's comma list, a stream as miniSEED bytes."""

from __future__ import annotations

import io
import threading

import numpy as np

LIBMSEED = threading.RLock()
"""Held around every ObsPy miniSEED read and write of the download threads. ObsPy's libmseed wrapper
points the library's one process-wide log callback at a new Python function on each call; with two
threads inside, one call can log (a record cut off at the end of a file does) through the callback of
another call that has already returned and been freed, and the process dies (segfault). Reading and
writing miniSEED is quick beside a download, so holding this lock costs little."""


def not_mseed(data: bytes) -> str | None:
    """Why ``data`` cannot be miniSEED at all (an HTML error page, XML, text), or None when its first
    record header looks like miniSEED 2 (6-character sequence number, quality D/R/Q/M) or 3 ("MS3")."""
    head = data[:8]
    if head[:3] == b"MS\x03" or (len(head) == 8 and all(c in b"0123456789 \x00" for c in head[:6])
                                 and head[6:7] in (b"D", b"R", b"Q", b"M")):
        return None
    start = data[:512].lstrip().lower()
    kind = ("an HTML page" if start.startswith((b"<!doctype html", b"<html")) or b"<html" in start
            else "XML" if start.startswith(b"<")
            else "text" if start[:64] and all(32 <= c < 127 or c in b"\t\r\n" for c in start[:64])
            else "unknown bytes")
    shown = data[:60].decode("utf-8", errors="replace") if kind != "unknown bytes" else data[:16].hex(" ")
    return f"not miniSEED: the answer is {kind} ({len(data)} bytes, starting {shown!r})"


def select_channels(stream, network, station, location, channel):
    """The traces of ``stream`` of one station whose channel matches one of the comma-separated patterns of
    ``channel`` (and ``location``; "*" or "" for any)."""
    from obspy import Stream

    out = Stream()
    for cha in channel.split(","):
        loc = None if location in ("*", "") else location
        out += stream.select(network=network, station=station, location=loc, channel=cha)
    return out


def to_mseed(stream) -> bytes:
    buf = io.BytesIO()
    for tr in stream:
        if tr.data.dtype.kind == "f" and tr.data.dtype != np.float32:
            tr.data = tr.data.astype(np.float64)
    with LIBMSEED:
        stream.write(buf, format="MSEED")
    return buf.getvalue()
