"""Expert labels of station images: the local labelling page (``xdisc label``), the import of
published tables (``xdisc label import``) and the reader used by fine-tuning.

Label file (``data/labels/*.csv``)
    CSV, UTF-8, header ``station,image,label,labeller,time,note,source`` (:data:`COLUMNS`), one row
    per decision, append-only: rows are never rewritten or dropped, and for every (station, image)
    the *latest* row wins (a relabel is a new row). ``station`` is ``NET.STA``; ``image`` is the
    image index of ``results/images/{NET}.{STA}.nc`` or ``*`` (every image of the station; a label
    of one image overrides it); ``label`` is one of :data:`LABELS` (``present``, ``absent``,
    ``unsure``, ``skip``; fine-tuning uses only present/absent); ``time`` is ISO-8601 UTC;
    ``source`` is ``xdisc label`` for the page, the table's file name for an import. Every row is
    flushed and fsync-ed before the page is told it was saved, so a crash never loses one.

The labelling page (``xdisc label --images DIR --stacks DIR --labels CSV --labeller NAME``)
    A web server on 127.0.0.1 (loopback only: it has no authentication) with one page per
    (station, image): the image's amplitude channel and its significance (amplitude over the noise
    channel; older files: the t-value channel), rendered here with matplotlib,
    the station's depth stack with its bootstrap band and the stacking verdict from
    ``results/stack/{NET}.{STA}.nc`` when there is one. Keys ``p`` present, ``a`` absent,
    ``u`` unsure, ``s`` skip (or the buttons) save at once and move to the next unlabelled image;
    ``n`` (or a click) enters the note field, Enter or Esc leaves it; left/right arrows browse.
    The page opened at ``/`` is always the first image without a label of its own (stations
    sorted by code, then image index), so a restarted server resumes where the last one stopped.
    Station-wide (``*``) rows in the label file are shown as context but do not count as a label
    of the image. Unreadable image files are left out with a logged reason.

Published tables (``xdisc label import TABLE.csv --labels CSV [--source NAME]``)
    CSV (comma, semicolon or tab; ``#`` lines are comments) with a header holding at least
    ``station`` (``NET.STA``) and ``verdict`` or ``label`` (``label`` is used when both are given),
    whose values are, case-insensitively, ``present`` / ``yes`` / ``y`` / ``1`` / ``x`` / ``true``,
    ``absent`` / ``no`` / ``n`` / ``0`` / ``nox`` / ``no x`` / ``no-x`` / ``no_x`` / ``false`` or
    ``unsure`` / ``uncertain`` / ``?``. Optional columns ``latitude``, ``longitude``, ``bin``,
    ``x_depth_km`` and ``reference`` are kept in the note (``key=value; ...``); others are ignored.
    One row per station is appended with ``image`` = ``*``, ``labeller`` = the source name (default:
    the table's file name without suffix) and ``source`` = the table's file name. The whole table is
    validated first: an unknown value, a bad station code or a station listed with two different
    verdicts is an error naming its line, and nothing is appended.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import html
import io
import ipaddress
import json
import logging
import math
import os
import re
import socket
import threading
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

COLUMNS = ("station", "image", "label", "labeller", "time", "note", "source")
LABELS = ("present", "absent", "unsure", "skip")
ALL_IMAGES = "*"  # image value of a station-wide label
PAGE_SOURCE = "xdisc label"
DEFAULT_LABELS = Path("data/labels/labels.csv")
DEFAULT_IMAGES = Path("results/images")
DEFAULT_STACKS = Path("results/stack")
KEYS = {"p": "present", "a": "absent", "u": "unsure", "s": "skip"}
MAX_NOTE_CHARS = 2000
MAX_POST_BYTES = 64 * 1024

# values accepted in published tables (lower case, surrounding blanks removed)
TABLE_VALUES = {
    **dict.fromkeys(("present", "yes", "y", "1", "x", "true"), "present"),
    **dict.fromkeys(("absent", "no", "n", "0", "nox", "no x", "no-x", "no_x", "false"), "absent"),
    **dict.fromkeys(("unsure", "uncertain", "?"), "unsure"),
}
TABLE_NOTE_COLUMNS = ("latitude", "longitude", "bin", "x_depth_km", "reference")
STATION_CODE = re.compile(r"^[A-Za-z0-9_-]{1,8}\.[A-Za-z0-9_-]{1,8}$")

# display (the page only: nothing here changes a label or a science product)
X_WINDOW_KM = (250.0, 350.0)  # used when the stacking result does not record its own window
NOMINAL_KM = (410.0, 660.0)
DEPTH_LIMITS_KM = (0.0, 800.0)
COLOUR_FROM_KM = 100.0  # the amplitude colour scale is set from depths below this one
AMPLITUDE_LIMITS = (0.05, 0.2)  # range of the colour limit: weak 0.02-0.05 arrivals stay visible
T_VALUE_LIMIT = 4.0
DIVERGING_CMAP = "RdBu_r"
FIGSIZE_IN, DPI = (13.0, 7.2), 100
PNG_CACHE = 48


class LabelError(ValueError):
    """A problem the user can fix (bad input, bad table, nothing to label)."""


# ----------------------------------------------------------------------------- label file

def utc_now() -> str:
    """ISO-8601 UTC time to the second, e.g. ``2025-05-01T12:00:00+00:00``."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _check_header(path: Path, first_line: str) -> None:
    header = next(csv.reader([first_line]), [])
    if tuple(h.strip() for h in header) != COLUMNS:
        raise LabelError(f"{path} is not a label file: header {','.join(header) or '(empty)'}, "
                         f"expected {','.join(COLUMNS)}")


