"""Per-station comparison of the CNN and stacking verdicts.

Inputs are the two verdict tables, ``results/verdicts/cnn.csv`` (CNN probability per station)
and ``results/verdicts/stacking.csv`` (:data:`xdisc.stack.stacking.TABLE_COLUMNS`), joined on
``station``. Outputs are one table with both verdicts per station
(``results/verdicts/stations.csv``, :data:`STATION_COLUMNS`) and a JSON summary of their
agreement (``results/metrics/agreement.json``).

A station that only one table lists gets the verdict ``missing`` for the other method. Agreement
and Cohen's kappa are computed over the *compared* stations, those where both methods decided
(``present`` or ``absent``); the confusion table counts every station over all four verdicts.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from xdisc import __version__
from xdisc.core.artifacts import atomic_output, write_json
from xdisc.core.metrics import agreement_summary
from xdisc.core.verdicts import CATEGORIES, DECIDED, MISSING, VERDICTS

log = logging.getLogger(__name__)

CNN_COLUMNS = ("station", "latitude", "longitude", "n_rf", "n_images", "probability", "probability_std", "verdict")
STACKING_REQUIRED = ("station", "latitude", "longitude", "n_rf", "verdict", "x_depth_km", "x_depth_err_km")
STATION_COLUMNS = ("station", "latitude", "longitude", "n_rf", "stacking_verdict", "cnn_verdict", "cnn_probability",
                   "cnn_probability_std", "x_depth_km", "x_depth_err_km", "agree")
FLOAT_COLUMNS = ("latitude", "longitude", "cnn_probability", "cnn_probability_std", "x_depth_km", "x_depth_err_km")


def read_table(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings (header = keys).

    Raises :class:`FileNotFoundError` for a missing file and :class:`ValueError` when a column of
    ``required`` is absent or a station (column ``station``, when present) is listed twice."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    absent = [c for c in required if c not in header]
    if absent:
        raise ValueError(f"{path}: column(s) {', '.join(absent)} missing (has {', '.join(header) or 'no header'})")
    if "station" in header:
        seen: set[str] = set()
        for row in rows:
            if row["station"] in seen:
                raise ValueError(f"{path}: station {row['station']} is listed twice")
            seen.add(row["station"])
    return rows


def compare_verdicts(cnn_csv: str | Path, stacking_csv: str | Path) -> tuple[list[dict], dict]:
    """Join the CNN and stacking tables on ``station``; return the station rows and the summary.

    Rows (sorted by station) have the keys of :data:`STATION_COLUMNS`: floats (``NaN`` when
    unknown), ``n_rf`` an int (``NaN`` when unknown; from the stacking table, else the CNN's),
    verdicts from :data:`CATEGORIES` and ``agree`` ``yes``/``no`` when both methods decided,
    ``n/a`` otherwise. Coordinates come from the stacking table, else the CNN's.

    The summary holds ``n_stations``, ``n_compared``, ``n_agree``, ``agreement`` (fraction of the
    compared stations, ``NaN`` when none), ``cohen_kappa`` (present/absent over the compared
    stations, ``NaN`` when undefined), ``confusion`` (``{stacking verdict: {cnn verdict: count}}``
    over :data:`CATEGORIES`), ``disagreeing`` and ``missing_in_cnn`` / ``missing_in_stacking``
    (station lists) and ``inputs`` (the two paths)."""
    cnn = {r["station"]: r for r in read_table(cnn_csv, CNN_COLUMNS)}
    stack = {r["station"]: r for r in read_table(stacking_csv, STACKING_REQUIRED)}
    rows = []
    for name in sorted(cnn.keys() | stack.keys()):
        c, s = cnn.get(name), stack.get(name)
        first = s if s is not None else c
        row = {
            "station": name,
            "latitude": _float(first["latitude"]), "longitude": _float(first["longitude"]),
            "n_rf": _int(first["n_rf"]),
            "stacking_verdict": _verdict(s, stacking_csv),
            "cnn_verdict": _verdict(c, cnn_csv),
            "cnn_probability": _float(c["probability"]) if c else math.nan,
            "cnn_probability_std": _float(c["probability_std"]) if c else math.nan,
            "x_depth_km": _float(s["x_depth_km"]) if s else math.nan,
            "x_depth_err_km": _float(s["x_depth_err_km"]) if s else math.nan,
        }
        if not math.isfinite(row["latitude"]) and c and s:  # stacking table without coordinates
            row["latitude"], row["longitude"] = _float(c["latitude"]), _float(c["longitude"])
        decided = row["stacking_verdict"] in DECIDED and row["cnn_verdict"] in DECIDED
        row["agree"] = ("yes" if row["stacking_verdict"] == row["cnn_verdict"] else "no") if decided else "n/a"
        rows.append(row)
    return rows, summarise(rows, {"cnn": str(cnn_csv), "stacking": str(stacking_csv)})


def summarise(rows: list[dict], inputs: dict | None = None) -> dict:
    """Agreement summary of station rows (see :func:`compare_verdicts`)."""
    stacking = [r["stacking_verdict"] for r in rows]
    cnn = [r["cnn_verdict"] for r in rows]
    decided = agreement_summary(stacking, cnn, DECIDED)
    return {
        "n_stations": len(rows),
        "n_compared": decided["n"],
        "n_agree": decided["n_agree"],
        "agreement": decided["agreement"],
        "cohen_kappa": decided["kappa"],
        "confusion": agreement_summary(stacking, cnn, CATEGORIES)["confusion"],
        "confusion_rows": "stacking verdict",
        "confusion_columns": "cnn verdict",
        "disagreeing": [r["station"] for r in rows if r["agree"] == "no"],
        "missing_in_cnn": [r["station"] for r in rows if r["cnn_verdict"] == MISSING],
        "missing_in_stacking": [r["station"] for r in rows if r["stacking_verdict"] == MISSING],
        "inputs": dict(inputs or {}),
        "xdisc_version": __version__,
    }


def write_outputs(rows: list[dict], summary: dict, stations_csv: str | Path, summary_json: str | Path) -> None:
    """Write the station table (CSV, numbers to 10 significant digits, ``nan`` when unknown) and the
    summary (JSON, ``null`` for ``NaN``), each atomically."""
    with atomic_output(stations_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=STATION_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _format(row[k]) for k in STATION_COLUMNS})
    write_json(summary, summary_json)


# --------------------------------------------------------------------------------------------------
# helpers


def _verdict(row: dict | None, path) -> str:
    if row is None:
        return MISSING
    value = row["verdict"].strip()
    if value not in VERDICTS:
        raise ValueError(f"{path}: station {row['station']} has verdict {value!r}, expected one of {VERDICTS}")
    return value


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _int(text) -> int | float:
    value = _float(text)
    return int(value) if math.isfinite(value) else math.nan


def _format(value) -> str:
    if isinstance(value, float):
        return format(value, ".10g")  # 300.0 -> "300", NaN -> "nan"
    return str(value)
