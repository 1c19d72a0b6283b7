"""The figure of one station image on the labelling page: amplitude and significance against slowness and
depth, and the station's depth stack with the stacking verdict (display only: nothing here changes a label
or a science product)."""

from __future__ import annotations

import io
import math

import numpy as np

X_WINDOW_KM = (250.0, 350.0)  # used when the stacking result does not record its own window
NOMINAL_KM = (410.0, 660.0)
DEPTH_LIMITS_KM = (0.0, 800.0)
COLOUR_FROM_KM = 100.0  # the amplitude colour scale is set from depths below this one
AMPLITUDE_LIMITS = (0.05, 0.2)  # range of the colour limit: weak 0.02-0.05 arrivals stay visible
T_VALUE_LIMIT = 4.0
DIVERGING_CMAP = "RdBu_r"
FIGSIZE_IN, DPI = (13.0, 7.2), 100


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