def ensure_label_file(path: str | Path) -> Path:
    """Create ``path`` (and its folder) holding only the header, or check the header of an existing file."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        with open(path, encoding="utf-8-sig", newline="") as f:
            _check_header(path, f.readline())
        return path
    append_labels(path, [])
    return path


FREE_TEXT = ("labeller", "note")  # columns a person types: guarded against spreadsheet formulas
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text) -> str:
    """``text`` as stored in a free-text column: a leading ``'`` when it starts like a formula (=, +, -, @,
    tab, CR), so that a spreadsheet opening the label file shows it as text instead of evaluating it."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_START) else text


def append_labels(path: str | Path, rows: list[dict]) -> None:
    """Append ``rows`` (dicts with the keys of :data:`COLUMNS`) to the label file ``path``.

    Creates the file with its header (and its folder) when missing. The rows are flushed and
    fsync-ed before returning; a last line cut off by an earlier crash is ended first, so a new
    row never merges with it."""
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        with open(path, "rb") as f:
            _check_header(path, f.readline().decode("utf-8-sig", "replace"))
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with open(path, "a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n", extrasaction="raise")
        if new:
            writer.writeheader()
        elif torn:
            f.write("\n")
        for row in rows:
            writer.writerow({k: spreadsheet_safe(row.get(k, "")) if k in FREE_TEXT else row.get(k, "")
                             for k in COLUMNS})
        f.flush()
        os.fsync(f.fileno())
    if new:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the file itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _image_key(value: str) -> int | str | None:
    value = value.strip()
    if value == ALL_IMAGES:
        return ALL_IMAGES
    return int(value) if value.isdigit() else None


def read_label_rows(path: str | Path) -> dict[tuple[str, int | str], dict]:
    """The latest row of every (station, image) of a label file, as dicts of :data:`COLUMNS`.

    ``image`` is an int or ``"*"``. A row with an unknown label or image (such as a line cut off
    by a crash) is left out with a warning naming its line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    latest: dict[tuple[str, int | str], dict] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return latest
        _check_header(path, ",".join(header))
        for fields in reader:
            if not fields:
                continue
            row = dict(zip(COLUMNS, fields))
            image = _image_key(row.get("image", ""))
            label = row.get("label", "").strip()
            if len(fields) != len(COLUMNS) or image is None or label not in LABELS or not row["station"].strip():
                log.warning("%s line %d left out: not a label row (%s)", path, reader.line_num, ",".join(fields))
                continue
            row.update(station=row["station"].strip(), image=image, label=label)
            latest[(row["station"], image)] = row
    return latest


def read_labels(path: str | Path) -> dict[tuple[str, int | str], str]:
    """``{(station, image): label}`` of a label file, the latest row winning; image is an int or ``"*"``."""
    return {key: row["label"] for key, row in read_label_rows(path).items()}


def labels_for_images(labels: dict, station: str, n_images: int) -> list[str | None]:
    """Label of each image ``0 .. n_images-1`` of ``station``: its own label, else the station-wide
    (``"*"``) one, else None."""
    wide = labels.get((station, ALL_IMAGES))
    return [labels.get((station, j), wide) for j in range(n_images)]


# ----------------------------------------------------------------------------- published tables

def _comment_free(f):
    """Lines of ``f`` with ``#`` comment lines blanked (line numbers stay those of the file)."""
    for line in f:
        yield "\n" if line.lstrip().startswith("#") else line


