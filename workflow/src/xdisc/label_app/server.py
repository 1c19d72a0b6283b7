"""The pages of the labelling session and its HTTP server (loopback only: it has no authentication)."""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import math
import socket
import string
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from xdisc.label_app.render import verdict_text
from xdisc.label_app.session import MAX_NOTE_CHARS, LabelSession
from xdisc.labels import ALL_IMAGES, LABELS, LabelError

log = logging.getLogger(__name__)

KEYS = {"p": "present", "a": "absent", "u": "unsure", "s": "skip"}
MAX_POST_BYTES = 64 * 1024


# ----------------------------------------------------------------------------- HTML

def item_url(item: tuple[str, int] | None) -> str:
    if item is None:
        return "/done"
    return f"/item/{urllib.parse.quote(item[0])}/{item[1]}"


_TEMPLATES = resources.files("xdisc.label_app") / "templates"
_FRAME = string.Template((_TEMPLATES / "page.html").read_text(encoding="utf-8").rstrip("\n"))
_STYLE = (_TEMPLATES / "style.css").read_text(encoding="utf-8")
_APP_JS = "".join(line for line in (_TEMPLATES / "app.js").read_text(encoding="utf-8").splitlines(keepends=True)
                  if not line.startswith("// "))  # the file's comment lines stay out of the page


def _script(keys: dict, item: dict) -> str:
    """The page's script: its data (KEYS, ITEM) followed by ``templates/app.js``."""
    return f"\nconst KEYS = {json.dumps(keys)};\nconst ITEM = {json.dumps(item)};\n{_APP_JS}"


def _page(title: str, body: str, script: str = "", head: str = "") -> bytes:
    return _FRAME.substitute(title=html.escape(title), style=_STYLE, head=head, body=body,
                             script=f"<script>{script}</script>" if script else "").encode()


def _progress_text(counts: dict) -> str:
    via = f" ({counts['by_station']} by station labels)" if counts.get("by_station") else ""
    return f"{counts['labelled']} of {counts['total']} labelled{via}"


def _row_text(row: dict) -> str:
    note = f" — “{row['note']}”" if row.get("note") else ""
    return f"{row['label']} (by {row['labeller']}, {row['time']}, {row['source']}){note}"


def _current(label: str, row: dict | None) -> str:
    """Class of a label button: the label, plus ``current`` when ``row`` holds that label."""
    return f"{label} current" if row and row["label"] == label else label


def item_page(session: LabelSession, item: tuple[str, int]) -> bytes:
    station, image = item
    st = session.stations[station]
    counts = session.counts()
    own = session.row(station, image)
    wide = session.row(station, ALL_IMAGES)
    prev_item, next_item = session.neighbour(item, -1), session.neighbour(item, +1)
    upcoming = session.first_unlabelled(after=item)
    e = html.escape
    where = (f" ({st.latitude:.2f}°, {st.longitude:.2f}°)"
             if math.isfinite(st.latitude) and math.isfinite(st.longitude) else "")
    n_rf = st.n_rf[image]
    kind = f" · {e(st.kind[image])}" if st.kind[image] else ""
    lines = [
        "<header>",
        f"<h1 id=title>{e(station)} · image {image} of {st.n_images}</h1>",
        f"<span>n_rf <b id=n_rf>{n_rf if n_rf >= 0 else '?'}</b>{kind}</span>",
        f"<span class=muted>{e(where)}</span>",
        f"<span id=progress><b>{_progress_text(counts)}</b></span>",
        f"<span class=muted>labeller {e(session.labeller)}</span>",
        "</header>",
        f"<p class=ctx id=verdict>{e(verdict_text(session.stack(station)))}</p>",
        f"<p class=ctx id=current>{'This image: ' + e(_row_text(own)) if own else 'This image has no label yet.'}"
        + (f" · Station label: {e(_row_text(wide))}" + ("" if own else " (applies to this image)") if wide else "")
        + "</p>",
        (f"<img id=rf src='/png/{urllib.parse.quote(station)}/{image}.png' width=1300 height=720 "
         f"alt='receiver-function image {e(station)} {image}'>"),
        "<form id=actions class=actions method=post action=/label>",
        f"<input type=hidden name=station value='{e(station)}'><input type=hidden name=image value={image}>",
    ]
    for key, label in KEYS.items():
        cls = _current(label, own)
        lines.append(f"<button type=submit name=label value={label} class='{cls}' id=btn-{label}>"
                     f"<kbd>{key}</kbd> {label}</button>")
    lines += [
        (f"<input type=text id=note name=note maxlength={MAX_NOTE_CHARS} placeholder='note (n to type; Enter or "
         "Esc to leave the field, then the key)' autocomplete=off>"),
        "<span id=status></span></form>",
        # the whole station at once: its images without a label of their own (the form fallback posts image *)
        "<form id=station-actions class=actions method=post action=/label>",
        f"<input type=hidden name=station value='{e(station)}'><input type=hidden name=image value='{ALL_IMAGES}'>",
        f"<span>Whole station ({st.n_images} images; a label of one image overrides it):</span>",
        *(f"<button type=submit name=label value={label} class='{_current(label, wide)}' id=btn-station-{label}>"
          f"<kbd>{key.upper()}</kbd> station {label}</button>" for key, label in KEYS.items()),
        "</form>",
        "<nav>",
        f"<a id=prev href='{item_url(prev_item)}'>← previous</a>" if prev_item else "<span class=muted>← previous"
        "</span> ",
        f"<a id=next href='{item_url(next_item)}'>next →</a>" if next_item else "",
        f"<a id=first-unlabelled href='{item_url(session.first_unlabelled())}'>first unlabelled</a>",
        "<a href=/done>summary</a>",
        ("<span class=muted>keys: <kbd>p</kbd> present · <kbd>a</kbd> absent · <kbd>u</kbd> unsure · <kbd>s</kbd> "
         "skip (with Shift: the whole station) · <kbd>n</kbd> note · <kbd>←</kbd>/<kbd>→</kbd> browse</span>"),
        "</nav>",
    ]
    if session.left_out:
        lines.append(f"<p class=muted>{len(session.left_out)} image file(s) left out: see the summary page.</p>")
    script = _script(KEYS, {"station": station, "image": image, "prev": item_url(prev_item) if prev_item else None,
                            "next": item_url(next_item) if next_item else None})
    prefetch = (f"<link rel=prefetch href='/png/{urllib.parse.quote(upcoming[0])}/{upcoming[1]}.png'>"
                if upcoming and upcoming != item else "")
    return _page(f"{station} image {image} — xdisc label", "\n".join(lines), script, prefetch)


