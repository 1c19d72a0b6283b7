"""Report figures drawn from artifacts.

Plotting reads artifacts and never recomputes science: every number drawn here (stacks, bootstrap
bounds, verdict, depths) comes from the station stack written by :mod:`xdisc.stack.stacking`. The only
processing is for display (trace gain, clipping, colour limits).

Figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg canvas, so no pyplot
global state is touched and nothing is left open.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from xdisc.core.verdicts import DECIDED, PRESENT, UNDETERMINED

FIGSIZE_IN = (14.0, 8.0)
DPI = 120
TIME_LIMITS_S = (-5.0, 100.0)  # a little before P, so the clipped direct P marks the time origin
DEPTH_LIMITS_KM = (0.0, 800.0)
MANTLE_FROM_KM = 150.0  # amplitude limits of the depth stack are set below this depth
MAX_WIGGLES = 80  # above this many receiver functions the section is drawn as an image
POSITIVE, NEGATIVE = "#c0392b", "#2471a3"
DIVERGING_CMAP = "RdBu_r"
SUFFIXES = (".png", ".pdf", ".svg")


# --------------------------------------------------------------------------------------------------
# public entry point


def plot_station_stack(ds: xr.Dataset, path: str | Path) -> Path:
    """Draw one station's receiver-function section, depth stack and vespagram; save to ``path``.

    The format follows the suffix of ``path`` (``.png`` at 120 dpi, ``.pdf`` or ``.svg`` as vectors).
    Returns the path written.
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"figure path must end with one of {SUFFIXES}: {path}")
    fig = station_stack_figure(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"CreationDate": None} if path.suffix.lower() == ".pdf" else None  # reproducible PDFs
    fig.savefig(path, dpi=DPI, metadata=metadata)
    return path


def station_stack_figure(ds: xr.Dataset) -> Figure:
    """The station figure as a :class:`~matplotlib.figure.Figure` (not attached to pyplot)."""
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(1, 3, width_ratios=[1.35, 0.8, 1.25])
    ax_rf, ax_depth, ax_vesp = (fig.add_subplot(gs[0, i]) for i in range(3))
    _rf_section(ax_rf, ds)
    _depth_stack(ax_depth, ds)
    _vespagram(fig, ax_vesp, ds)
    fig.suptitle(station_title(ds), fontsize=14)
    note = str(ds.attrs.get("qc_note", ""))
    if note:   # most events failed the SNR test: say what to try (the report shows this figure)
        fig.text(0.5, 0.005, "QC: " + note, ha="center", va="bottom", fontsize=8, color="firebrick", wrap=True)
    return fig


def station_title(ds: xr.Dataset) -> str:
    """``NET.STA (lat, lon) — verdict: X present at 312 km (amp 0.035)`` plus a line of context."""
    a = ds.attrs
    name = f"{_scalar(ds, 'network', '??')}.{_scalar(ds, 'station', '???')}"
    lat, lon = _float(_scalar(ds, "latitude")), _float(_scalar(ds, "longitude"))
    where = f" ({lat:.2f}°, {lon:.2f}°)" if math.isfinite(lat) and math.isfinite(lon) else ""
    verdict = str(a.get("verdict", UNDETERMINED))
    depth, amp = _float(a.get("x_depth_km")), _float(a.get("x_amp"))
    if verdict == PRESENT and math.isfinite(depth):
        err = _float(a.get("x_depth_err_km"))
        at = f"{depth:.0f} ± {err:.0f} km" if math.isfinite(err) else f"{depth:.0f} km"
        what = f"X present at {at}" + (f" (amp {amp:.3f})" if math.isfinite(amp) else "")
    elif verdict in DECIDED:
        what = f"X {verdict}"
    else:
        what = verdict
    context = [f"n_rf = {_int(a.get('n_rf'), ds.sizes.get('event', 0))}",
               f"earth model {a.get('earth_model', 'unknown')}"]
    window = _window(a)
    if window is not None:
        context.append(f"X window {window[0]:.0f}–{window[1]:.0f} km")
    moho, vpvs = _float(a.get("moho_km")), _float(a.get("vpvs"))
    if math.isfinite(moho) and math.isfinite(vpvs):
        dm, dk = _float(a.get("moho_err_km")), _float(a.get("vpvs_err"))
        context.append(f"Moho {moho:.1f} ± {dm:.1f} km, Vp/Vs {vpvs:.2f} ± {dk:.2f} (H-κ)"
                       if math.isfinite(dm) and math.isfinite(dk) else f"Moho {moho:.1f} km, Vp/Vs {vpvs:.2f} (H-κ)")
    if str(a.get("depth_model", "")).startswith("station crust"):
        context.append("depths through this crust")
    if a.get("reason"):
        context.append(str(a["reason"]))
    return f"{name}{where} — verdict: {what}\n" + "  ·  ".join(context)


