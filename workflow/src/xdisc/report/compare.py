"""Per-station comparison of the CNN and stacking verdicts.

Inputs are the two verdict tables, ``results/verdicts/cnn.csv`` (CNN probability per station; ``stations.csv``
takes its ``verdict_probability``, the one its verdict was decided on, as ``cnn_probability``)
and ``results/verdicts/stacking.csv`` (:data:`xdisc.stack.stacking.TABLE_COLUMNS`), joined on
``station``. Outputs are one table with both verdicts per station
(``results/verdicts/stations.csv``, :data:`STATION_COLUMNS`) and a JSON summary of their
agreement (``results/metrics/agreement.json``).

A station that only one table lists gets the verdict ``missing`` for the other method. Agreement
and Cohen's kappa are computed over the *compared* stations, those where both methods decided
(``present`` or ``absent``); the confusion table counts every station over all four verdicts.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from xdisc import __version__
from xdisc.core.artifacts import write_csv, write_json
from xdisc.core.metrics import agreement_summary
from xdisc.core.verdicts import ABSENT, CATEGORIES, DECIDED, MISSING, NOT_DETECTABLE, VERDICTS

log = logging.getLogger(__name__)

CNN_COLUMNS = ("station", "latitude", "longitude", "n_rf", "n_images", "probability", "probability_std", "verdict")
STACKING_REQUIRED = ("station", "latitude", "longitude", "n_rf", "verdict", "x_depth_km", "x_depth_err_km")
# tables of a CNN without a depth head lack the depths; tables written before 2026-12-06 lack verdict_probability
# and network (which network judged the station: 'run', or 'refined fold K' with cnn.refine)
CNN_OPTIONAL = ("cnn_x_depth_km", "cnn_x_depth_err_km", "verdict_probability", "network")
STATION_COLUMNS = ("station", "latitude", "longitude", "n_rf", "stacking_verdict", "cnn_verdict", "cnn_probability",
                   "cnn_probability_std", "x_depth_km", "x_depth_err_km", "cnn_x_depth_km", "cnn_x_depth_err_km",
                   "cnn_network", "agree")
METHODS = ("stacking", "cnn")
DETECTABILITY_COLUMNS = ("dvs90_stacking", "dvs90_cnn", "false_alarm_rate_stacking", "false_alarm_rate_cnn")
# the smallest X each method's absent rules out; tables written before 2026-12-04 lack them (dvs90 decides then)
EXCLUDED_COLUMNS = ("excluded_dvs_stacking", "excluded_dvs_cnn")
DETECTABILITY_NOTE = "detectability_note"  # why a dvs90 is missing; tables written before it lack it
FLOAT_COLUMNS = ("latitude", "longitude", "cnn_probability", "cnn_probability_std", "x_depth_km", "x_depth_err_km",
                 "cnn_x_depth_km", "cnn_x_depth_err_km")


def read_table(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV file as a table of strings (header = columns; a cell a row lacks is ``""``).

    Raises :class:`FileNotFoundError` for a missing file and :class:`ValueError` when a column of
    ``required`` is absent or a station (column ``station``, when present) is listed twice."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False).fillna("")
    except pd.errors.EmptyDataError:
        table = pd.DataFrame()
    absent = [c for c in required if c not in table.columns]
    if absent:
        raise ValueError(f"{path}: column(s) {', '.join(absent)} missing "
                         f"(has {', '.join(table.columns) or 'no header'})")
    if "station" in table.columns:
        twice = table["station"][table["station"].duplicated()]
        if len(twice):
            raise ValueError(f"{path}: station {twice.iloc[0]} is listed twice")
    return table


def compare_verdicts(cnn_csv: str | Path, stacking_csv: str | Path, detectability_csv: str | Path | None = None,
                     target_dvs: float = 0.03) -> tuple[list[dict], dict]:
    """Join the CNN and stacking tables on ``station``; return the station rows and the summary.

    Rows (sorted by station) have the keys of :data:`STATION_COLUMNS`: floats (``NaN`` when
    unknown), ``n_rf`` an int (``NaN`` when unknown; from the stacking table, else the CNN's),
    verdicts from :data:`CATEGORIES` and ``agree`` ``yes``/``no`` when both methods decided,
    ``n/a`` otherwise. Coordinates come from the stacking table, else the CNN's.

    The summary holds ``n_stations``, ``n_compared``, ``n_agree``, ``agreement`` (fraction of the
    compared stations, ``NaN`` when none), ``cohen_kappa`` (present/absent over the compared
    stations, ``NaN`` when undefined), ``confusion`` (``{stacking verdict: {cnn verdict: count}}``
    over :data:`CATEGORIES`), ``disagreeing`` and ``missing_in_cnn`` / ``missing_in_stacking``
    (station lists) and ``inputs`` (the two paths).

    With ``detectability_csv`` (``xdisc detectability table``) the rows also carry each method's dvs90,
    false-alarm rate and excluded dVs, and a method's ``absent`` becomes ``not detectable`` where its
    excluded dVs is above ``target_dvs`` or unknown: X of that strength would have been called ``absent``
    in more than 1 - ``detectability.detection_probability`` (10 %) of the injection draws, so the
    ``absent`` does not rule it out. (Before 2026-12-04
    the rule read dvs90, the X found ``present`` in 90 % of the draws: more than an ``absent`` claims
    where the CNN's ``absent`` threshold lies below its ``present`` one.) A table without excluded dVs
    falls back to dvs90."""
    cnn_table = read_table(cnn_csv, CNN_COLUMNS)
    for column in CNN_OPTIONAL:
        if column not in cnn_table.columns:
            cnn_table[column] = ""
    cnn = _with_verdicts(cnn_table[list(CNN_COLUMNS + CNN_OPTIONAL)], cnn_csv)
    stack = _with_verdicts(read_table(stacking_csv, STACKING_REQUIRED)[list(STACKING_REQUIRED)], stacking_csv)
    both = stack.merge(cnn, on="station", how="outer", suffixes=("_stacking", "_cnn"), sort=True, indicator=True)
    in_stacking, in_cnn = both["_merge"] != "right_only", both["_merge"] != "left_only"
    not_numbers = ("station", "_merge", "verdict_stacking", "verdict_cnn", "network")
    num = {c: _numbers(both[c]) for c in both.columns if c not in not_numbers}
    # coordinates of the stacking table, else (absent, or a stacking table without them) the CNN's
    cnn_place = ~in_stacking | (in_cnn & ~np.isfinite(num["latitude_stacking"]))
    table = pd.DataFrame({
        "station": both["station"],
        "latitude": num["latitude_stacking"].where(~cnn_place, num["latitude_cnn"]),
        "longitude": num["longitude_stacking"].where(~cnn_place, num["longitude_cnn"]),
        "n_rf": num["n_rf_stacking"].where(in_stacking, num["n_rf_cnn"]),
        "stacking_verdict": both["verdict_stacking"].where(in_stacking, MISSING),
        "cnn_verdict": both["verdict_cnn"].where(in_cnn, MISSING),
        # the probability the CNN's verdict was decided on (image 0's with the station's own thresholds), so that
        # a station called present shows a probability at or above its threshold; an older table: the mean
        "cnn_probability": num["verdict_probability"].where(np.isfinite(num["verdict_probability"]),
                                                            num["probability"]),
        "cnn_probability_std": num["probability_std"],
        "x_depth_km": num["x_depth_km"],
        "x_depth_err_km": num["x_depth_err_km"],
        "cnn_x_depth_km": num["cnn_x_depth_km"],
        "cnn_x_depth_err_km": num["cnn_x_depth_err_km"],
        "cnn_network": both["network"].fillna(""),
    })
    inputs = {"cnn": str(cnn_csv), "stacking": str(stacking_csv)}
    if detectability_csv is not None:
        table = _with_detectability(table, detectability_csv, target_dvs)
        inputs["detectability"] = str(detectability_csv)
    decided = table["stacking_verdict"].isin(DECIDED) & table["cnn_verdict"].isin(DECIDED)
    same = table["stacking_verdict"] == table["cnn_verdict"]
    table["agree"] = np.where(decided, np.where(same, "yes", "no"), "n/a")
    rows = table.to_dict("records")
    for row in rows:
        row["n_rf"] = int(row["n_rf"]) if math.isfinite(row["n_rf"]) else math.nan
    return rows, summarise(rows, inputs)


def _with_detectability(table: pd.DataFrame, path, target_dvs: float) -> pd.DataFrame:
    det = read_table(path, ("station", *DETECTABILITY_COLUMNS))
    if DETECTABILITY_NOTE not in det.columns:
        det[DETECTABILITY_NOTE] = ""
    excluded = [c for c in EXCLUDED_COLUMNS if c in det.columns]
    merged = table.merge(det[["station", *DETECTABILITY_COLUMNS, *excluded, DETECTABILITY_NOTE]], on="station",
                         how="left")
    for column in DETECTABILITY_COLUMNS:
        merged[column] = _numbers(merged[column].fillna(""))
    merged[DETECTABILITY_NOTE] = merged[DETECTABILITY_NOTE].fillna("not tested (no detectability file)")
    if not set(EXCLUDED_COLUMNS) <= set(det.columns):
        log.warning("compare: %s has no %s (written before 2026-12-04): 'absent' judged by dvs90, which asks for "
                    "'present'; 'snakemake --forcerun assess_detectability' writes them", path,
                    " / ".join(EXCLUDED_COLUMNS))
    for m in METHODS:
        column = f"excluded_dvs_{m}"
        merged[column] = _numbers(merged[column].fillna("")) if column in excluded else merged[f"dvs90_{m}"]
        unseen = (merged[f"{m}_verdict"] == ABSENT) & ~(merged[column] <= target_dvs + 1e-9)
        merged[f"{m}_verdict"] = merged[f"{m}_verdict"].where(~unseen, NOT_DETECTABLE)
        if unseen.any():
            log.info("compare: %d %s 'absent' verdict(s) -> '%s' (X of %.3g not ruled out: too many injection draws "
                     "with it are called absent, or not tested)", int(unseen.sum()), m, NOT_DETECTABLE, target_dvs)
    return merged


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
    columns = STATION_COLUMNS + ((*DETECTABILITY_COLUMNS, *EXCLUDED_COLUMNS, DETECTABILITY_NOTE)
                                 if rows and DETECTABILITY_COLUMNS[0] in rows[0] else ())
    write_csv(({k: _format(row[k]) for k in columns} for row in rows), columns, stations_csv)
    write_json(summary, summary_json)


# --------------------------------------------------------------------------------------------------
# helpers


def _with_verdicts(table: pd.DataFrame, path) -> pd.DataFrame:
    """``table`` with its verdicts stripped of blanks; :class:`ValueError` for one not in :data:`VERDICTS`."""
    verdict = table["verdict"].str.strip()
    bad = ~verdict.isin(VERDICTS)
    if bad.any():
        station, value = table["station"][bad].iloc[0], verdict[bad].iloc[0]
        raise ValueError(f"{path}: station {station} has verdict {value!r}, expected one of {VERDICTS}")
    return table.assign(verdict=verdict)


def _numbers(text: pd.Series) -> pd.Series:
    """Floats of a column of strings, ``NaN`` where a cell is not a number (``-0`` stays ``-0.0``:
    ``pd.to_numeric`` alone would read a column of integers)."""
    return text.where(pd.to_numeric(text, errors="coerce").notna(), "nan").astype(float)


def _format(value) -> str:
    if isinstance(value, float):
        return format(value, ".10g")  # 300.0 -> "300", NaN -> "nan"
    return str(value)
