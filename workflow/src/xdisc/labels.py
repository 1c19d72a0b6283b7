"""Expert labels of station images: the label file (read by fine-tuning; the labelling page of
:mod:`xdisc.label_app` appends to it) and the import of published tables (``xdisc label import``).

Label file (``data/labels/*.csv``)
    CSV, UTF-8, header ``station,image,label,labeller,time,note,source`` (:data:`COLUMNS`), one row
    per decision, append-only: rows are never rewritten or dropped, and for every (station, image)
    the *latest* row wins (a relabel is a new row). ``station`` is ``NET.STA``; ``image`` is the
    image index of ``results/images/{NET}.{STA}.nc``, or ``*`` or empty for a station label (every
    image of the station; a label of one image overrides it; written as ``*``); ``label`` is one of
    :data:`LABELS` (``present``, ``absent``,
    ``unsure``, ``skip``; fine-tuning uses only present/absent); ``time`` is ISO-8601 UTC;
    ``source`` is ``xdisc label`` for the page, the table's file name for an import. Every row is
    flushed and fsync-ed before the page is told it was saved, so a crash never loses one.

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

Weak labels (``cnn.finetune.weak_labels``; :func:`weak_labels`)
    Station labels derived, at fine-tuning time, from confident stacking verdicts of
    ``results/verdicts/stacking.csv``; never written to a label file, marked ``source`` =
    :data:`WEAK_SOURCE` wherever they appear. A station with any manual row gets none.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import logging
import math
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

COLUMNS = ("station", "image", "label", "labeller", "time", "note", "source")
LABELS = ("present", "absent", "unsure", "skip")
ALL_IMAGES = "*"  # image value of a station-wide label
WEAK_SOURCE = "weak (stacking)"  # source of the labels derived from stacking verdicts
DEFAULT_LABELS = Path("data/labels/labels.csv")

# values accepted in published tables (lower case, surrounding blanks removed)
TABLE_VALUES = {
    **dict.fromkeys(("present", "yes", "y", "1", "x", "true"), "present"),
    **dict.fromkeys(("absent", "no", "n", "0", "nox", "no x", "no-x", "no_x", "false"), "absent"),
    **dict.fromkeys(("unsure", "uncertain", "?"), "unsure"),
}
TABLE_NOTE_COLUMNS = ("latitude", "longitude", "bin", "x_depth_km", "reference")
STATION_CODE = re.compile(r"^[A-Za-z0-9_-]{1,8}\.[A-Za-z0-9_-]{1,8}$")


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
    if value in (ALL_IMAGES, ""):  # no image index: the whole station
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
            row = dict(zip(COLUMNS, fields, strict=False))
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
        row = dict(zip(header, fields, strict=False))
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


# ----------------------------------------------------------------------------- weak labels

def weak_labels(stacking_csv: str | Path, settings: dict, manual_stations=()) -> dict[tuple[str, str], dict]:
    """Station labels (``{(station, "*"): row}``, ``source`` = :data:`WEAK_SOURCE`) from the confident
    verdicts of a stacking table (``results/verdicts/stacking.csv``).

    ``settings`` is ``cnn.finetune.weak_labels``: a station qualifies with a verdict in ``verdicts``
    and at least ``min_rf`` receiver functions; ``present`` also needs the X amplitude to be at least
    ``min_amplitude_sigma`` bootstrap standard errors above zero (``x_amp / x_amp_err``), ``absent``
    needs the 410 and the 660 both measured (the stack saw what it should see). Stations in
    ``manual_stations`` (any manual row, even ``unsure``) get no weak label."""
    path = Path(stacking_csv)
    manual = set(manual_stations)
    out: dict[tuple[str, str], dict] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            station, verdict = (row.get("station") or "").strip(), (row.get("verdict") or "").strip()
            if not station or station in manual or verdict not in settings["verdicts"]:
                continue
            n_rf, amp, err, d410, d660 = (_number(row.get(k)) for k in
                                          ("n_rf", "x_amp", "x_amp_err", "d410_km", "d660_km"))
            if not n_rf >= settings["min_rf"]:
                continue
            if verdict == "present":
                sigma = amp / err if err > 0 else math.nan
                if not sigma >= settings["min_amplitude_sigma"]:
                    continue
                note = f"n_rf={n_rf:.0f}; x_amp={amp:.4g}; x_amp_err={err:.4g}"
            elif verdict == "absent":
                if not (math.isfinite(d410) and math.isfinite(d660)):
                    continue
                note = f"n_rf={n_rf:.0f}; d410_km={d410:.0f}; d660_km={d660:.0f}"
            else:
                continue
            out[(station, ALL_IMAGES)] = {"station": station, "image": ALL_IMAGES, "label": verdict,
                                          "labeller": "stacking", "time": "", "note": note, "source": WEAK_SOURCE}
    return out


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