# --------------------------------------------------------------------------------------------------
# panels


def _rf_section(ax, ds: xr.Dataset) -> None:
    ax.set_title("Receiver functions (sorted by slowness)", fontsize=11)
    ax.set_xlabel("time after P (s)")
    ax.set_ylabel("P slowness (s/km)")
    ax.set_xlim(*TIME_LIMITS_S)
    if "rf" not in ds or ds.sizes.get("event", 0) == 0:
        _no_data(ax, "no receiver functions")
        ax.set_yticks([])
        return
    time = np.asarray(ds["time"], float)
    rf = np.asarray(ds["rf"].transpose("event", "time"), float)
    slowness = np.asarray(ds["slowness_s_per_km"], float) if "slowness_s_per_km" in ds else np.full(rf.shape[0], np.nan)
    order = np.argsort(np.where(np.isfinite(slowness), slowness, np.inf), kind="stable")
    rf, slowness = rf[order], slowness[order]
    keep = (time >= TIME_LIMITS_S[0]) & (time <= TIME_LIMITS_S[1])
    time, rf = time[keep], rf[:, keep]
    n = rf.shape[0]

    # display gain from the coda (after the direct P): its 99th percentile fills ~0.9 trace spacing
    coda = np.abs(rf[:, time >= 3.0])
    ref = float(np.nanpercentile(coda, 99)) if np.isfinite(coda).any() else 0.05
    ref = max(ref, 0.02)
    clip = 1.4  # trace spacings; the direct P (~1) is clipped here
    gain = 0.9 / ref
    if n <= MAX_WIGGLES:
        lw = 0.7 if n <= 40 else 0.45
        y = np.clip(np.nan_to_num(rf) * gain, -clip, clip) + np.arange(n)[:, None]
        base = np.broadcast_to(np.arange(n, dtype=float)[:, None], y.shape)
        # positive and negative lobes as one polygon collection each: fast for hundreds of traces
        for lobe, colour in ((np.maximum(y, base), POSITIVE), (np.minimum(y, base), NEGATIVE)):
            verts = [np.column_stack([np.r_[time[0], time, time[-1]], np.r_[i, row, i]]) for i, row in enumerate(lobe)]
            ax.add_collection(PolyCollection(verts, facecolors=colour, edgecolors="none", lw=0))
        ax.add_collection(LineCollection([np.column_stack([time, row]) for row in y], colors="k", linewidths=lw))
        ax.set_ylim(-1.5, n - 1 + 1.5)
        _scale_bar(ax, gain, ref)
    else:
        vmax = ref
        im = ax.imshow(rf, aspect="auto", origin="lower", cmap=DIVERGING_CMAP, vmin=-vmax, vmax=vmax,
                       extent=(time[0], time[-1], -0.5, n - 0.5), interpolation="nearest")
        cb = ax.figure.colorbar(im, ax=ax, extend="both", pad=0.02, fraction=0.05)
        cb.set_label("amplitude relative to P (clipped)")
        ax.set_ylim(-0.5, n - 0.5)
    _moho_phases(ax, ds, order)
    ticks = _slowness_ticks(n)
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{s:.3f}" if math.isfinite(s) else "?" for s in slowness[ticks]])
    ax.axvline(0.0, color="0.5", lw=0.6, ls=":")
    ax.grid(axis="x", color="0.85", lw=0.5)
    ax.set_axisbelow(True)


