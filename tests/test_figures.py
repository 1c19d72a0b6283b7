"""Station stack figures: drawn from a fake stack artifact, valid PNG/PDF, no pyplot state left behind, and
the numbers of the artifact are what is drawn (the Figure is captured as it is saved and read back: the depth
stack line and its peak at the injected X depth, the verdict's star, the 410/660 marks, the receiver
functions in slowness order at the scale bar's gain, the vespagram's values)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from figure_capture import draw, line, texts
from matplotlib.image import imread
from xdisc.report.figures import DPI, FIGSIZE_IN, TIME_LIMITS_S, plot_station_stack, station_title

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _gauss(x, centre, width):
    return np.exp(-0.5 * ((x - centre) / width) ** 2)


def _smooth_noise(rng, shape, sigma_samples, std):
    """Band-limited noise: white noise smoothed with a Gaussian of ``sigma_samples`` along every axis."""
    noise = rng.standard_normal(shape)
    for axis, sigma in enumerate(np.broadcast_to(sigma_samples, (len(shape),))):
        if sigma == 0:
            continue
        x = np.arange(-4 * sigma, 4 * sigma + 1)
        noise = np.apply_along_axis(np.convolve, axis, noise, _gauss(x, 0.0, sigma), mode="same")
    return std * noise / noise.std()


def fake_stack(verdict: str = "present", n_event: int = 30, seed: int = 3) -> xr.Dataset:
    """A station stack in the layout of results/stack/{NET}.{STA}.nc, synthetic-looking but not physical."""
    rng = np.random.default_rng(seed)
    time = np.round(np.arange(-10.0, 120.0 + 1e-9, 0.1), 1)
    depth = np.arange(0.0, 801.0, 1.0)
    rel = np.round(np.arange(-1.0, 1.0 + 1e-9, 0.05), 2)
    p = rng.uniform(0.04, 0.08, n_event)
    dp = (p - 0.06)[:, None]
    t = time[None, :]
    rf = (_gauss(t, 0.0, 0.6)                              # direct P, amplitude 1
          + 0.10 * _gauss(t, 4.5 + 10 * dp, 0.6)           # Moho Ps
          + 0.04 * _gauss(t, 32.0 + 60 * dp, 0.8)          # X Ps: time grows with slowness
          + 0.06 * _gauss(t, 44.0 + 90 * dp, 0.8)          # 410 Ps
          + 0.05 * _gauss(t, 68.0 + 140 * dp, 0.8)         # 660 Ps
          - 0.05 * _gauss(t, 17.0 - 60 * dp, 0.7)          # crustal multiple: time decreases with slowness
          + _smooth_noise(rng, (n_event, time.size), (0, 5), 0.012))
    d = depth
    stack = (0.6 * _gauss(d, 0, 5) + 0.10 * _gauss(d, 38, 6) - 0.04 * _gauss(d, 130, 8)
             + 0.035 * _gauss(d, 310, 7) + 0.05 * _gauss(d, 410, 8) + 0.04 * _gauss(d, 660, 9)
             + 0.004 * np.sin(d / 23.0))
    half = 0.006 + 0.003 * d / 800
    r, tt = rel[:, None], time[None, :]
    vesp = (0.9 * _gauss(tt, 0, 0.7) * _gauss(r, 0, 0.1)
            + 0.04 * _gauss(tt, 32, 1.2) * _gauss(r, -0.25, 0.15)
            + 0.05 * _gauss(tt, 44, 1.2) * _gauss(r, -0.35, 0.15)
            + 0.04 * _gauss(tt, 68, 1.5) * _gauss(r, -0.5, 0.15)
            - 0.05 * _gauss(tt, 17, 1.0) * _gauss(r, 0.4, 0.15)
            + 0.03 * _gauss(tt, 80, 2.0) * _gauss(r, 0.6, 0.2)
            + _smooth_noise(rng, (rel.size, time.size), (2, 8), 0.003))
    present = verdict == "present"
    seen = verdict != "undetermined"
    return xr.Dataset(
        {
            "rf": (("event", "time"), rf.astype(np.float32),
                   {"units": "1", "long_name": "receiver function / direct P"}),
            "slowness_s_per_km": ("event", p, {"units": "s km-1"}),
            "depth_stack": ("depth", stack, {"units": "1"}),
            "depth_stack_lower": ("depth", stack - half, {"units": "1"}),
            "depth_stack_upper": ("depth", stack + half, {"units": "1"}),
            "vespagram": (("relative_slowness", "time"), vesp, {"units": "1"}),
        },
        coords={
            "event": np.array([f"ev{i:03d}" for i in range(n_event)], dtype=object),
            "time": ("time", time, {"units": "s"}),
            "depth": ("depth", depth, {"units": "km"}),
            "relative_slowness": ("relative_slowness", rel, {"units": "s degree-1"}),
            "network": "XX", "station": "FAKE", "latitude": 46.53, "longitude": -121.94,
        },
        attrs={
            "verdict": verdict,
            "x_depth_km": 310.0 if present else np.nan,
            "x_amp": 0.035 if present else np.nan,
            "d410_km": 411.0 if seen else np.nan,
            "d660_km": 659.0 if seen else np.nan,
            "n_rf": n_event,
            "x_window_km": [250.0, 350.0],
            "reference_slowness_s_per_km": 0.06,
            "earth_model": "ak135",
        },
    )


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000
    height, width = imread(path).shape[:2]
    assert (width, height) == (round(FIGSIZE_IN[0] * DPI), round(FIGSIZE_IN[1] * DPI))


def _assert_no_open_figures():
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def _panels(fig):
    rf, depth, vesp = fig.axes[:3]
    assert [ax.get_title() for ax in (rf, depth, vesp)] == [
        "Receiver functions (sorted by slowness)", "Depth stack", "Vespagram"]
    return rf, depth, vesp


def _in_time_window(ds: xr.Dataset, values: np.ndarray) -> np.ndarray:
    t = ds["time"].values
    return values[..., (t >= TIME_LIMITS_S[0]) & (t <= TIME_LIMITS_S[1])]


def _sorted_rf(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(ds["slowness_s_per_km"].values, kind="stable")
    return _in_time_window(ds, ds["rf"].values[order].astype(float)), ds["slowness_s_per_km"].values[order]


def _check_depth_stack(ax, ds: xr.Dataset, verdict: str) -> None:
    drawn = line(ax, "mean stack").get_xydata()  # amplitude on x, depth on y (depth axis pointing down)
    np.testing.assert_allclose(drawn, np.column_stack([ds["depth_stack"].values, ds["depth"].values]))
    window = (drawn[:, 1] >= 250) & (drawn[:, 1] <= 350)
    assert drawn[window][np.argmax(drawn[window, 0]), 1] == 310.0  # the X injected by fake_stack
    assert ax.get_ylim() == (800.0, 0.0)
    stars = [ln for ln in ax.get_lines() if ln.get_label().startswith("X at")]
    if verdict == "present":
        assert [ln.get_label() for ln in stars] == ["X at 310 km, amp 0.035"]
        np.testing.assert_allclose(stars[0].get_xydata(), [[0.035, 310.0]])
    else:
        assert stars == []
    if verdict == "undetermined":  # the fake stack has no 410/660 picks then
        assert not [ln for ln in ax.get_lines() if ln.get_label()[:3] in ("410", "660")]
    else:
        np.testing.assert_allclose(line(ax, "410 at 411 km").get_ydata(), [411.0, 411.0])
        np.testing.assert_allclose(line(ax, "660 at 659 km").get_ydata(), [659.0, 659.0])
    assert "X search window" in [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.mark.parametrize("verdict", ["present", "absent", "undetermined"])
def test_png_per_verdict(tmp_path, verdict):
    ds = fake_stack(verdict)
    out, fig = draw(plot_station_stack, ds, tmp_path / "fig" / f"XX.FAKE.{verdict}.png")
    assert out == tmp_path / "fig" / f"XX.FAKE.{verdict}.png"
    _assert_png(out)
    _assert_no_open_figures()
    ax_rf, ax_depth, ax_vesp = _panels(fig)
    assert fig.get_suptitle() == station_title(ds)
    _check_depth_stack(ax_depth, ds, verdict)

    # receiver functions as wiggles, sorted by slowness, at the gain of the 0.05-of-P scale bar
    rf, slowness = _sorted_rf(ds)
    bar = [ln for ln in ax_rf.get_lines() if ln.get_linewidth() == 2.0]
    assert len(bar) == 1 and "0.05 of P" in texts(ax_rf)
    gain = np.ptp(bar[0].get_ydata()) / 0.05
    traces = ax_rf.collections[-1].get_segments()
    assert len(traces) == ds.sizes["event"]
    time = _in_time_window(ds, ds["time"].values)
    for i, seg in enumerate(traces):
        np.testing.assert_allclose(seg[:, 0], time)
        np.testing.assert_allclose(seg[:, 1], np.clip(rf[i] * gain, -1.4, 1.4) + i, atol=1e-5)
    ticks = ax_rf.get_yticks().astype(int)
    assert [t.get_text() for t in ax_rf.get_yticklabels()] == [f"{p:.3f}" for p in slowness[ticks]]

    # vespagram: the artifact's values in the time window, colour limits symmetric about 0
    mesh = ax_vesp.collections[0]
    np.testing.assert_allclose(mesh.get_array(), _in_time_window(ds, ds["vespagram"].values))
    assert mesh.norm.vmin == -mesh.norm.vmax > -1.0  # from the coda, not the direct P (0.9)


def test_pdf(tmp_path):
    ds = fake_stack("present")
    out, fig = draw(plot_station_stack, ds, tmp_path / "XX.FAKE.pdf")
    assert out.read_bytes()[:4] == b"%PDF"
    _assert_no_open_figures()
    _check_depth_stack(_panels(fig)[1], ds, "present")


def test_many_receiver_functions_and_netcdf_roundtrip(tmp_path):
    """The artifact as read back from disk (attrs as arrays); a large station draws the section as an image."""
    nc = tmp_path / "XX.FAKE.nc"
    fake_stack("present", n_event=150).to_netcdf(nc)
    with xr.open_dataset(nc) as ds:
        out, fig = draw(plot_station_stack, ds, tmp_path / "XX.FAKE.png")
        _assert_png(out)
        ax_rf, ax_depth, _ = _panels(fig)
        rf, slowness = _sorted_rf(ds)
        assert fig.get_suptitle() == station_title(ds)
        _check_depth_stack(ax_depth, ds, "present")
    _assert_no_open_figures()
    image = ax_rf.images[0]
    np.testing.assert_allclose(image.get_array(), rf, rtol=1e-6)  # row i: the i-th slowest receiver function
    lo, hi = image.get_clim()
    assert lo == -hi and 0.02 <= hi < 0.5  # coda-based colour limits: the direct P (1.0) is clipped
    ticks = ax_rf.get_yticks().astype(int)
    assert [t.get_text() for t in ax_rf.get_yticklabels()] == [f"{p:.3f}" for p in slowness[ticks]]


def test_empty_station(tmp_path):
    ds = fake_stack("undetermined").isel(event=slice(0, 0))
    for name in ("depth_stack", "depth_stack_lower", "depth_stack_upper", "vespagram"):
        ds[name] = ds[name] * np.nan
    ds.attrs["n_rf"] = 0
    out, fig = draw(plot_station_stack, ds, tmp_path / "empty.png")
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    ax_rf, ax_depth, ax_vesp = _panels(fig)
    assert texts(ax_rf) == ["no receiver functions"] and texts(ax_vesp) == ["no vespagram"]
    assert texts(ax_depth) == ["no depth stack"] and "mean stack" not in [ln.get_label() for ln in ax_depth.get_lines()]
    assert "n_rf = 0" in fig.get_suptitle()


def test_title():
    assert station_title(fake_stack("present")).startswith(
        "XX.FAKE (46.53°, -121.94°) — verdict: X present at 310 km (amp 0.035)")
    assert "verdict: X absent" in station_title(fake_stack("absent"))
    assert "verdict: undetermined" in station_title(fake_stack("undetermined"))
    assert "n_rf = 30" in station_title(fake_stack("absent")) and "ak135" in station_title(fake_stack("absent"))


def test_unknown_suffix(tmp_path):
    with pytest.raises(ValueError):
        plot_station_stack(fake_stack(), tmp_path / "fig.jpeg")


def test_module_does_not_import_pyplot():
    """Figures are built on matplotlib.figure.Figure: no pyplot import, so no global figure state."""
    from xdisc.report import figures

    tree = ast.parse(Path(figures.__file__).read_text(encoding="utf-8"))
    names = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    names += [f"{node.module}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
              for a in node.names]
    assert not [n for n in names if "pyplot" in n]


def fake_synthetics() -> xr.Dataset:
    """A synthetic set in the layout of ``xdisc synth`` (four AK135 samples, random traces that tell samples
    apart): sample 2 is the strongest sharp X (sample 1 is stronger but gradual), sample 3 has no X."""
    from xdisc.core.deconvolution import RFSettings

    rng = np.random.default_rng(8)
    time = RFSettings().time_axis()
    slowness = np.array([0.05, 0.06, 0.07])
    shape = (4, slowness.size, time.size)
    return xr.Dataset(
        {"rf_clean": (("sample", "slowness", "time"), rng.normal(0, 0.05, shape)),
         "rf": (("sample", "slowness", "time"), rng.normal(0, 0.05, shape)),
         "label": ("sample", [1, 1, 1, 0]), "model": ("sample", ["ak135"] * 4),
         "x_dvs": ("sample", [0.03, 0.05, 0.04, 0.0]), "x_gradient_km": ("sample", [0.0, 10.0, 2.0, 0.0]),
         "x_depth_km": ("sample", [300.0, 280.0, 320.0, np.nan]),
         "x_style": ("sample", ["taper", "layer", "taper", "none"]), "moho_km": ("sample", [30.0, 35.0, 40.0, 45.0]),
         "distractor": ("sample", ["none", "none", "none", "lvz"])},
        coords={"sample": np.arange(4), "slowness": slowness, "time": time})


def test_synthetic_examples_draw_the_strongest_sharp_x_and_a_sample_without(tmp_path):
    from raytheory import delay as ps_delay
    from xdisc.report.figures import plot_synthetic_examples

    ds = fake_synthetics()
    out, fig = draw(plot_synthetic_examples, ds, tmp_path / "synthetic_examples.png")
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    with_x, without = fig.axes
    t = ds["time"].values
    win = (t >= -5.0) & (t <= 80.0)
    for ax, i in ((with_x, 2), (without, 3)):  # at the slowness nearest 0.06 s/km (index 1)
        np.testing.assert_allclose(line(ax, "noise-free").get_xydata(),
                                   np.column_stack([t[win], ds["rf_clean"].values[i, 1, win]]))
        np.testing.assert_allclose(line(ax, "noisy (training)").get_xydata(),
                                   np.column_stack([t[win], ds["rf"].values[i, 1, win]]))
    assert with_x.get_title(loc="left") == ("ak135: X at 320 km, dVs 4.0 %, gradient 2 km, style taper; "
                                            "Moho 40 km, distractor none")
    assert without.get_title(loc="left") == "ak135: no X; Moho 45 km, distractor lvz"
    # the Ps delay of X (and of the 410 and 660) at this slowness, against the independent ray-theory oracle
    marks = {txt.get_text().strip(): txt.get_position()[0] for txt in with_x.texts}
    assert set(marks) == {"Ps 320", "Ps 410", "Ps 660"}
    assert {txt.get_text().strip() for txt in without.texts} == {"Ps 410", "Ps 660"}
    for depth in (320.0, 410.0, 660.0):
        assert marks[f"Ps {depth:.0f}"] == pytest.approx(ps_delay("ak135", depth, 0.06), abs=0.3)
    assert without.get_xlabel() == "time after P (s), slowness 0.060 s/km"


def test_station_figure_shows_the_crust_and_its_predicted_multiples(tmp_path):
    """The H-kappa estimate in the title and a tick per trace at each predicted Moho phase, in the traces'
    (slowness) order."""
    from xdisc.stack.hk import crust_times

    ds = fake_stack("present")
    p = ds["slowness_s_per_km"].values
    times = crust_times(36.0, 1.74, 6.08, p)
    for name, t in zip(("moho_ps_time", "moho_ppps_time", "moho_ppss_time"), times, strict=True):
        ds[name] = ("event", t)
    ds.attrs.update(moho_km=36.0, moho_err_km=0.8, vpvs=1.74, vpvs_err=0.02)
    out, fig = draw(plot_station_stack, ds, tmp_path / "XX.FAKE.png")
    _assert_png(out)
    assert "Moho 36.0 ± 0.8 km, Vp/Vs 1.74 ± 0.02 (H-κ)" in fig.get_suptitle()
    ax_rf = _panels(fig)[0]
    order = np.argsort(p, kind="stable")
    for label, t in zip(("Ps", "PpPs", "PpSs"), times, strict=True):
        (ticks,) = [c for c in ax_rf.collections if c.get_label() == f"Moho {label} (H-κ)"]
        xy = ticks.get_offsets()
        np.testing.assert_allclose(xy[:, 0], t[order])
        np.testing.assert_allclose(xy[:, 1], np.arange(p.size))


def test_depth_stack_shows_the_multiples_subtracted(tmp_path):
    """With stacking.multiples on, the depth panel draws the depth stack of what was subtracted (dotted);
    where nothing was subtracted (NaN) it draws nothing of the kind."""
    ds = fake_stack("present")
    removed = 0.02 * np.exp(-0.5 * ((ds["depth"].values - 300.0) / 8.0) ** 2)
    for values, shown in ((removed, True), (np.full(removed.size, np.nan), False)):
        out, fig = draw(plot_station_stack, ds.assign(multiples_depth_stack=("depth", values)), tmp_path / "m.png")
        _assert_png(out)
        ax_depth = _panels(fig)[1]
        lines = [ln for ln in ax_depth.get_lines() if ln.get_label() == "crustal multiples subtracted"]
        if shown:
            np.testing.assert_allclose(lines[0].get_xydata(), np.column_stack([values, ds["depth"].values]))
            assert "crustal multiples subtracted" in [t.get_text() for t in ax_depth.get_legend().get_texts()]
        else:
            assert lines == []
        _check_depth_stack(ax_depth, ds, "present")
    _assert_no_open_figures()