def parse_table(path: str | Path, source: str | None = None, time: str | None = None) -> list[dict]:
    """Label rows (``image`` = ``*``) of a published table; see the module docstring for its format.

    Validates every line before returning; raises :class:`LabelError` naming the first bad lines."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"table {path} does not exist")
    source = source or path.stem
    time = time or utc_now()
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    lines = list(_comment_free(io.StringIO(text, newline=None)))
    first = next((ln for ln in lines if ln.strip()), "")
    delimiter = max(",;\t", key=first.count) if first else ","
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip().lower() for h in next((r for r in reader if r), [])]
    column = "label" if "label" in header else "verdict" if "verdict" in header else None
    if "station" not in header or column is None:
        raise LabelError(f"{path}: needs the columns station and verdict (or label); header has "
                         f"{', '.join(header) or 'nothing'}")
    errors: list[str] = []
    rows: dict[str, dict] = {}
    first_line: dict[str, int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(v.strip() for v in fields):
            continue
        row = dict(zip(header, fields))
        station = (row.get("station") or "").strip()
        value = (row.get(column) or "").strip()
        label = TABLE_VALUES.get(value.lower())
        if not STATION_CODE.match(station):
            errors.append(f"line {line}: station {station!r} is not NET.STA")
            continue
        if label is None:
            errors.append(f"line {line}: {column} {value!r} of {station} is not one of "
                          f"{'/'.join(sorted(TABLE_VALUES))}")
            continue
        note = "; ".join(f"{k}={row[k].strip()}" for k in TABLE_NOTE_COLUMNS if k in row and (row[k] or "").strip())
        if station in rows:
            if rows[station]["label"] != label:
                errors.append(f"line {line}: {station} is {label} here but {rows[station]['label']} on line "
                              f"{first_line[station]}")
            continue
        first_line[station] = line
        rows[station] = {"station": station, "image": ALL_IMAGES, "label": label, "labeller": source, "time": time,
                         "note": note, "source": path.name}
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise LabelError(f"{path}: nothing imported: " + "; ".join(errors[:10]) + more)
    if not rows:
        raise LabelError(f"{path}: no station rows")
    return list(rows.values())


def import_table(table: str | Path, labels: str | Path, source: str | None = None) -> list[dict]:
    """Validate ``table`` and append its rows to the label file ``labels``; return the rows appended."""
    rows = parse_table(table, source)
    ensure_label_file(labels)
    append_labels(labels, rows)
    return rows


# ----------------------------------------------------------------------------- station images

@dataclass
class StationImages:
    """What the page needs to know of one image file (the image data are read on demand)."""

    code: str
    path: Path
    n_rf: list[int]
    kind: list[str]
    latitude: float = math.nan
    longitude: float = math.nan
    variable: str = "image"  # name of the image array in the file

    @property
    def n_images(self) -> int:
        return len(self.n_rf)


IMAGE_AXES = ("channel", "slowness_bin", "depth")  # the last three dimensions of the image array


def image_variable(ds) -> str:
    """Name of the image array of a station image file: ``image`` (a data variable, or a coordinate when the
    file has no separate image index), else the only 4-D variable whose last dimensions are :data:`IMAGE_AXES`."""
    if "image" in ds.variables and ds["image"].ndim == 4:
        return "image"
    found = [str(n) for n, v in ds.variables.items() if v.ndim == 4 and tuple(v.dims[1:]) == IMAGE_AXES]
    if len(found) != 1:
        raise LabelError(f"no image array with dimensions (image, {', '.join(IMAGE_AXES)})" if not found else
                         f"several image arrays: {', '.join(found)}")
    return found[0]


def scan_image_file(path: Path) -> StationImages:
    """Read the layout of one station's image file; raise :class:`LabelError` with the reason when unusable."""
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            var = image_variable(ds)
            dims = ds[var].dims
            if tuple(dims[1:]) != IMAGE_AXES:
                raise LabelError(f"{var} has dimensions {dims}, expected (image, {', '.join(IMAGE_AXES)})")
            if "amplitude" not in [str(c) for c in ds["channel"].values]:
                raise LabelError("no channel 'amplitude'")
            code = f"{ds['network'].item()}.{ds['station'].item()}"
            n = ds.sizes[dims[0]]
            n_rf = [int(v) for v in ds["n_rf"].values] if "n_rf" in ds else [-1] * n
            kind = [str(v) for v in ds["kind"].values] if "kind" in ds else [""] * n
            lat = float(ds["latitude"]) if "latitude" in ds.variables else math.nan
            lon = float(ds["longitude"]) if "longitude" in ds.variables else math.nan
    except LabelError:
        raise
    except Exception as exc:  # corrupt NetCDF, missing coordinate, ...: the file is left out, never the page
        raise LabelError(f"{type(exc).__name__}: {exc}") from exc
    if n == 0:
        raise LabelError("no image (too few receiver functions)")
    if len(n_rf) != n or len(kind) != n:
        raise LabelError(f"n_rf or kind has not one value per image ({n})")
    return StationImages(code, Path(path), n_rf, kind, lat, lon, var)


def _read_image(st: StationImages, image: int):
    """One image as a DataArray (channel, slowness_bin, depth)."""
    import xarray as xr

    with xr.open_dataset(st.path, engine="netcdf4") as ds:
        arr = ds[st.variable]
        return arr[image].load().rename("image")


def _read_stack(path: Path):
    import xarray as xr

    with xr.open_dataset(path, engine="netcdf4") as ds:
        keep = [v for v in ("depth_stack", "depth_stack_lower", "depth_stack_upper") if v in ds]
        return ds[keep].load()


# ----------------------------------------------------------------------------- figure

