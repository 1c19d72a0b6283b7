"""Figures of the CNN evaluation and of the CNN-stacking comparison.

Every function takes numbers that were computed elsewhere (:mod:`xdisc.core.metrics`,
:mod:`xdisc.report.compare`, Lightning's ``metrics.csv``) and a path; the format follows the suffix
(``.png`` at :data:`xdisc.report.figures.DPI`, ``.pdf`` or ``.svg`` as vectors) and the file is written
atomically. As in :mod:`xdisc.report.figures`, figures are :class:`~matplotlib.figure.Figure` objects
with their own Agg canvas: no pyplot state is touched.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from xdisc.core.artifacts import atomic_output
from xdisc.core.metrics import agreement_summary, reliability, roc_auc, roc_curve
from xdisc.core.verdicts import ABSENT, CATEGORIES, DECIDED, MISSING, NOT_DETECTABLE, PRESENT, UNDETERMINED
from xdisc.report.figures import DIVERGING_CMAP, DPI, SUFFIXES

RUN_COLOURS = ("#1f618d", "#c0392b", "#117a65", "#b9770e", "#6c3483", "#566573")
TRAIN_COLOUR, VAL_COLOUR = "#1f618d", "#c0392b"
VERDICT_MARKERS = {PRESENT: "^", ABSENT: "o", UNDETERMINED: "s", NOT_DETECTABLE: "v", MISSING: "D"}
NO_VALUE_COLOUR = "0.8"
RING_COLOUR = "#8e44ad"
MAX_STATION_LABELS = 40  # above this many stations the map carries no station codes
GLOBAL_SPAN_DEG = 120.0  # stations spread over more longitude than this (or half of it in latitude): a world map
COAST_COLOUR = "0.55"

# columns of a Lightning CSVLogger metrics.csv, in order of preference
TRAIN_LOSS = ("train/loss_epoch", "train/loss", "train_loss_epoch", "train_loss")
VAL_LOSS = ("val/loss", "val/loss_epoch", "val_loss")
TRAIN_ACC = ("train/acc_epoch", "train/acc", "train/accuracy", "train_acc_epoch", "train_acc")
VAL_ACC = ("val/acc", "val/acc_epoch", "val/accuracy", "val_acc")


# --------------------------------------------------------------------------------------------------
# classification


def plot_confusion(matrix, labels: Sequence[str], path: str | Path, title: str = "Confusion matrix",
                   xlabel: str = "predicted", ylabel: str = "true") -> Path:
    """Count matrix (rows ``ylabel``, columns ``xlabel``, both in the order of ``labels``).

    Each cell shows its count and its share of the row; the colour is that share."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix of shape {m.shape} does not match {len(labels)} labels")
    k = len(labels)
    fig = _figure((2.2 + 1.1 * k, 1.6 + 1.0 * k))
    ax = fig.add_subplot()
    totals = m.sum(axis=1, keepdims=True)
    share = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            count = f"{m[i, j]:.0f}" if float(m[i, j]).is_integer() else f"{m[i, j]:.3g}"
            pct = f"\n{100 * share[i, j]:.0f} %" if totals[i, 0] > 0 else ""
            ax.text(j, i, count + pct, ha="center", va="center", fontsize=12 if k <= 4 else 9,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n(n = {m.sum():.0f}; colour and % = share of the row)", fontsize=11)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    cb.set_label("share of the row")
    return _save(fig, path)


def plot_roc(curves: Mapping[str, tuple], path: str | Path, title: str = "ROC curve",
             mark_fpr: float | None = 0.05) -> Path:
    """ROC curves ``{name: (fpr, tpr, auc)}`` with the chance diagonal; AUC in the legend and,
    when ``mark_fpr`` is given, a dotted line at that false-positive rate."""
    fig = _figure((6.2, 6.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.55", ls="--", lw=1.0, label="chance (AUC = 0.5)")
    if mark_fpr is not None:
        ax.axvline(mark_fpr, color="0.4", ls=":", lw=0.9, label=f"FPR = {100 * mark_fpr:g} %")
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
        auc_text = f"{auc:.3f}" if auc is not None and math.isfinite(auc) else "n/a"
        ax.plot(fpr, tpr, color=RUN_COLOURS[i % len(RUN_COLOURS)], lw=1.8,
                label=f"{name} (AUC = {auc_text})")
    if not curves:
        _no_data(ax, "no ROC curve")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate (X absent called present)")
    ax.set_ylabel("true-positive rate (X present found)")
    ax.set_title(title, fontsize=11)
    ax.grid(color="0.9", lw=0.5)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", fontsize=9)
    return _save(fig, path)


def plot_reliability(bins, path: str | Path, ece: float, ece_after: float | None = None, bins_after=None,
                     title: str = "Reliability of P(X present)") -> Path:
    """Reliability diagram (frequency of X against mean predicted probability, per bin) above a
    histogram of the predictions.

    ``bins`` is a :class:`xdisc.core.metrics.Reliability` or a mapping with its fields (``edges``,
    ``mean_prob``, ``frequency``, ``counts``); ``ece`` its expected calibration error.
    ``ece_after`` (and optionally ``bins_after``) describe the same set after temperature scaling."""
    edges, mean_prob, freq, counts = _bins(bins)
    fig = _figure((6.4, 7.4))
    gs = fig.add_gridspec(2, 1, height_ratios=[3, 1.3])
    ax = fig.add_subplot(gs[0])
    ax_h = fig.add_subplot(gs[1], sharex=ax)
    ax.plot([0, 1], [0, 1], color="0.55", ls="--", lw=1.0, label="perfect calibration")
    width = np.diff(edges)
    ax.bar(edges[:-1], np.nan_to_num(freq), width=width, align="edge", color="#aed6f1", edgecolor="#1f618d",
           lw=0.6, label="frequency of X per bin")
    filled = counts > 0
    ax.plot(mean_prob[filled], freq[filled], "o-", color="#1f618d", ms=5, lw=1.2,
            label=f"model (ECE = {_num(ece)})")
    if bins_after is not None:
        _, mp_after, f_after, c_after = _bins(bins_after)
        ok = c_after > 0
        ax.plot(mp_after[ok], f_after[ok], "s-", color="#c0392b", ms=5, lw=1.2,
                label=f"after temperature scaling (ECE = {_num(ece_after)})")
    elif ece_after is not None:
        ax.plot([], [], " ", label=f"after temperature scaling: ECE = {_num(ece_after)}")
    if not filled.any():
        _no_data(ax, "no predictions")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("observed frequency of X")
    ax.set_title(title, fontsize=11)
    ax.grid(color="0.9", lw=0.5)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", fontsize=9)
    ax.tick_params(labelbottom=False)

    ax_h.bar(edges[:-1], counts, width=width, align="edge", color="0.7", edgecolor="0.3", lw=0.6)
    positive = counts[counts > 0]
    if positive.size and positive.max() / positive.min() > 50:
        ax_h.set_yscale("log")
    else:
        ax_h.set_ylim(0, 1.1 * max(float(counts.max(initial=0)), 1.0))
    ax_h.set_xlabel("predicted probability of X")
    ax_h.set_ylabel("samples per bin")
    ax_h.text(0.99, 0.95, f"n = {int(counts.sum())}", transform=ax_h.transAxes, ha="right", va="top", fontsize=9)
    ax_h.grid(axis="y", color="0.9", lw=0.5)
    ax_h.set_axisbelow(True)
    return _save(fig, path)


def plot_accuracy_vs(x, series: Mapping[str, object], path: str | Path, xlabel: str, ylabel: str = "accuracy",
                     title: str | None = None, xscale: str = "linear", chance: float | None = 0.5) -> Path:
    """Accuracy (or another score in [0, 1]) against a property of the test set (SNR, X strength).

    A value of ``series`` is either ``y`` (drawn against ``x``) or a tuple ``(x, y)`` or
    ``(x, y, yerr)`` with its own abscissa; ``chance`` draws a dashed line (``None``: none)."""
    fig = _figure((7.0, 4.8))
    ax = fig.add_subplot()
    if chance is not None:
        ax.axhline(chance, color="0.55", ls="--", lw=1.0, label=f"chance ({100 * chance:g} %)")
    for i, (name, value) in enumerate(series.items()):
        if isinstance(value, tuple):
            if len(value) not in (2, 3):
                raise ValueError(f"series {name!r}: a tuple must be (x, y) or (x, y, yerr)")
            xs, ys, err = (*value, None)[:3]
        else:
            xs, ys, err = x, value, None
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        if xs.shape != ys.shape:
            raise ValueError(f"series {name!r}: x and y differ in shape {xs.shape} and {ys.shape}")
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        ax.errorbar(xs, ys, yerr=None if err is None else np.asarray(err, float), color=colour, marker="o", ms=4,
                    lw=1.5, capsize=2.5, label=str(name))
    if not series:
        _no_data(ax, "no data")
    ax.set_xscale(xscale)
    if xscale == "log":  # plain numbers (1, 2, 5, 10, 20) rather than powers of ten
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.set_ylim(0.0, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel[:1].upper()}{ylabel[1:]} against {xlabel}", fontsize=11)
    ax.grid(color="0.9", lw=0.5)
    ax.set_axisbelow(True)
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# training


def read_metrics_csv(path: str | Path) -> pd.DataFrame:
    """Columns of a Lightning ``CSVLogger`` ``metrics.csv`` as floats (``NaN`` where a row does not
    log that metric)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training metrics {path} do not exist")
    try:
        table = pd.read_csv(path, dtype=str, index_col=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    return table.apply(pd.to_numeric, errors="coerce").astype(float)


def per_epoch(columns: Mapping[str, np.ndarray], candidates: Sequence[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """Mean per epoch of the first column of ``candidates`` that holds a value: (epochs, values,
    column name); empty arrays and ``""`` when none does."""
    if "epoch" not in columns:
        return np.array([]), np.array([]), ""
    for name in candidates:
        if name not in columns:
            continue
        table = pd.DataFrame({"epoch": columns["epoch"], "value": columns[name]}, dtype=float)
        table = table[np.isfinite(table).all(axis=1)]
        if len(table):
            means = table.groupby("epoch")["value"].mean()
            return means.index.to_numpy(), means.to_numpy(), name
    return np.array([]), np.array([]), ""


TRAINING_RUN_NAMES = {"pretrain": "pretraining (synthetic)", "finetune": "fine-tuning (real)"}


def training_runs(metrics_json_paths: Sequence[str | Path]) -> tuple[dict[str, Path], list[tuple[Path, str]]]:
    """``{run name: metrics.csv}`` of the training runs named by the metrics JSON files of ``xdisc train``
    (input of :func:`plot_training_curves`), and ``(path, why)`` of those without a curve."""
    runs, left_out = {}, []
    for path in map(Path, metrics_json_paths):
        meta = json.loads(path.read_text())
        csv_path = Path(meta.get("metrics_csv", ""))
        if meta.get("metrics_csv") and csv_path.is_file():
            runs[TRAINING_RUN_NAMES.get(meta.get("stage"), path.stem)] = csv_path
        else:
            left_out.append((path, meta.get("note", "no metrics_csv")))
    return runs, left_out


def plot_no_training(reasons: Sequence[str], path: str | Path, title: str = "CNN training") -> Path:
    """The training-curves figure of a run that trained nothing (the shipped network, no labels): why."""
    fig = _figure((6.0, 3.0))
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_title(title)
    _no_data(ax, "no training curve in this run:\n" + "\n".join(reasons))
    return _save(fig, path)


def plot_training_curves(metrics_csv_paths: Mapping[str, str | Path], path: str | Path, title: str = "CNN training",
                         loss_label: str = "loss (binary cross-entropy)") -> Path:
    """Loss (top) and accuracy (bottom) per epoch, training and validation, one column per run
    (e.g. ``{"pretrain": ..., "fine-tune": ...}``), from Lightning ``metrics.csv`` files.

    Step-level values are averaged per epoch; the epoch of the lowest validation loss is starred."""
    if not metrics_csv_paths:
        raise ValueError("no training run given")
    runs = {name: read_metrics_csv(p) for name, p in metrics_csv_paths.items()}
    fig = _figure((4.6 * len(runs) + 0.6, 6.6))
    axes = fig.subplots(2, len(runs), squeeze=False, sharex="col")
    for j, (name, cols) in enumerate(runs.items()):
        ax_loss, ax_acc = axes[0, j], axes[1, j]
        panels = ((ax_loss, "loss", (TRAIN_LOSS, VAL_LOSS)), (ax_acc, "accuracy", (TRAIN_ACC, VAL_ACC)))
        for ax, which, metrics in panels:
            drawn = False
            for label, candidates, colour in (("training", metrics[0], TRAIN_COLOUR),
                                              ("validation", metrics[1], VAL_COLOUR)):
                ep, val, _ = per_epoch(cols, candidates)
                if ep.size:
                    ax.plot(ep, val, "o-", color=colour, ms=3.5 if ep.size <= 60 else 0, lw=1.4, label=label)
                    drawn = True
            if which == "loss":
                ep, val, _ = per_epoch(cols, VAL_LOSS)
                if ep.size and np.isfinite(val).any():
                    k = int(np.nanargmin(val))
                    ax.plot(ep[k], val[k], marker="*", ms=13, color="#f1c40f", mec="k", mew=0.8, ls="none",
                            zorder=5, label=f"lowest validation loss (epoch {ep[k]:.0f})")
            else:
                bottom, top = ax.get_ylim()
                if drawn:
                    top = min(top, 1.005)
                    ax.set_ylim(bottom, top)
                ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0 if top - bottom > 0.06 else 1))
            if not drawn:
                _no_data(ax, f"no {which} logged")
            ax.set_ylabel(which if which == "accuracy" else loss_label)
            ax.grid(color="0.9", lw=0.5)
            ax.set_axisbelow(True)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="best")
        ax_loss.set_title(str(name), fontsize=11)
        ax_acc.set_xlabel("epoch")
        ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=13)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# comparison with stacking


def plot_agreement(rows: Sequence[Mapping], path: str | Path, title: str = "CNN and stacking verdicts") -> Path:
    """Station map (longitude/latitude; colour = CNN probability of X, marker = stacking verdict,
    ring = the two methods disagree) beside the confusion table of the verdicts.

    ``rows`` are station rows of :func:`xdisc.report.compare.compare_verdicts` (or read back from
    ``stations.csv``). Stations without coordinates are listed under the map."""
    rows = list(rows)
    fig = _figure((13.5, 6.4))
    gs = fig.add_gridspec(1, 2, width_ratios=[1.3, 1.0])
    ax = fig.add_subplot(gs[0])
    ax_t = fig.add_subplot(gs[1])
    lat = np.array([_float(r.get("latitude")) for r in rows])
    lon = np.array([_float(r.get("longitude")) for r in rows])
    prob = np.array([_float(r.get("cnn_probability")) for r in rows])
    stacking = [str(r.get("stacking_verdict", MISSING)) for r in rows]
    disagree = np.array([str(r.get("agree")) == "no" for r in rows], dtype=bool)
    placed = np.isfinite(lat) & np.isfinite(lon)
    norm = Normalize(0.0, 1.0)

    for verdict, marker in VERDICT_MARKERS.items():
        sel = placed & np.array([v == verdict for v in stacking], dtype=bool)
        known = sel & np.isfinite(prob)
        if known.any():
            ax.scatter(lon[known], lat[known], c=prob[known], cmap=DIVERGING_CMAP, norm=norm, marker=marker, s=90,
                       edgecolors="k", linewidths=0.7, zorder=3)
        if (sel & ~known).any():
            ax.scatter(lon[sel & ~known], lat[sel & ~known], color=NO_VALUE_COLOUR, marker=marker, s=90,
                       edgecolors="k", linewidths=0.7, zorder=3)
    ring = placed & disagree
    if ring.any():
        ax.scatter(lon[ring], lat[ring], s=330, facecolors="none", edgecolors=RING_COLOUR, linewidths=2.0,
                   zorder=2)
    if placed.sum() <= MAX_STATION_LABELS:
        for i in np.flatnonzero(placed):
            ax.annotate(str(rows[i].get("station", "")), (lon[i], lat[i]), xytext=(7, 7), textcoords="offset points",
                        fontsize=8, color="0.15", zorder=4)
    cb = fig.colorbar(_mappable(norm), ax=ax, fraction=0.046, pad=0.03)
    cb.set_label("CNN probability of X")
    _map_limits(ax, lon[placed], lat[placed])
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title("Stations (marker: stacking verdict, colour: CNN)", fontsize=11)
    ax.grid(color="0.9", lw=0.5)
    ax.set_axisbelow(True)
    if not placed.any():
        _no_data(ax, "no station coordinates")
    on_map = {stacking[i] for i in np.flatnonzero(placed)}
    handles = [Line2D([], [], marker=m, ls="none", mfc="white", mec="k", ms=8, label=f"stacking: {v}")
               for v, m in VERDICT_MARKERS.items() if v in on_map]
    if (placed & ~np.isfinite(prob)).any():
        handles.append(Line2D([], [], marker="o", ls="none", mfc=NO_VALUE_COLOUR, mec="k", ms=8,
                              label="no CNN probability"))
    if ring.any():
        handles.append(Line2D([], [], marker="o", ls="none", mfc="none", mec=RING_COLOUR, mew=2.0, ms=13,
                              label="verdicts disagree"))
    unplaced = [str(rows[i].get("station", "?")) for i in np.flatnonzero(~placed)]
    if unplaced:
        more = f" and {len(unplaced) - 8} more" if len(unplaced) > 8 else ""
        handles.append(Line2D([], [], ls="none", label=f"not on the map (no coordinates): "
                                                       f"{', '.join(unplaced[:8])}{more}"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.1), ncols=3, fontsize=8,
                  frameon=False)

    _agreement_table(ax_t, rows)
    fig.suptitle(f"{title} — {len(rows)} station{'s' if len(rows) != 1 else ''}", fontsize=13)
    return _save(fig, path)


def _agreement_table(ax, rows: Sequence[Mapping]) -> None:
    stacking = [str(r.get("stacking_verdict", MISSING)) for r in rows]
    cnn = [str(r.get("cnn_verdict", MISSING)) for r in rows]
    full = agreement_summary(stacking, cnn, CATEGORIES)["confusion"]
    decided = agreement_summary(stacking, cnn, DECIDED)
    ax.axis("off")
    cells = [[str(full[a][b]) for b in CATEGORIES] for a in CATEGORIES]
    colours = [["white"] * len(CATEGORIES) for _ in CATEGORIES]
    for i, a in enumerate(CATEGORIES):
        for j, b in enumerate(CATEGORIES):
            if a in DECIDED and b in DECIDED and full[a][b] > 0:
                colours[i][j] = "#d5f5e3" if a == b else "#fadbd8"
    table = ax.table(cellText=cells, cellColours=colours, rowLabels=list(CATEGORIES), colLabels=list(CATEGORIES),
                     cellLoc="center", loc="upper center", bbox=[0.22, 0.42, 0.78, 0.44])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    ax.text(0.615, 0.9, "CNN verdict →", transform=ax.transAxes, ha="center", va="bottom", fontsize=10)
    ax.text(0.0, 0.87, "stacking verdict ↓", transform=ax.transAxes, ha="left", va="bottom", fontsize=10)
    n, n_agree = decided["n"], decided["n_agree"]
    lines = [f"stations: {len(rows)}",
             f"compared (both present/absent): {n}",
             f"agreement: {_pct(decided['agreement'])} ({n_agree} of {n})" if n else "agreement: n/a (none compared)",
             f"Cohen's kappa: {_num(decided['kappa'])}" if n == 0 or math.isfinite(decided["kappa"])
             else "Cohen's kappa: n/a (the compared stations share one verdict)"]
    names = [str(r.get("station", "?")) for r in rows if str(r.get("agree")) == "no"]
    if names:
        more = f" and {len(names) - 6} more" if len(names) > 6 else ""
        lines.append(f"disagree: {', '.join(names[:6])}{more}")
    ax.text(0.0, 0.36, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", fontsize=10, linespacing=1.5)
    ax.set_title("Confusion table (green: agree, red: disagree)", fontsize=11)


STRUCTURE_LABELS = {"moho_km": "Moho depth (km)", "x_depth_km": "depth of X (km)",
                    "x_gradient_km": "gradient of X (km)", "distractor": "distractor"}
METHOD_LABELS = {"cnn": "CNN"}


def plot_rates_by_structure(by_structure: Mapping[str, Mapping], level: int, path: str | Path,
                            title: str = "Detection by structure") -> Path:
    """One panel per structure parameter (:func:`xdisc.evaluate.rates_by` results): each method's
    detection rate (solid) and, where the parameter applies to stations without X, its
    false-positive rate (dashed), at SNR level ``level``; tick labels give the station counts.
    Categories (distractor kinds) get markers only: no line joins them."""
    names = list(by_structure)
    cols = min(2, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = _figure((5.2 * cols, 3.9 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        r = by_structure[name]
        if "bins" in r:
            labels, x = [str(b) for b in r["bins"]], np.arange(len(r["bins"]), dtype=float)
        else:
            e = np.asarray(r["bin_edges"], float)
            labels, x = [f"{lo:g}-{hi:g}" for lo, hi in itertools.pairwise(e)], 0.5 * (e[1:] + e[:-1])
        no_x = r.get("count_no_x")
        counts = ([f"{c}/{d}" for c, d in zip(r["count_x"], no_x, strict=True)] if no_x
                  else [str(c) for c in r["count_x"]])
        methods = [k[: -len("_true_positive")] for k in r if k.endswith("_true_positive")]
        joined = "bins" not in r
        for i, method in enumerate(methods):
            colour, shown = RUN_COLOURS[i % len(RUN_COLOURS)], METHOD_LABELS.get(method, method)
            ax.plot(x, np.asarray(r[f"{method}_true_positive"][level], float), color=colour, marker="o", ms=5,
                    lw=1.5, ls="-" if joined else "none", label=f"{shown}: detected")
            if f"{method}_false_positive" in r:
                ax.plot(x, np.asarray(r[f"{method}_false_positive"][level], float), color=colour, marker="s", ms=4,
                        mfc="white", lw=1.2, ls="--" if joined else "none", label=f"{shown}: false positives")
        ax.set_xticks(x, [f"{lab}\n(n={c})" for lab, c in zip(labels, counts, strict=True)], fontsize=8)
        ax.set_ylim(0.0, 1.02)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel(STRUCTURE_LABELS.get(name, name) + ("  (n = with X / without)" if "count_no_x" in r else
                                                          "  (n = with X)"), fontsize=9)
        ax.grid(color="0.9", lw=0.5)
        ax.set_axisbelow(True)
        ax.legend(loc="best", fontsize=7)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    if not names:
        _no_data(axes[0], "no structure parameters")
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# figures of one stage's results


def plot_pretrain(result: Mapping, folder: str | Path) -> list[Path]:
    """Figures of ``xdisc train pretrain`` from :func:`xdisc.cnn.train.pretrain`'s result: confusion tables of
    the validation and test sets, and the ROC curve and reliability diagram of the test set."""
    folder = Path(folder)
    paths = []
    for name, part in (("validation", result["validation"]), ("test", result.get("test"))):
        if part:
            paths.append(plot_confusion(np.array(part["confusion"]), ["absent", "present"],
                                        folder / f"pretrain_{name}_confusion.png",
                                        f"Pretrained CNN, synthetic {name} set"))
    if "_test_logits" in result:
        prob = 1.0 / (1.0 + np.exp(-result["_test_logits"] / result["temperature"]))
        y = result["_test_labels"]
        fpr, tpr, _ = roc_curve(y, prob)
        paths.append(plot_roc({"pretrained CNN, synthetic test": (fpr, tpr, roc_auc(y, prob))},
                              folder / "pretrain_roc.png"))
        raw = 1.0 / (1.0 + np.exp(-result["_test_logits"]))
        paths.append(plot_reliability(reliability(y, raw), folder / "pretrain_reliability.png",
                                      ece=result["test"]["ece_uncalibrated"], ece_after=result["test"]["ece"],
                                      bins_after=reliability(y, prob)))
    return paths


def plot_evaluation(result: dict, folder) -> list:
    """accuracy_vs_snr.png, detection_vs_dvs.png and detection_by_structure.png (at the highest
    SNR level: what limits detection when noise does not) from :func:`xdisc.evaluate.evaluate_methods`'s result."""
    folder = Path(folder)
    snr = result["snr_levels"]
    paths = [plot_accuracy_vs(snr, {"CNN": result["cnn"]["accuracy"], "stacking": result["stacking"]["accuracy"],
                                    "CNN false positives": result["cnn"]["false_positive"],
                                    "stacking false positives": result["stacking"]["false_positive"]},
                              folder / "accuracy_vs_snr.png", xlabel="SNR of every receiver function (P / noise std)",
                              ylabel="accuracy / false-positive rate", xscale="log",
                              title=f"Synthetic test stations ({result['n_samples']}, {result['n_rf']} RFs each)")]
    d = result["by_dvs"]
    x = [100 * c for c in d["dvs_bin_centre"]]
    paths.append(plot_accuracy_vs(x, {"CNN": d["cnn_true_positive"], "stacking": d["stacking_true_positive"]},
                                  folder / "detection_vs_dvs.png", xlabel="dVs of X (%), bin centre",
                                  ylabel="detection rate", chance=None,
                                  title=f"Detection of X at SNR {d['snr']:g} (false positives: CNN "
                                        f"{100 * d['cnn_false_positive']:.0f} %, stacking "
                                        f"{100 * d['stacking_false_positive']:.0f} %)"))
    if result.get("by_structure"):
        top = int(np.argmax(snr))
        paths.append(plot_rates_by_structure(result["by_structure"], top, folder / "detection_by_structure.png",
                                             title=f"CNN and stacking by structure of the test stations at SNR "
                                                   f"{snr[top]:g} ({result['n_rf']} RFs each)"))
    return paths


# --------------------------------------------------------------------------------------------------
# helpers


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_detectability(curves: Sequence[Mapping], path: str | Path, target_dvs: float = 0.03,
                       title: str = "What each station could have seen") -> Path:
    """Map of each method's dvs90 (smallest dVs found in 90 % of the injection draws; grey: not even the
    largest of the grid) and every station's detection curve (mean over injected depths and gradients).

    ``curves``: one mapping per station with ``station``, ``latitude``, ``longitude``, ``dvs`` (grid) and,
    per method, ``detection_<method>`` (probability per dVs) and ``dvs90_<method>`` (read from the files of
    ``xdisc detectability station``)."""
    curves = list(curves)
    fig = _figure((13.5, 8.6))
    gs = fig.add_gridspec(2, 2, height_ratios=[1.2, 1.0])
    lat = np.array([_float(c.get("latitude")) for c in curves])
    lon = np.array([_float(c.get("longitude")) for c in curves])
    placed = np.isfinite(lat) & np.isfinite(lon)
    for col, method in enumerate(("stacking", "cnn")):
        ax = fig.add_subplot(gs[0, col])
        d90 = np.array([_float(c.get(f"dvs90_{method}")) for c in curves])
        grid = np.asarray(curves[0]["dvs"], float) if curves else np.array([0.01, 0.06])
        norm = Normalize(float(grid[0]), float(grid[-1]))
        ok = placed & np.isfinite(d90)
        if ok.any():
            sc = ax.scatter(lon[ok], lat[ok], c=d90[ok] * 100, cmap="viridis_r", vmin=norm.vmin * 100,
                            vmax=norm.vmax * 100, s=70, edgecolors="k", linewidths=0.6, zorder=3)
            fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.03).set_label("dvs90 (%)")
        if (placed & ~ok).any():
            ax.scatter(lon[placed & ~ok], lat[placed & ~ok], color=NO_VALUE_COLOUR, s=70, edgecolors="k",
                       linewidths=0.6, zorder=2, label=f"> {grid[-1] * 100:.0f} % or too few RFs")
            ax.legend(loc="lower left", fontsize=8)
        _map_limits(ax, lon[placed], lat[placed])
        n_ok = int((np.isfinite(d90) & (d90 <= target_dvs + 1e-9)).sum())
        ax.set_title(f"{method}: dvs90 ({n_ok} of {len(curves)} stations would see {target_dvs * 100:.0f} %)",
                     fontsize=10)
        ax.set_xlabel("longitude (°)")
        ax.set_ylabel("latitude (°)")
        axc = fig.add_subplot(gs[1, col])
        for c in curves:
            y = np.asarray(c.get(f"detection_{method}", []), float)
            if y.size and np.isfinite(y).any():
                axc.plot(np.asarray(c["dvs"], float) * 100, y, color="0.35", alpha=0.35, lw=1)
        if curves:
            allc = np.array([np.asarray(c.get(f"detection_{method}", np.full(len(grid), np.nan)), float)
                             for c in curves])
            if np.isfinite(allc).any():
                axc.plot(grid * 100, np.nanmedian(allc, axis=0), color="C3", lw=2.5, label="median station")
                axc.legend(loc="lower right", fontsize=8)
        axc.axhline(0.9, color="k", ls=":", lw=1)
        axc.axvline(target_dvs * 100, color="k", ls="--", lw=1)
        axc.set_ylim(-0.02, 1.02)
        axc.set_xlabel("injected dVs of X (%)")
        axc.set_ylabel("fraction of draws: present")
        axc.set_title(f"{method}: detection curves", fontsize=10)
    fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def read_detectability_curves(paths) -> list[dict]:
    """The inputs of :func:`plot_detectability` from the station files of ``xdisc detectability``."""
    import xarray as xr

    out = []
    for path in paths:
        with xr.open_dataset(path) as ds:
            row = {"station": f"{ds['network'].item()}.{ds['station'].item()}",
                   "latitude": float(ds["latitude"]), "longitude": float(ds["longitude"]),
                   "dvs": ds["dvs"].values.tolist()}
            for m in ("stacking", "cnn"):
                if f"detection_{m}" in ds:
                    row[f"detection_{m}"] = ds[f"detection_{m}"].mean(("depth", "gradient")).values.tolist()
                    row[f"dvs90_{m}"] = float(ds[f"dvs90_{m}"])
            out.append(row)
    return out


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"figure path must end with one of {SUFFIXES}: {path}")
    metadata = {".pdf": {"CreationDate": None}, ".svg": {"Date": None}}.get(suffix)  # reproducible vectors
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=suffix[1:], dpi=DPI, metadata=metadata)
    return path