MOHO_PHASES = (("moho_ps_time", "Ps", "#1f618d", "|"), ("moho_ppps_time", "PpPs", "#b03a2e", "|"),
               ("moho_ppss_time", "PpSs", "#7d3c98", "|"))


def _moho_phases(ax, ds: xr.Dataset, order: np.ndarray) -> None:
    """The Moho's Ps and multiples predicted from the station's H-kappa estimate, a tick on each trace."""
    drawn = False
    for name, label, colour, marker in MOHO_PHASES:
        if name not in ds:
            continue
        t = np.asarray(ds[name], float)[order]
        ok = np.isfinite(t)
        if ok.any():
            ax.scatter(t[ok], np.flatnonzero(ok), marker=marker, s=30, color=colour, lw=1.2, zorder=4,
                       label=f"Moho {label} (H-κ)")
            drawn = True
    if drawn:
        ax.legend(loc="lower right", fontsize=7, framealpha=0.85)


def _scale_bar(ax, gain: float, ref: float) -> None:
    """A vertical bar of amplitude 0.05 (relative to P) in the upper right of the section."""
    amp = 0.05
    x0, x1 = ax.get_xlim()
    y1 = ax.get_ylim()[1]
    x = x1 - 0.04 * (x1 - x0)
    top = y1 - 0.3
    ax.plot([x, x], [top - amp * gain, top], color="k", lw=2.0, solid_capstyle="butt", clip_on=False, zorder=5)
    ax.text(x - 0.01 * (x1 - x0), top - 0.5 * amp * gain, f"{amp:g} of P", ha="right", va="center", fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.0}, zorder=5)


def _depth_stack(ax, ds: xr.Dataset) -> None:
    a = ds.attrs
    ax.set_title("Depth stack", fontsize=11)
    ax.set_xlabel("amplitude (relative to P)")
    ax.set_ylabel("depth (km)")
    ax.set_ylim(DEPTH_LIMITS_KM[1], DEPTH_LIMITS_KM[0])
    window = _window(a)
    if window is not None:
        ax.axhspan(*window, color="#f5b041", alpha=0.25, lw=0, label="X search window")
    for key, name, colour in (("d410_km", "410", "#6c3483"), ("d660_km", "660", "#117a65")):
        depth = _float(a.get(key))
        if math.isfinite(depth):
            ax.axhline(depth, color=colour, ls="--", lw=1.1, label=f"{name} at {depth:.0f} km")
    ax.axvline(0.0, color="k", lw=0.7)
    if "depth_stack" not in ds or not np.isfinite(np.asarray(ds["depth_stack"], float)).any():
        _no_data(ax, "no depth stack")
        ax.set_xlim(-0.05, 0.05)
        _legend(ax)
        return
    depth = np.asarray(ds["depth"], float)
    stack = np.asarray(ds["depth_stack"], float)
    lower = np.asarray(ds["depth_stack_lower"], float) if "depth_stack_lower" in ds else None
    upper = np.asarray(ds["depth_stack_upper"], float) if "depth_stack_upper" in ds else None
    if lower is not None and upper is not None:
        ax.fill_betweenx(depth, lower, upper, color="0.6", alpha=0.5, lw=0, label="95 % bootstrap")
    ax.fill_betweenx(depth, 0.0, stack, where=stack > 0, color=POSITIVE, alpha=0.35, lw=0, interpolate=True)
    ax.plot(stack, depth, color="k", lw=1.2, label="mean stack")
    removed = np.asarray(ds["multiples_depth_stack"], float) if "multiples_depth_stack" in ds else None
    if removed is not None and np.isfinite(removed).any():  # what stacking.multiples took out before stacking
        ax.plot(removed, depth, color="#c0392b", ls=":", lw=1.1, label="crustal multiples subtracted")

    mantle = (depth >= MANTLE_FROM_KM) & (depth <= DEPTH_LIMITS_KM[1])
    parts = [np.abs(stack[mantle])] + [np.abs(b[mantle]) for b in (lower, upper) if b is not None]
    peak = float(np.nanmax(np.concatenate(parts))) if np.isfinite(np.concatenate(parts)).any() else 0.05
    lim = 1.15 * max(peak, 1e-3)
    ax.set_xlim(-0.6 * lim, lim)

    x_depth, x_amp = _float(a.get("x_depth_km")), _float(a.get("x_amp"))
    if a.get("verdict") == PRESENT and math.isfinite(x_depth):
        if not math.isfinite(x_amp):
            x_amp = float(np.interp(x_depth, depth, stack))
        ax.plot([x_amp], [x_depth], marker="*", ms=15, color="#f1c40f", mec="k", mew=0.9, ls="none", zorder=6,
                label=f"X at {x_depth:.0f} km, amp {x_amp:.3f}")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.grid(color="0.9", lw=0.5)
    ax.set_axisbelow(True)
    _legend(ax)