def _attr_float(attrs, key) -> float:
    try:
        return float(np.asarray(attrs.get(key), float).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return math.nan


def _x_window(attrs) -> tuple[float, float]:
    w = np.asarray(attrs.get("x_window_km", []), float).ravel() if attrs is not None else np.array([])
    return (float(w[0]), float(w[1])) if w.size == 2 and np.isfinite(w).all() else X_WINDOW_KM


def amplitude_limit(amplitude: np.ndarray, depth_km: np.ndarray) -> float:
    """Colour limit of the amplitude channel: the 99th percentile of |amplitude| below
    :data:`COLOUR_FROM_KM`, kept within :data:`AMPLITUDE_LIMITS` (Moho and P saturate on purpose)."""
    deep = np.abs(np.asarray(amplitude, float)[..., np.asarray(depth_km) >= COLOUR_FROM_KM])
    ref = float(np.nanpercentile(deep, 99)) if np.isfinite(deep).any() else AMPLITUDE_LIMITS[0]
    return float(np.clip(ref, *AMPLITUDE_LIMITS))


def image_figure(img, stack=None, title: str = ""):
    """Figure of one image (DataArray: channel x slowness_bin x depth) and the station's depth stack.

    ``stack`` is the dataset of ``results/stack`` or None. Returns a :class:`matplotlib.figure.Figure`
    with its own Agg canvas (no pyplot)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(1, 3, width_ratios=[1.0, 1.0, 1.05])
    ax_amp = fig.add_subplot(gs[0, 0])
    ax_t = fig.add_subplot(gs[0, 1], sharey=ax_amp)
    ax_st = fig.add_subplot(gs[0, 2], sharey=ax_amp)
    depth = np.asarray(img["depth"], float)
    slowness = np.asarray(img["slowness_bin"], float)
    window = _x_window(stack.attrs if stack is not None else None)
    cmap = matplotlib.colormaps[DIVERGING_CMAP].with_extremes(bad="0.8")
    channels = [str(c) for c in img["channel"].values]
    second = "noise" if "noise" in channels else "t_value"
    for ax, name in ((ax_amp, "amplitude"), (ax_t, second)):
        if name not in channels:
            ax.text(0.5, 0.5, f"no channel {name}", transform=ax.transAxes, ha="center", color="0.4")
            continue
        values = np.asarray(img.sel(channel=name).transpose("slowness_bin", "depth"), float)
        if name == "noise":  # show significance: amplitude over its expected noise
            amp = np.asarray(img.sel(channel="amplitude").transpose("slowness_bin", "depth"), float)
            with np.errstate(invalid="ignore", divide="ignore"):
                values = np.where(values > 0, amp / values, np.nan)
        if name == "amplitude":
            vmax = amplitude_limit(values, depth)
            label = f"amplitude / direct P (colour limit ±{vmax:.3g})"
            ax.set_title("Amplitude (moveout-corrected stack)", fontsize=11)
        else:
            vmax = T_VALUE_LIMIT
            label = ("amplitude / its noise level" if name == "noise" else "t value (mean / standard error)")
            ax.set_title("significance" if name == "noise" else "t value", fontsize=11)
        mesh = ax.pcolormesh(slowness, depth, np.ma.masked_invalid(values.T), cmap=cmap, norm=Normalize(-vmax, vmax),
                             shading="nearest", rasterized=True)
        fig.colorbar(mesh, ax=ax, extend="both", pad=0.01, fraction=0.07, location="bottom").set_label(label)
        ax.set_xlabel("slowness (s/km)")
        for d in window:
            ax.axhline(d, color="k", ls="--", lw=1.0)
        for d in NOMINAL_KM:
            ax.axhline(d, color="0.15", ls=":", lw=1.1)
        if slowness.size > 1:
            ax.set_xlim(slowness[0] - 0.5 * (slowness[1] - slowness[0]),
                        slowness[-1] + 0.5 * (slowness[-1] - slowness[-2]))
    ax_amp.set_ylabel("depth (km)")
    ax_amp.set_ylim(DEPTH_LIMITS_KM[1], DEPTH_LIMITS_KM[0])
    tick_side = ax_t.secondary_yaxis("right")
    tick_side.set_yticks([*window, *NOMINAL_KM], labels=[f"X {window[0]:.0f}", f"X {window[1]:.0f}", "410", "660"])
    tick_side.tick_params(labelsize=8, length=3)
    _stack_panel(ax_st, stack, window)
    if title:
        fig.suptitle(title, fontsize=13)
    return fig


def _stack_panel(ax, stack, window) -> None:
    ax.set_title("Station depth stack (stacking method)", fontsize=11)
    ax.set_xlabel("amplitude (relative to P)")
    ax.axhspan(*window, color="#f5b041", alpha=0.25, lw=0, label=f"X window {window[0]:.0f}-{window[1]:.0f} km")
    ax.axvline(0.0, color="k", lw=0.7)
    if stack is None or "depth_stack" not in stack or not np.isfinite(np.asarray(stack["depth_stack"], float)).any():
        for d in NOMINAL_KM:
            ax.axhline(d, color="0.15", ls=":", lw=1.1)
        ax.text(0.5, 0.78, "no stacking result" if stack is None else "no depth stack", transform=ax.transAxes,
                ha="center", va="center", color="0.35", fontsize=12)
        ax.set_xlim(-0.05, 0.1)
        ax.legend(loc="upper right", fontsize=8)
        return
    a = stack.attrs
    for key, nominal, colour in (("d410_km", 410.0, "#6c3483"), ("d660_km", 660.0, "#117a65")):
        d = _attr_float(a, key)
        measured = math.isfinite(d)
        ax.axhline(d if measured else nominal, color=colour, ls="--" if measured else ":", lw=1.1,
                   label=f"{nominal:.0f} at {d:.0f} km" if measured else f"{nominal:.0f} (nominal)")
    depth = np.asarray(stack["depth"], float)
    values = np.asarray(stack["depth_stack"], float)
    if "depth_stack_lower" in stack and "depth_stack_upper" in stack:
        lower, upper = np.asarray(stack["depth_stack_lower"], float), np.asarray(stack["depth_stack_upper"], float)
        ax.fill_betweenx(depth, lower, upper, color="0.6", alpha=0.5, lw=0, label="95 % bootstrap")
        parts = [values, lower, upper]
    else:
        parts = [values]
    ax.fill_betweenx(depth, 0.0, values, where=values > 0, color="#c0392b", alpha=0.35, lw=0, interpolate=True)
    ax.plot(values, depth, color="k", lw=1.2, label="mean stack")
    deep = depth >= COLOUR_FROM_KM + 50.0
    peak = max(float(np.nanmax(np.abs(np.concatenate([p[deep] for p in parts])))) if deep.any() else 0.05, 1e-3)
    ax.set_xlim(-0.6 * 1.15 * peak, 1.15 * peak)
    x_depth, x_amp = _attr_float(a, "x_depth_km"), _attr_float(a, "x_amp")
    if a.get("verdict") == "present" and math.isfinite(x_depth):
        if not math.isfinite(x_amp):
            x_amp = float(np.interp(x_depth, depth, values))
        ax.plot([x_amp], [x_depth], marker="*", ms=15, color="#f1c40f", mec="k", mew=0.9, ls="none", zorder=6,
                label=f"X at {x_depth:.0f} km")
    ax.grid(color="0.9", lw=0.5)
    ax.legend(loc="upper right", fontsize=8)


def render_png(img, stack=None, title: str = "") -> bytes:
    """PNG bytes of :func:`image_figure`."""
    fig = image_figure(img, stack, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def verdict_text(stack) -> str:
    """One line on the stacking result: verdict, X depth and amplitude, reason."""
    if stack is None:
        return "no stacking result"
    a = stack.attrs
    verdict = str(a.get("verdict", "undetermined"))
    parts = [f"stacking verdict: {verdict}"]
    depth, amp, err = _attr_float(a, "x_depth_km"), _attr_float(a, "x_amp"), _attr_float(a, "x_depth_err_km")
    if math.isfinite(depth):
        parts.append(f"X at {depth:.0f}" + (f" ± {err:.0f}" if math.isfinite(err) else "") + " km"
                     + (f", amplitude {amp:.3f}" if math.isfinite(amp) else ""))
    if str(a.get("reason", "")).strip():
        parts.append(str(a["reason"]))
    n_rf = _attr_float(a, "n_rf")
    if math.isfinite(n_rf):
        parts.append(f"{int(n_rf)} receiver functions")
    return " — ".join(parts)


# ----------------------------------------------------------------------------- session state

@dataclass
class LabelSession:
    """Images to label, the label file and what is labelled (thread-safe)."""

    stations: dict[str, StationImages]
    labels_path: Path
    labeller: str
    stacks_dir: Path | None = None
    left_out: list[tuple[Path, str]] = field(default_factory=list)
    items: list[tuple[str, int]] = field(init=False)
    _index: dict = field(init=False, default_factory=dict)
    _rows: dict = field(init=False, default_factory=dict)
    _stamp: tuple = field(init=False, default=())
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _io_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _png: OrderedDict = field(init=False, default_factory=OrderedDict)
    _stacks: dict = field(init=False, default_factory=dict)

    def __post_init__(self):
        self.labeller = self.labeller.strip()
        if not self.labeller:
            raise LabelError("the labeller name is empty (--labeller NAME)")
        if not self.stations:
            raise LabelError("no station images to label")
        self.items = [(code, j) for code in sorted(self.stations) for j in range(self.stations[code].n_images)]
        self._index = {item: i for i, item in enumerate(self.items)}
        ensure_label_file(self.labels_path)
        self.reload()

    @classmethod
    def open(cls, images_dir: str | Path, labels_path: str | Path, labeller: str,
             stacks_dir: str | Path | None = None) -> LabelSession:
        """Scan ``images_dir/*.nc``; unreadable files are left out with a logged reason."""
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise LabelError(f"image folder {images_dir} does not exist")
        files = sorted(images_dir.glob("*.nc"))
        stations: dict[str, StationImages] = {}
        left_out: list[tuple[Path, str]] = []
        for path in files:
            try:
                st = scan_image_file(path)
            except LabelError as exc:
                log.warning("label: %s left out: %s", path, exc)
                left_out.append((path, str(exc)))
                continue
            if st.code in stations:
                reason = f"station {st.code} already read from {stations[st.code].path}"
                log.warning("label: %s left out: %s", path, reason)
                left_out.append((path, reason))
                continue
            stations[st.code] = st
        if not stations:
            why = "; ".join(f"{p.name}: {r}" for p, r in left_out[:5])
            raise LabelError(f"no station images to label in {images_dir}" +
                             (f" ({len(files)} file(s), none usable: {why})" if files else " (no *.nc file; "
                              "run the pipeline up to 'xdisc images' first)"))
        return cls(stations, Path(labels_path), labeller, Path(stacks_dir) if stacks_dir else None, left_out)

    # labels ------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the label file when it changed on disk (another process may append to it; a deleted
        file is created anew, empty)."""
        if not self.labels_path.is_file():
            log.warning("label: %s disappeared; starting it anew", self.labels_path)
            ensure_label_file(self.labels_path)
        st = self.labels_path.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                self._rows = read_label_rows(self.labels_path)
                self._stamp = stamp

    def row(self, station: str, image: int | str) -> dict | None:
        with self._lock:
            return self._rows.get((station, image))

    def has_item(self, station: str, image: int) -> bool:
        return (station, image) in self._index

    def first_unlabelled(self, after: tuple[str, int] | None = None) -> tuple[str, int] | None:
        """The first item without its own label (searching from the one after ``after``, wrapping round)."""
        with self._lock:
            start = self._index[after] + 1 if after in self._index else 0
            n = len(self.items)
            for k in range(n):
                item = self.items[(start + k) % n]
                if item not in self._rows:
                    return item
        return None

    def counts(self) -> dict[str, int]:
        with self._lock:
            out = {label: 0 for label in LABELS}
            for item in self.items:
                row = self._rows.get(item)
                if row is not None:
                    out[row["label"]] += 1
        out["labelled"] = sum(out[label] for label in LABELS)
        out["total"] = len(self.items)
        return out

    def save(self, station: str, image: int, label: str, note: str = "") -> dict:
        """Append one label row (fsync-ed) and return it; :class:`LabelError` for an unknown item or label."""
        if label not in LABELS:
            raise LabelError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        if not self.has_item(station, image):
            raise LabelError(f"no image {image} of station {station}")
        note = " ".join(str(note).split())[:MAX_NOTE_CHARS]
        row = {"station": station, "image": image, "label": label, "labeller": self.labeller, "time": utc_now(),
               "note": note, "source": PAGE_SOURCE}
        with self._lock:
            append_labels(self.labels_path, [row])
            self._rows[(station, image)] = row
            st = self.labels_path.stat()
            self._stamp = (st.st_size, st.st_mtime_ns)
        log.info("label: %s image %d: %s%s", station, image, label, f" ({note})" if note else "")
        return row

    # neighbours --------------------------------------------------------------

    def neighbour(self, item: tuple[str, int], step: int) -> tuple[str, int] | None:
        i = self._index[item] + step
        return self.items[i] if 0 <= i < len(self.items) else None

    # data --------------------------------------------------------------------

    def stack(self, code: str):
        """The station's stacking result (None when missing; unreadable ones are logged once and treated as missing)."""
        if self.stacks_dir is None:
            return None
        with self._io_lock:
            if code not in self._stacks:
                path = self.stacks_dir / f"{code}.nc"
                ds = None
                if path.is_file():
                    try:
                        ds = _read_stack(path)
                    except (OSError, RuntimeError, ValueError, KeyError) as exc:  # the image can still be labelled
                        log.warning("label: stacking result %s unreadable: %s", path, exc)
                self._stacks[code] = ds
            return self._stacks[code]

    def png(self, station: str, image: int) -> bytes:
        key = (station, image)
        with self._io_lock:
            if key in self._png:
                self._png.move_to_end(key)
                return self._png[key]
        st = self.stations[station]
        stack = self.stack(station)
        with self._io_lock:  # HDF5 and matplotlib's font cache are not thread-safe
            img = _read_image(st, image)
            title = f"{station}  image {image}"
            if st.kind[image]:
                title += f"  ({st.kind[image]})"
            if st.n_rf[image] >= 0:
                title += f"  n_rf {st.n_rf[image]}"
            data = render_png(img, stack, title)
            self._png[key] = data
            while len(self._png) > PNG_CACHE:
                self._png.popitem(last=False)
        return data


# ----------------------------------------------------------------------------- HTML

def item_url(item: tuple[str, int] | None) -> str:
    if item is None:
        return "/done"
    return f"/item/{urllib.parse.quote(item[0])}/{item[1]}"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:0.8em 1.2em;color:#222}
header{display:flex;flex-wrap:wrap;gap:0.4em 1.5em;align-items:baseline}
h1{font-size:1.35em;margin:0}.muted{color:#666}.ctx{margin:0.3em 0}
#rf{width:100%;max-width:1300px;height:auto;border:1px solid #ddd;display:block}
.actions{display:flex;flex-wrap:wrap;gap:0.5em;align-items:center;margin:0.5em 0}
button{font-size:1.05em;padding:0.35em 0.9em;border-radius:4px;border:1px solid #888;cursor:pointer}
button.present{background:#d5f5e3}button.absent{background:#fadbd8}button.unsure{background:#fcf3cf}
button.skip{background:#eee}button.current{outline:3px solid #333}
#note{flex:1;min-width:18em;font-size:1em;padding:0.3em}
nav a{margin-right:1.2em}kbd{border:1px solid #aaa;border-radius:3px;padding:0 0.3em;background:#f6f6f6}
#status{font-weight:bold}.err{color:#b03a2e}table{border-collapse:collapse}td,th{padding:0.2em 0.8em;text-align:left}
"""

_SCRIPT = """
const KEYS = %(keys)s;
const ITEM = %(item)s;
const form = document.getElementById("actions");
const note = document.getElementById("note");
const status = document.getElementById("status");
let busy = false;
function setBusy(on) {
  busy = on;
  for (const b of form.querySelectorAll("button")) b.disabled = on;
}
async function save(label) {
  if (busy) return;
  setBusy(true);
  status.className = "";
  status.textContent = "saving " + label + " …";
  try {
    const r = await fetch("/label", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({station: ITEM.station, image: ITEM.image, label: label, note: note.value})});
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
    status.textContent = "saved: " + label;
    window.location.assign(body.next);
  } catch (e) {
    status.className = "err";
    status.textContent = "NOT saved: " + e.message;
    setBusy(false);
  }
}
form.addEventListener("submit", ev => {
  ev.preventDefault();
  if (ev.submitter && ev.submitter.value) save(ev.submitter.value);
});
document.addEventListener("keydown", ev => {
  if (ev.ctrlKey || ev.altKey || ev.metaKey) return;
  if (ev.target === note) {
    if (ev.key === "Escape" || ev.key === "Enter") { ev.preventDefault(); note.blur(); }
    return;
  }
  const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  if (key in KEYS) { ev.preventDefault(); save(KEYS[key]); }
  else if (key === "n") { ev.preventDefault(); note.focus(); }
  else if (key === "ArrowLeft" && ITEM.prev) window.location.assign(ITEM.prev);
  else if (key === "ArrowRight" && ITEM.next) window.location.assign(ITEM.next);
});
"""


def _page(title: str, body: str, script: str = "", head: str = "") -> bytes:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style>{head}</head><body>{body}"
            f"{f'<script>{script}</script>' if script else ''}</body></html>").encode()


def _progress_text(counts: dict) -> str:
    return f"{counts['labelled']} of {counts['total']} labelled"


def _row_text(row: dict) -> str:
    note = f" — “{row['note']}”" if row.get("note") else ""
    return f"{row['label']} (by {row['labeller']}, {row['time']}, {row['source']}){note}"


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
        + (f" · Station-wide: {e(_row_text(wide))}" if wide else "") + "</p>",
        (f"<img id=rf src='/png/{urllib.parse.quote(station)}/{image}.png' width=1300 height=720 "
         f"alt='receiver-function image {e(station)} {image}'>"),
        "<form id=actions class=actions method=post action=/label>",
        f"<input type=hidden name=station value='{e(station)}'><input type=hidden name=image value={image}>",
    ]
    for key, label in KEYS.items():
        cls = f"{label} current" if own and own["label"] == label else label
        lines.append(f"<button type=submit name=label value={label} class='{cls}' id=btn-{label}>"
                     f"<kbd>{key}</kbd> {label}</button>")
    lines += [
        (f"<input type=text id=note name=note maxlength={MAX_NOTE_CHARS} placeholder='note (n to type; Enter or "
         "Esc to leave the field, then the key)' autocomplete=off>"),
        "<span id=status></span></form>",
        "<nav>",
        f"<a id=prev href='{item_url(prev_item)}'>← previous</a>" if prev_item else "<span class=muted>← previous"
        "</span> ",
        f"<a id=next href='{item_url(next_item)}'>next →</a>" if next_item else "",
        f"<a id=first-unlabelled href='{item_url(session.first_unlabelled())}'>first unlabelled</a>",
        "<a href=/done>summary</a>",
        ("<span class=muted>keys: <kbd>p</kbd> present · <kbd>a</kbd> absent · <kbd>u</kbd> unsure · <kbd>s</kbd> "
         "skip · <kbd>n</kbd> note · <kbd>←</kbd>/<kbd>→</kbd> browse</span>"),
        "</nav>",
    ]
    if session.left_out:
        lines.append(f"<p class=muted>{len(session.left_out)} image file(s) left out: see the summary page.</p>")
    script = _SCRIPT % {"keys": json.dumps(KEYS), "item": json.dumps({
        "station": station, "image": image, "prev": item_url(prev_item) if prev_item else None,
        "next": item_url(next_item) if next_item else None})}
    prefetch = (f"<link rel=prefetch href='/png/{urllib.parse.quote(upcoming[0])}/{upcoming[1]}.png'>"
                if upcoming and upcoming != item else "")
    return _page(f"{station} image {image} — xdisc label", "\n".join(lines), script, prefetch)


def done_page(session: LabelSession) -> bytes:
    counts = session.counts()
    e = html.escape
    finished = counts["labelled"] == counts["total"]
    rows = "".join(f"<tr><td>{label}</td><td id=count-{label}>{counts[label]}</td></tr>" for label in LABELS)
    body = [
        f"<h1 id=done>{'Done: every image is labelled' if finished else 'Summary'}</h1>",
        (f"<p id=progress><b>{_progress_text(counts)}</b> ({len(session.stations)} station(s)); labels in "
         f"<code>{e(str(session.labels_path))}</code></p>"),
        f"<table><tr><th>label</th><th>images</th></tr>{rows}</table>",
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
            if not isinstance(image, int) or isinstance(image, bool):
                raise LabelError(f"image must be an image index, got {image!r}")
            station = str(data.get("station", ""))
            row = self.server.session.save(station, image, str(data.get("label", "")), str(data.get("note", "")))
        except (LabelError, ValueError, UnicodeDecodeError) as exc:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except OSError as exc:
            log.error("label: could not write %s: %s", self.server.session.labels_path, exc)
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"label not saved: {exc}"})
        nxt = item_url(self.server.session.first_unlabelled(after=(station, image)))
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


# ----------------------------------------------------------------------------- command line

def add_parser(sub) -> None:
    """Register ``label`` (with its ``import`` subcommand) on an argparse subparsers object."""
    p = sub.add_parser(
        "label", help="label station images by eye in a local web page (and import published tables)",
        description="Serve a labelling page on 127.0.0.1 (loopback only; the URL is printed): one page per station "
                    "image with the image (amplitude and significance vs slowness and depth), the station's depth "
                    "stack and the stacking verdict. Keys p present, a absent, u unsure, s skip save at once "
                    "(each label is appended to the label CSV and fsync-ed) and move to the next unlabelled "
                    "image; a restart resumes at the first image without a label. Label CSV columns: "
                    f"{','.join(COLUMNS)}; append-only, the latest row per (station, image) wins. "
                    "'xdisc label import TABLE.csv' appends station-wide labels from a published table instead.")
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES, metavar="DIR",
                   help=f"folder of the station images of 'xdisc images' (default {DEFAULT_IMAGES})")
    p.add_argument("--stacks", type=Path, default=DEFAULT_STACKS, metavar="DIR",
                   help=f"folder of the stacking results of 'xdisc stack' (default {DEFAULT_STACKS}; a missing "
                        "file shows 'no stacking result')")
    p.add_argument("--labels", type=Path, default=DEFAULT_LABELS, metavar="CSV",
                   help=f"label CSV to append to, created with its folder when missing (default {DEFAULT_LABELS})")
    p.add_argument("--labeller", metavar="NAME", help="your name or initials, written in every row (required)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port; the URL is printed)")
    p.add_argument("--open-browser", dest="open_browser", action="store_true", default=False,
                   help="open the page in the default web browser")
    p.add_argument("--no-browser", dest="open_browser", action="store_false",
                   help="only print the URL (default)")
    p.set_defaults(func=run_label)
    add_import_parser(p.add_subparsers(dest="label_command", metavar="import", required=False,
                                       title="import a published table instead (xdisc label import --help)"))


def add_import_parser(sub) -> None:
    """Register ``import`` (published tables -> label CSV) on an argparse subparsers object."""
    p = sub.add_parser(
        "import", help="append station-wide labels from a published table",
        description="Append one row per station of a published table to the label CSV, with image '*' (every "
                    "image of the station; a per-image label overrides it), labeller = the source name and "
                    "source = the table's file name. TABLE.csv: comma, semicolon or tab separated, '#' lines "
                    "are comments; columns 'station' (NET.STA) and 'verdict' or 'label' (present/yes/y/1/x/true, "
                    "absent/no/n/0/nox/no-x/false, unsure/uncertain/?; case-insensitive); optional latitude, "
                    "longitude, bin, x_depth_km, reference (kept in the note). The whole table is checked first: "
                    "an unknown value, a bad station code or a station with two different verdicts is an error "
                    "naming its line, and nothing is appended.")
    p.add_argument("table", type=Path, metavar="TABLE.csv", help="published table (CSV)")
    # SUPPRESS: 'xdisc label --labels X import T' keeps X (a default here would override it)
    p.add_argument("--labels", type=Path, default=argparse.SUPPRESS, metavar="CSV",
                   help=f"label CSV to append to, created with its folder when missing (default {DEFAULT_LABELS})")
    p.add_argument("--source", metavar="NAME", help="name of the source, written as labeller (default: the table's file name "
                                    "without suffix)")
    p.set_defaults(func=run_import)


def run_import(args) -> int:
    try:
        rows = import_table(args.table, args.labels, args.source)
    except (LabelError, OSError) as exc:
        log.error("label import: %s", exc)
        return 1
    counts = {v: sum(r["label"] == v for r in rows) for v in ("present", "absent", "unsure")}
    log.info("label import: %d station(s) from %s (%s) -> %s", len(rows), args.table, counts, args.labels)
    return 0


def run_label(args, ready=None) -> int:
    """Serve the labelling page until interrupted. ``ready(server)``, when given, is called once it listens."""
    try:
        if not args.labeller:
            raise LabelError("xdisc label needs --labeller NAME")
        session = LabelSession.open(args.images, args.labels, args.labeller, args.stacks)
        server = make_server(session, args.host, args.port)
    except (LabelError, OSError) as exc:
        log.error("label: %s", exc)
        return 1
    counts = session.counts()
    log.info("label: %d image(s) of %d station(s), %s; labels -> %s", counts["total"], len(session.stations),
             _progress_text(counts), session.labels_path)
    print(f"xdisc label: serving {server.url} (Ctrl-C to stop)", flush=True)
    if args.open_browser:
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