def _bins(bins) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    get = bins.__getitem__ if isinstance(bins, Mapping) else lambda k: getattr(bins, k)
    edges, mean_prob, freq = (np.asarray(get(k), float) for k in ("edges", "mean_prob", "frequency"))
    counts = np.asarray(get("counts"), float)
    if not (edges.size == mean_prob.size + 1 == freq.size + 1 == counts.size + 1):
        raise ValueError("reliability bins: edges must have one element more than mean_prob, frequency, counts")
    return edges, mean_prob, freq, counts


def _mappable(norm: Normalize):
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=DIVERGING_CMAP)


@functools.cache
def coastlines() -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of the shipped Natural Earth 1:110m coastlines (rings separated by NaN)."""
    with np.load(Path(__file__).with_name("data") / "coastlines_110m.npz") as f:
        return f["lon"].astype(float), f["lat"].astype(float)


def _map_limits(ax, lon: np.ndarray, lat: np.ndarray, min_span_deg: float = 2.0) -> None:
    """Coastlines, and limits around the stations with a margin (at least ``min_span_deg``), aspect
    1/cos(latitude); the whole globe when there are no stations or they span more than
    :data:`GLOBAL_SPAN_DEG` in longitude or half that in latitude."""
    c_lon, c_lat = coastlines()
    ax.plot(c_lon, c_lat, color=COAST_COLOUR, lw=0.6, zorder=1)
    if lon.size == 0 or np.ptp(lon) > GLOBAL_SPAN_DEG or np.ptp(lat) > GLOBAL_SPAN_DEG / 2:
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_aspect(1.0)
        return
    spans = []
    for values in (lon, lat):
        lo, hi = float(values.min()), float(values.max())
        half = max(hi - lo, min_span_deg) * 0.6
        spans.append(((lo + hi) / 2 - half, (lo + hi) / 2 + half))
    ax.set_xlim(*spans[0])
    ax.set_ylim(max(spans[1][0], -90.0), min(spans[1][1], 90.0))
    ax.set_aspect(1.0 / max(math.cos(math.radians(float(np.mean(lat)))), 0.2))


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=11)


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _num(value) -> str:
    return f"{value:.3f}" if value is not None and math.isfinite(value) else "n/a"


def _pct(value) -> str:
    return f"{100 * value:.0f} %" if value is not None and math.isfinite(value) else "n/a"
