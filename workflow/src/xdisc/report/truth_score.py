"""Both methods' verdicts against a known truth (the demo network's ``truth.csv``, or any table with
``station`` and ``x_present``), as a user would score them: ``undetermined`` and ``not detectable``
count as wrong in the accuracy; false alarms are ``present`` at stations without X; misses are X stations
not called ``present``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xdisc.core.verdicts import ABSENT, PRESENT

METHODS = {"stacking": "stacking_verdict", "cnn": "cnn_verdict"}


def score_table(stations_csv: str | Path, truth_csv: str | Path) -> tuple[pd.DataFrame, dict]:
    """The stations of the truth table with both verdicts (``missing`` where a station has none), and per
    method: n, accuracy, false-alarm rate, miss rate, undetermined fraction, and the depth error of X where
    both say present."""
    truth = pd.read_csv(truth_csv, dtype={"station": str})
    truth = truth.rename(columns={c: f"true_{c}" for c in truth.columns if c not in ("station", "x_present")})
    verdicts = pd.read_csv(stations_csv, dtype={"station": str})
    table = truth.merge(verdicts, on="station", how="left")
    for column in METHODS.values():
        table[column] = table[column].fillna("missing")
    x = table["x_present"].to_numpy() == 1
    summary = {"n_stations": len(table), "n_with_x": int(x.sum()), "truth": str(truth_csv),
               "stations": str(stations_csv)}
    for method, column in METHODS.items():
        v = table[column].to_numpy()
        right = np.where(x, v == PRESENT, v == ABSENT)
        decided = np.isin(v, (PRESENT, ABSENT))
        depth_col = {"stacking": "x_depth_km", "cnn": "cnn_x_depth_km"}[method]
        errors = []
        if depth_col in table and "true_x_depth_km" in table:
            hit = x & (v == PRESENT)
            errors = np.abs(table.loc[hit, depth_col].astype(float) - table.loc[hit, "true_x_depth_km"].astype(float))
        summary[method] = {
            "accuracy": _rate(right.sum(), len(v)),
            "false_alarm_rate": _rate((~x & (v == PRESENT)).sum(), (~x).sum()),
            "miss_rate": _rate((x & (v != PRESENT)).sum(), x.sum()),
            "undetermined_fraction": _rate((~decided).sum(), len(v)),
            "accuracy_among_decided": _rate((right & decided).sum(), decided.sum()),
            "median_depth_error_km": float(np.median(errors)) if len(errors) else math.nan,
        }
    table["correct_stacking"] = np.where(x, table["stacking_verdict"] == PRESENT, table["stacking_verdict"] == ABSENT)
    table["correct_cnn"] = np.where(x, table["cnn_verdict"] == PRESENT, table["cnn_verdict"] == ABSENT)
    return table, summary


def _rate(k, n) -> float:
    return float(k) / float(n) if n else math.nan


def write_score(summary: dict, path: str | Path) -> None:
    """The summary as strict JSON (``null`` for undefined rates)."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(w) for k, w in v.items()}
        return None if isinstance(v, float) and not math.isfinite(v) else v

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(clean(summary), indent=1) + "\n")


def plot_score(table: pd.DataFrame, summary: dict, path: str | Path, title: str = "Demo network: verdicts "
               "against the truth") -> Path:
    """One row per station (truth, X depth and dVs, each method's verdict, green = right, red = wrong,
    grey = undetermined), and each method's rates beneath."""
    rows = table.sort_values(["x_present", "station"], ascending=[False, True])
    fig = Figure(figsize=(10.5, 1.0 + 0.3 * (len(rows) + 1)), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.axis("off")
    header = ["station", "truth", "X depth", "dVs", "SNR", "stacking", "CNN"]
    cells, colours = [], []
    for _, r in rows.iterrows():
        has_x = r["x_present"] == 1
        line = [r["station"], "X" if has_x else "no X",
                f"{r['true_x_depth_km']:.0f} km" if has_x and "true_x_depth_km" in r else "",
                f"{r['true_x_dvs'] * 100:.1f} %" if has_x and "true_x_dvs" in r else "",
                f"{r['true_snr']:.1f}" if "true_snr" in r else ""]
        shade = ["white"] * 5
        for method in ("stacking", "cnn"):
            v = r[METHODS[method]]
            line.append(v)
            shade.append("#d5f5e3" if r[f"correct_{method}"] else ("#eeeeee" if v not in (PRESENT, ABSENT)
                                                                   else "#fadbd8"))
        cells.append(line)
        colours.append(shade)
    t = ax.table(cellText=cells or [[""] * len(header)], cellColours=colours or None, colLabels=header,
                 bbox=[0, 0, 1, 1], cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(9)
    lines = []
    for method, name in (("stacking", "stacking"), ("cnn", "CNN")):
        s = summary[method]
        lines.append(f"{name}: accuracy {_pct(s['accuracy'])}, false alarms {_pct(s['false_alarm_rate'])}, "
                     f"misses {_pct(s['miss_rate'])}, undetermined {_pct(s['undetermined_fraction'])}")
    ax.set_title(f"{title} ({summary['n_stations']} stations, {summary['n_with_x']} with X)\n" + "\n".join(lines),
                 fontsize=10, loc="left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v * 100:.0f} %"