def _vespagram(fig: Figure, ax, ds: xr.Dataset) -> None:
    ax.set_title("Vespagram", fontsize=11)
    ax.set_xlabel("time after P (s)")
    ax.set_ylabel("slowness relative to P (s/°)")
    ax.set_xlim(*TIME_LIMITS_S)
    if "relative_slowness" in ds.coords and ds.sizes["relative_slowness"] > 1:
        ax.set_ylim(float(ds["relative_slowness"].min()), float(ds["relative_slowness"].max()))
    if "vespagram" not in ds:
        _no_data(ax, "no vespagram")
        return
    v = ds["vespagram"].transpose("relative_slowness", "time")
    time = np.asarray(ds["time"], float)
    rel = np.asarray(ds["relative_slowness"], float)
    values = np.asarray(v, float)
    keep = (time >= TIME_LIMITS_S[0]) & (time <= TIME_LIMITS_S[1])
    time, values = time[keep], values[:, keep]
    if not np.isfinite(values).any():
        _no_data(ax, "no vespagram")
        return
    # colour limits from the coda: the direct P would otherwise saturate everything else to white
    coda = np.abs(values[:, time >= 5.0])
    vmax = float(np.nanpercentile(coda, 99.5)) if np.isfinite(coda).any() else float(np.nanmax(np.abs(values)))
    vmax = vmax if vmax > 0 else 1.0
    mesh = ax.pcolormesh(time, rel, values, cmap=DIVERGING_CMAP, norm=Normalize(-vmax, vmax), shading="nearest",
                         rasterized=True)
    ax.axhline(0.0, color="k", lw=0.6, ls=":")
    cb = fig.colorbar(mesh, ax=ax, extend="both", pad=0.02, fraction=0.06)
    cb.set_label("stack amplitude (relative to P)")
    ax.text(0.99, 0.015, "conversions: ≤ 0 s/°   multiples: > 0 s/°", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=8, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5})


# --------------------------------------------------------------------------------------------------
# helpers


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        # below the panel: inside it would hide the 660 or the X window, the parts worth reading
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncols=2, fontsize=8, frameon=False)


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=11)


def _slowness_ticks(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, 9)).round().astype(int))


def _window(attrs) -> tuple[float, float] | None:
    w = np.asarray(attrs.get("x_window_km", []), float).ravel()
    return (float(w[0]), float(w[1])) if w.size == 2 and np.isfinite(w).all() else None


def _scalar(ds: xr.Dataset, name: str, default=np.nan):
    if name in ds.coords or name in ds:
        value = ds[name].values
        return value.item() if value.ndim == 0 else value
    return ds.attrs.get(name, default)