def done_page(session: LabelSession) -> bytes:
    counts = session.counts()
    e = html.escape
    finished = counts["labelled"] == counts["total"]
    rows = "".join(f"<tr><td>{label}</td><td id=count-{label}>{counts[label]}</td></tr>" for label in LABELS)
    stations = [code for code in sorted(session.stations) if session.row(code, ALL_IMAGES)]
    wide = "".join(f"<tr><td>{e(code)}</td><td>{e(_row_text(session.row(code, ALL_IMAGES)))}</td></tr>"
                   for code in stations)
    body = [
        f"<h1 id=done>{'Done: every image is labelled' if finished else 'Summary'}</h1>",
        (f"<p id=progress><b>{_progress_text(counts)}</b> ({len(session.stations)} station(s)); labels in "
         f"<code>{e(str(session.labels_path))}</code></p>"),
        f"<table><tr><th>label</th><th>images</th></tr>{rows}</table>",
        (f"<h2>Station labels</h2><table id=station-labels><tr><th>station</th><th>label</th></tr>{wide}</table>"
         if wide else ""),
        f"<p><a id=review href='{item_url(session.items[0])}'>review from the first image</a>"
        + ("" if finished else f" · <a href='{item_url(session.first_unlabelled())}'>first unlabelled</a>") + "</p>",
    ]
    if session.left_out:
        body.append("<h2>Left out</h2><ul>" + "".join(
            f"<li><code>{e(str(p))}</code>: {e(r)}</li>" for p, r in session.left_out) + "</ul>")
    return _page("xdisc label — summary", "\n".join(body))


# ----------------------------------------------------------------------------- server

class LabelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, session: LabelSession):
        self.session = session
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def allowed_hosts(self) -> set[str]:
        host, port = self.server_address[:2]
        return {f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"}


class _Handler(BaseHTTPRequestHandler):
    server: LabelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # requests go to the debug log, not stderr
        log.debug("label: %s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store" if ctype.startswith("text/html") else "max-age=300")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict):
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _redirect(self, url: str):
        self._send(HTTPStatus.SEE_OTHER, b"", headers={"Location": url})

    def _not_found(self, what: str):
        self._send(HTTPStatus.NOT_FOUND, _page("not found", f"<p>{html.escape(what)}</p><p><a href=/>first "
                                                              "unlabelled image</a></p>"))

    def _host_ok(self) -> bool:
        if self.headers.get("Host", "") not in self.server.allowed_hosts():  # DNS rebinding
            self._send(HTTPStatus.FORBIDDEN, b"unexpected Host header", "text/plain")
            return False
        return True

    def _item(self, station: str, image: str) -> tuple[str, int] | None:
        station = urllib.parse.unquote(station)
        if not image.isdigit() or not self.server.session.has_item(station, int(image)):
            return None
        return station, int(image)

    def do_GET(self):
        if not self._host_ok():
            return
        session = self.server.session
        path = urllib.parse.urlsplit(self.path).path
        parts = [p for p in path.split("/") if p]
        try:
            if not parts:
                session.reload()
                return self._redirect(item_url(session.first_unlabelled()))
            if parts == ["done"]:
                session.reload()
                return self._send(HTTPStatus.OK, done_page(session))
            if parts[0] == "item" and len(parts) == 3:
                item = self._item(parts[1], parts[2])
                if item is None:
                    return self._not_found(f"no image {parts[2]} of station {urllib.parse.unquote(parts[1])}")
                session.reload()
                return self._send(HTTPStatus.OK, item_page(session, item))
            if parts[0] == "png" and len(parts) == 3 and parts[2].endswith(".png"):
                item = self._item(parts[1], parts[2][:-4])
                if item is None:
                    return self._not_found("no such image")
                return self._send(HTTPStatus.OK, session.png(*item), "image/png")
            if parts == ["favicon.ico"]:
                return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            return self._not_found(f"no page {path}")
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as exc:  # one bad file must not stop the server
            log.exception("label: GET %s failed", path)
            return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, _page("error", f"<p class=err>{html.escape(str(exc))}"
                                                                               "</p><p><a href=/>back</a></p>"))

    do_HEAD = do_GET

    def do_POST(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_POST_BYTES:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "request too large"})
        raw = self.rfile.read(length)
        if not self._host_ok():
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.server.allowed_hosts():
            return self._json(HTTPStatus.FORBIDDEN, {"error": f"cross-origin request from {origin}"})
        if urllib.parse.urlsplit(self.path).path != "/label":
            return self._json(HTTPStatus.NOT_FOUND, {"error": "POST only to /label"})
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            if ctype == "application/json":
                data = json.loads(raw or b"{}")
                if not isinstance(data, dict):
                    raise LabelError("the request body must be a JSON object")
            else:  # a plain form (the page without JavaScript)
                data = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode(), keep_blank_values=True).items()}
            image = data.get("image")
            if isinstance(image, str) and image.strip().isdigit():
                image = int(image)
            elif isinstance(image, str) and image.strip() == ALL_IMAGES:
                image = ALL_IMAGES
            if image != ALL_IMAGES and (not isinstance(image, int) or isinstance(image, bool)):
                raise LabelError(f"image must be an image index or {ALL_IMAGES} (the whole station), got {image!r}")
            station = str(data.get("station", ""))
            row = self.server.session.save(station, image, str(data.get("label", "")), str(data.get("note", "")))
        except (LabelError, ValueError, UnicodeDecodeError) as exc:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except OSError as exc:
            log.error("label: could not write %s: %s", self.server.session.labels_path, exc)
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"label not saved: {exc}"})
        after = (station, 0) if image == ALL_IMAGES else (station, image)
        nxt = item_url(self.server.session.first_unlabelled(after=after))
        if ctype == "application/json":
            return self._json(HTTPStatus.OK, {"saved": row, "next": nxt})
        return self._redirect(nxt)


def _check_loopback(host: str) -> None:
    try:
        addr = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError) as exc:
        raise LabelError(f"--host {host}: {exc}") from exc
    if not addr.is_loopback:
        raise LabelError(f"--host {host} is not a loopback address: the labelling page has no authentication; "
                         "serve on 127.0.0.1 and reach it from elsewhere through an SSH tunnel (ssh -L)")


def make_server(session: LabelSession, host: str = "127.0.0.1", port: int = 0) -> LabelServer:
    """A :class:`LabelServer` bound to ``host:port`` (loopback only; port 0 picks a free port)."""
    _check_loopback(host)
    try:
        return LabelServer((host, port), session)
    except OSError as exc:
        raise LabelError(f"cannot listen on {host}:{port}: {exc}") from exc


def serve(images: Path, labels: Path, labeller: str | None, stacks: Path | None, host: str = "127.0.0.1",
          port: int = 0, open_browser: bool = False, ready=None) -> int:
    """Serve the labelling page until interrupted (``xdisc label``); 0, or 1 after logging why it cannot start.
    ``ready(server)``, when given, is called once it listens."""
    try:
        if not labeller:
            raise LabelError("xdisc label needs --labeller NAME")
        session = LabelSession.open(images, labels, labeller, stacks)
        server = make_server(session, host, port)
    except (LabelError, OSError) as exc:
        log.error("label: %s", exc)
        return 1
    counts = session.counts()
    log.info("label: %d image(s) of %d station(s), %s; labels -> %s", counts["total"], len(session.stations),
             _progress_text(counts), session.labels_path)
    print(f"xdisc label: serving {server.url} (Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    if ready is not None:
        ready(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    log.info("label: stopped; %s", _progress_text(session.counts()))
    return 0