def _float(value) -> float:
    try:
        return float(np.asarray(value, float).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return math.nan


def _int(value, default: int) -> int:
    f = _float(value)
    return int(f) if math.isfinite(f) else int(default)


def plot_synthetic_examples(ds: xr.Dataset, path: str | Path, slowness: float = 0.06,
                            time_window_s: tuple = (-5.0, 80.0)) -> Path:
    """Synthetic receiver functions with and without X for each reference model of a synthetic set:
    for every model the sample with the strongest sharp X and a sample without X (noise-free in
    black, the noisy training trace in grey) at the slowness nearest ``slowness``."""
    from xdisc.core.artifacts import atomic_output
    from xdisc.core.earthmodel import load_model
    from xdisc.core.moveout import delay_table

    k = int(np.argmin(np.abs(ds["slowness"].values - slowness)))
    t = ds["time"].values
    win = (t >= time_window_s[0]) & (t <= time_window_s[1])
    models = [str(m) for m in dict.fromkeys(ds["model"].values.astype(str))]
    fig = Figure(figsize=(9.0, 1.9 * max(1, 2 * len(models)) + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, 2 * len(models)), 1, sharex=True, squeeze=False)[:, 0]
    label, model = ds["label"].values, ds["model"].values.astype(str)
    dvs, grad = ds["x_dvs"].values, ds["x_gradient_km"].values
    for m_i, name in enumerate(models):
        with_x = np.flatnonzero((label == 1) & (model == name))
        without = np.flatnonzero((label == 0) & (model == name))
        picks = []
        if with_x.size:
            sharp = with_x[grad[with_x] <= 5.0] if np.any(grad[with_x] <= 5.0) else with_x
            picks.append(int(sharp[np.argmax(dvs[sharp])]))
        if without.size:
            picks.append(int(without[0]))
        for j in range(2):
            ax = axes[2 * m_i + j]
            if j >= len(picks):
                _no_data(ax, f"no sample {'with' if j == 0 else 'without'} X for {name}")
                continue
            i = picks[j]
            clean = ds["rf_clean"].values[i, k][win]
            noisy = ds["rf"].values[i, k][win]
            ax.plot(t[win], noisy, color="0.7", lw=0.8, label="noisy (training)")
            ax.plot(t[win], clean, color="k", lw=1.1, label="noise-free")
            ax.axhline(0, color="0.5", lw=0.5)
            peak = np.nanmax(np.abs(clean[t[win] > 3.0])) if np.any(t[win] > 3.0) else 1.0
            ax.set_ylim(-2.5 * peak, 2.5 * peak)  # show the weak arrivals; direct P is clipped
            if label[i] == 1:
                text = (f"{name}: X at {float(ds['x_depth_km'].values[i]):.0f} km, dVs {100 * dvs[i]:.1f} %, "
                        f"gradient {grad[i]:.0f} km, style {ds['x_style'].values[i]}")
            else:
                text = f"{name}: no X"
            text += f"; Moho {float(ds['moho_km'].values[i]):.0f} km, distractor {ds['distractor'].values[i]}"
            ax.set_title(text, fontsize=9, loc="left")
            depths = ([float(ds["x_depth_km"].values[i])] if label[i] == 1 else []) + [410.0, 660.0]
            delays = delay_table(load_model(name), depths, [float(ds["slowness"].values[k])])[0]
            for d, tt in zip(depths, delays, strict=True):
                ax.axvline(tt, color="#c0392b" if d not in (410.0, 660.0) else "#2471a3", ls="--", lw=0.9)
                ax.text(tt, ax.get_ylim()[1], f" Ps {d:.0f}", va="top", ha="left", fontsize=7,
                        color="#c0392b" if d not in (410.0, 660.0) else "#2471a3")
            ax.set_ylabel("amplitude / P")
            ax.grid(color="0.92", lw=0.5)
    axes[0].legend(loc="lower right", fontsize=8)
    axes[-1].set_xlabel(f"time after P (s), slowness {ds['slowness'].values[k]:.3f} s/km")
    fig.suptitle("Synthetic receiver functions with and without X (vertical scale: weak arrivals; P clipped)",
                 fontsize=11)
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
    return path
