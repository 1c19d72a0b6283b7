"""CNN evaluation and comparison figures: each writes an image of sensible size, degenerate data included, and
draws the numbers it is given (the Figure is captured as it is saved and its lines, bars, images and texts read
back: ROC points against scikit-learn, reliability bars against numpy histograms, curves against hand-averaged
epochs, table cells against hand counts)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from figure_capture import draw, line, saved_figures, texts
from matplotlib.image import imread
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve
from xdisc.core import metrics as M
from xdisc.report import ml_figures as F

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# a Lightning CSVLogger file: step-level training loss, epoch-level validation rows, cells empty where not logged
METRICS_CSV = """\
epoch,step,train/loss,train/acc,val/loss,val/acc
0,0,0.80,0.50,,
0,1,0.60,0.60,,
0,1,,,0.70,0.55
1,2,0.50,0.70,,
1,3,0.40,0.80,,
1,3,,,0.50,0.75
2,4,0.30,0.85,,
2,5,0.20,0.90,,
2,5,,,0.55,0.80
"""
FINETUNE_CSV = """\
epoch,step,train/loss_epoch,val/loss,val/acc
0,3,0.45,,
0,3,,0.40,0.81
1,7,0.35,,
1,7,,0.38,0.84
"""


def _check_png(path, min_px: int = 300, max_px: int = 3000) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = imread(path)
    h, w = img.shape[:2]
    assert min_px <= h <= max_px and min_px <= w <= max_px, (h, w)
    assert img[..., :3].std() > 0.01  # something is drawn
    assert not list(path.parent.glob(".*.part"))  # written atomically, nothing left behind
    return img


def _cells(ax) -> dict[tuple[int, int], str]:
    """Text of each confusion cell by (row, column): a cell's text is drawn at x = column, y = row."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}


def test_confusion_png(tmp_path):
    path, fig = draw(F.plot_confusion, [[40, 5], [7, 48]], ["absent", "present"], tmp_path / "c.png",
                     "Synthetic test set")
    _check_png(path)
    ax = fig.axes[0]
    # rows are the true class, columns the predicted one: count and share of the row (40 of 45 = 89 %)
    assert _cells(ax) == {(0, 0): "40\n89 %", (0, 1): "5\n11 %", (1, 0): "7\n13 %", (1, 1): "48\n87 %"}
    np.testing.assert_allclose(ax.images[0].get_array(), [[40 / 45, 5 / 45], [7 / 55, 48 / 55]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["absent", "present"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert ax.get_title().startswith("Synthetic test set\n(n = 100;")

    path, fig = draw(F.plot_confusion, np.zeros((3, 3)), ["a", "b", "c"], tmp_path / "zero.png", "empty")
    _check_png(path)
    assert set(_cells(fig.axes[0]).values()) == {"0"} and len(fig.axes[0].texts) == 9  # no % of an empty row
    assert not fig.axes[0].images[0].get_array().any()
    with pytest.raises(ValueError, match="labels"):
        F.plot_confusion([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "bad.png", "bad")


def test_roc_png_and_pdf(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.5
    s = expit(2 * (y - 0.5) + rng.normal(0, 1, y.size))
    fpr, tpr, _ = M.roc_curve(y, s)
    curves = {"pretrain": (fpr, tpr, M.roc_auc(y, s)), "one class": (*M.roc_curve([1, 1], [0.2, 0.3])[:2], math.nan)}
    path, fig = draw(F.plot_roc, curves, tmp_path / "roc.png")
    _check_png(path)
    ax = fig.axes[0]
    # the drawn curve is scikit-learn's ROC curve of the inputs, its AUC in the legend
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s)
    drawn = line(ax, f"pretrain (AUC = {roc_auc_score(y, s):.3f})").get_xydata()
    np.testing.assert_allclose(drawn, np.column_stack([sk_fpr, sk_tpr]))
    np.testing.assert_allclose(line(ax, "chance (AUC = 0.5)").get_xydata(), [[0, 0], [1, 1]])
    assert line(ax, "FPR = 5 %").get_xdata()[0] == 0.05
    assert np.isnan(line(ax, "one class (AUC = n/a)").get_xydata()).all()  # undefined: nothing drawn
    assert [t.get_text() for t in ax.get_legend().get_texts()][-2:] == [
        f"pretrain (AUC = {roc_auc_score(y, s):.3f})", "one class (AUC = n/a)"]
    pdf = F.plot_roc(curves, tmp_path / "roc.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    path, fig = draw(F.plot_roc, {}, tmp_path / "none.png")
    _check_png(path)
    assert texts(fig.axes[0]) == ["no ROC curve"]


def test_reliability_png(tmp_path):
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, 2000)
    y = rng.random(z.size) < expit(z)
    bins = M.reliability(y, expit(3 * z))
    after = M.reliability(y, expit(z))
    ece, ece_after = M.expected_calibration_error(y, expit(3 * z)), M.expected_calibration_error(y, expit(z))
    path, fig = draw(F.plot_reliability, bins, tmp_path / "r.png", ece, ece_after, bins_after=after)
    _check_png(path)
    ax, ax_h = fig.axes
    # expected values computed here with numpy, independently of xdisc.core.metrics.reliability
    prob = expit(3 * z)
    edges = np.linspace(0.0, 1.0, 11)
    counts, _ = np.histogram(prob, edges)
    k = np.clip(np.digitize(prob, edges) - 1, 0, 9)
    freq = np.array([y[k == b].mean() for b in range(10)])
    mean_prob = np.array([prob[k == b].mean() for b in range(10)])
    assert counts.min() > 0  # every bin filled: every bar and marker is compared
    np.testing.assert_allclose([b.get_height() for b in ax.containers[0]], freq)
    np.testing.assert_allclose([b.get_x() for b in ax.containers[0]], edges[:-1])
    np.testing.assert_allclose(line(ax, f"model (ECE = {ece:.3f})").get_xydata(), np.column_stack([mean_prob, freq]))
    np.testing.assert_allclose(line(ax, f"after temperature scaling (ECE = {ece_after:.3f})").get_xydata(),
                               np.column_stack([after.mean_prob, after.frequency])[after.counts > 0])
    np.testing.assert_allclose([b.get_height() for b in ax_h.containers[0]], counts)
    assert texts(ax_h) == ["n = 2000"]

    path, fig = draw(F.plot_reliability, bins._asdict(), tmp_path / "r_dict.png", ece, ece_after)  # e.g. from JSON
    _check_png(path)
    np.testing.assert_allclose([b.get_height() for b in fig.axes[1].containers[0]], counts)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"after temperature scaling: ECE = {ece_after:.3f}" in legend
    path, fig = draw(F.plot_reliability, M.reliability([], []), tmp_path / "r_empty.png", math.nan)
    _check_png(path)
    assert texts(fig.axes[0]) == ["no predictions"] and texts(fig.axes[1]) == ["n = 0"]
    assert not any(b.get_height() for b in fig.axes[1].containers[0])


def test_training_curves_from_sparse_metrics_csv(tmp_path):
    pre, fine = tmp_path / "pre" / "metrics.csv", tmp_path / "fine" / "metrics.csv"
    pre.parent.mkdir()
    fine.parent.mkdir()
    pre.write_text(METRICS_CSV)
    fine.write_text(FINETUNE_CSV)
    cols = F.read_metrics_csv(pre)
    epochs, loss, name = F.per_epoch(cols, F.TRAIN_LOSS)
    assert name == "train/loss"
    np.testing.assert_allclose(epochs, [0, 1, 2])
    np.testing.assert_allclose(loss, [0.7, 0.45, 0.25])  # step values averaged per epoch
    epochs, acc, name = F.per_epoch(cols, F.VAL_ACC)
    assert name == "val/acc"
    np.testing.assert_allclose(acc, [0.55, 0.75, 0.80])
    _, loss, name = F.per_epoch(F.read_metrics_csv(fine), F.TRAIN_LOSS)
    assert name == "train/loss_epoch" and loss.tolist() == [0.45, 0.35]
    assert F.per_epoch(F.read_metrics_csv(fine), F.TRAIN_ACC)[2] == ""  # not logged

    path, fig = draw(F.plot_training_curves, {"pretrain": pre, "fine-tune": fine}, tmp_path / "t.png")
    img = _check_png(path)
    assert img.shape[1] > img.shape[0]  # the two runs side by side
    loss_pre, loss_fine, acc_pre, acc_fine = fig.axes  # row 0: loss, row 1: accuracy; one column per run
    assert (loss_pre.get_title(), loss_fine.get_title()) == ("pretrain", "fine-tune")
    # per-epoch means of METRICS_CSV worked out by hand (step rows averaged, validation rows as logged)
    np.testing.assert_allclose(line(loss_pre, "training").get_xydata(), [[0, 0.7], [1, 0.45], [2, 0.25]])
    np.testing.assert_allclose(line(loss_pre, "validation").get_xydata(), [[0, 0.7], [1, 0.5], [2, 0.55]])
    np.testing.assert_allclose(line(loss_pre, "lowest validation loss (epoch 1)").get_xydata(), [[1, 0.5]])
    np.testing.assert_allclose(line(acc_pre, "training").get_xydata(), [[0, 0.55], [1, 0.75], [2, 0.875]])
    np.testing.assert_allclose(line(acc_pre, "validation").get_xydata(), [[0, 0.55], [1, 0.75], [2, 0.8]])
    np.testing.assert_allclose(line(loss_fine, "training").get_xydata(), [[0, 0.45], [1, 0.35]])
    np.testing.assert_allclose(line(loss_fine, "lowest validation loss (epoch 1)").get_xydata(), [[1, 0.38]])
    assert [ln.get_label() for ln in acc_fine.get_lines()] == ["validation"]  # no training accuracy logged
    np.testing.assert_allclose(acc_fine.get_lines()[0].get_xydata(), [[0, 0.81], [1, 0.84]])
    assert fig.texts[0].get_text() == "CNN training"

    path, fig = draw(F.plot_training_curves, {"pretrain": pre}, tmp_path / "t1.png")
    _check_png(path)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "pretrain"
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        F.plot_training_curves({"pretrain": tmp_path / "missing.csv"}, tmp_path / "t2.png")


def test_training_curves_with_a_header_only_file(tmp_path):
    empty = tmp_path / "metrics.csv"
    empty.write_text("epoch,step,train/loss,val/loss,val/acc\n")
    path, fig = draw(F.plot_training_curves, {"pretrain": empty}, tmp_path / "t.png")
    _check_png(path)
    assert [ln for ax in fig.axes for ln in ax.get_lines()] == []
    assert [texts(ax) for ax in fig.axes] == [["no loss logged"], ["no accuracy logged"]]


def test_accuracy_vs_png(tmp_path):
    snr = np.array([1.0, 2, 5, 10, 20])
    series = {"CNN": [0.55, 0.65, 0.8, 0.92, 0.97], "stacking": (snr[:3], [0.5, 0.58, 0.7], [0.05, 0.04, 0.03])}
    path, fig = draw(F.plot_accuracy_vs, snr, series, tmp_path / "snr.png", "signal-to-noise ratio", xscale="log")
    _check_png(path)
    ax = fig.axes[0]
    drawn = {c.get_label(): c for c in ax.containers}  # one errorbar container per series
    assert list(drawn) == ["CNN", "stacking"]
    np.testing.assert_allclose(drawn["CNN"].lines[0].get_xydata(), np.column_stack([snr, series["CNN"]]))
    np.testing.assert_allclose(drawn["stacking"].lines[0].get_xydata(), [[1, 0.5], [2, 0.58], [5, 0.7]])
    bars = drawn["stacking"].lines[2][0].get_segments()  # error bars: y - err to y + err at each x
    np.testing.assert_allclose([b[:, 1] for b in bars], [[0.45, 0.55], [0.54, 0.62], [0.67, 0.73]])
    np.testing.assert_allclose(line(ax, "chance (50 %)").get_ydata(), [0.5, 0.5])
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "signal-to-noise ratio"
    assert ax.get_title() == "Accuracy against signal-to-noise ratio"
    dvs = ([0.01, 0.02, 0.03, 0.04], [0.6, 0.75, 0.85, 0.9])
    path, fig = draw(F.plot_accuracy_vs, None, {"CNN": dvs}, tmp_path / "dvs.png", "S-velocity jump of X (dVs/Vs)")
    _check_png(path)
    np.testing.assert_allclose(fig.axes[0].containers[0].lines[0].get_xydata(), np.column_stack(dvs))
    with pytest.raises(ValueError, match="differ in shape"):
        F.plot_accuracy_vs([1, 2], {"CNN": [0.5]}, tmp_path / "bad.png", "x")


def test_rates_by_structure_png(tmp_path):
    from xdisc.evaluate import rates_by

    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.5
    positive = {"cnn": rng.random((2, 200)) < 0.7, "stacking": rng.random((2, 200)) < 0.4}
    by = {"moho_km": rates_by(rng.uniform(20, 70, 200), y, positive),
          "x_gradient_km": rates_by(np.where(y, rng.uniform(0, 20, 200), 0.0), y, positive, x_only=True),
          "distractor": rates_by(rng.choice(["none", "deep", "lvz"], 200), y, positive, categorical=True)}
    path, fig = draw(F.plot_rates_by_structure, by, 1, tmp_path / "by.png")
    _check_png(path)
    moho, grad, kind, blank = fig.axes
    # level 1 (the second SNR level) of each rate, at the bin centres (numeric) or one slot per category
    centres = 0.5 * (np.array(by["moho_km"]["bin_edges"][1:]) + by["moho_km"]["bin_edges"][:-1])
    np.testing.assert_allclose(line(moho, "CNN: detected").get_xydata(),
                               np.column_stack([centres, by["moho_km"]["cnn_true_positive"][1]]))
    np.testing.assert_allclose(line(moho, "stacking: false positives").get_ydata(),
                               by["moho_km"]["stacking_false_positive"][1])
    assert "CNN: false positives" not in [ln.get_label() for ln in grad.get_lines()]  # X property: no FP rate
    np.testing.assert_allclose(line(kind, "CNN: detected").get_xydata(),
                               np.column_stack([[0, 1, 2], by["distractor"]["cnn_true_positive"][1]]))
    assert line(kind, "CNN: detected").get_linestyle() == "None"  # categories: markers only
    assert [t.get_text() for t in kind.get_xticklabels()] == [
        f"{b}\n(n={x}/{o})" for b, x, o in zip(by["distractor"]["bins"], by["distractor"]["count_x"],
                                               by["distractor"]["count_no_x"], strict=True)]
    assert not blank.axison  # three panels in a 2 x 2 grid: the fourth is blank, not an empty frame
    path, fig = draw(F.plot_rates_by_structure, {}, 0, tmp_path / "none.png")  # no parameter at all: a note
    _check_png(path, min_px=200)
    assert texts(fig.axes[0]) == ["no structure parameters"]
    one = {"distractor": rates_by(np.array(["none"] * 4), np.array([1, 1, 0, 0]),
                                  {"cnn": np.zeros((1, 4), bool)}, categorical=True)}
    path, fig = draw(F.plot_rates_by_structure, one, 0, tmp_path / "one.png")
    _check_png(path, min_px=200)
    assert len(fig.axes) == 1
    np.testing.assert_allclose(line(fig.axes[0], "CNN: detected").get_xydata(), [[0, 0.0]])


# five stations worked out by hand: two agree, one disagrees, one undetermined, one without a CNN result
HAND_ROWS = [
    {"station": "XX.A", "latitude": 10.0, "longitude": 20.0, "cnn_probability": 0.9, "stacking_verdict": "present",
     "cnn_verdict": "present", "agree": "yes"},
    {"station": "XX.B", "latitude": 11.0, "longitude": 21.0, "cnn_probability": 0.2, "stacking_verdict": "absent",
     "cnn_verdict": "absent", "agree": "yes"},
    {"station": "XX.C", "latitude": 12.0, "longitude": 22.0, "cnn_probability": 0.8, "stacking_verdict": "absent",
     "cnn_verdict": "present", "agree": "no"},
    {"station": "XX.D", "latitude": 13.0, "longitude": 23.0, "cnn_probability": 0.5,
     "stacking_verdict": "undetermined", "cnn_verdict": "undetermined", "agree": "n/a"},
    {"station": "XX.E", "latitude": 14.0, "longitude": 24.0, "cnn_probability": math.nan,
     "stacking_verdict": "present", "cnn_verdict": "missing", "agree": "n/a"},
]


def _markers(ax) -> dict:
    """Scatter points of the map: {(marker, size): [(lon, lat, colour value or None), ...]}."""
    from matplotlib.markers import MarkerStyle

    def marker_of(collection):
        v = collection.get_paths()[0].vertices
        for m in "^osD":
            ref = MarkerStyle(m).get_path().transformed(MarkerStyle(m).get_transform()).vertices
            if ref.shape == v.shape and np.allclose(ref, v):
                return m
        return "?"

    out: dict = {}
    for c in ax.collections:
        values = c.get_array()
        for i, (lon, lat) in enumerate(c.get_offsets()):
            out.setdefault((marker_of(c), int(c.get_sizes()[0])), []).append(
                (float(lon), float(lat), None if values is None else round(float(values[i]), 6)))
    return out


def _table(ax) -> dict[str, dict[str, str]]:
    cells = ax.tables[0].get_celld()
    n = max(j for _, j in cells) + 1
    cols = [cells[0, j].get_text().get_text() for j in range(n)]
    return {cells[i, -1].get_text().get_text(): {c: cells[i, j].get_text().get_text() for j, c in enumerate(cols)}
            for i in range(1, n + 1)}


def test_agreement_map(tmp_path):
    from sklearn.metrics import cohen_kappa_score

    path, fig = draw(F.plot_agreement, HAND_ROWS, tmp_path / "a.png")
    _check_png(path)
    ax, ax_t = fig.axes[0], fig.axes[1]
    # marker = stacking verdict, colour = CNN probability (grey, no value, without one), ring = disagreement
    assert _markers(ax) == {("^", 90): [(20.0, 10.0, 0.9), (24.0, 14.0, None)],
                            ("o", 90): [(21.0, 11.0, 0.2), (22.0, 12.0, 0.8)],
                            ("s", 90): [(23.0, 13.0, 0.5)],
                            ("o", 330): [(22.0, 12.0, None)]}
    assert {t.get_text(): tuple(t.xy) for t in ax.texts} == {r["station"]: (r["longitude"], r["latitude"])
                                                             for r in HAND_ROWS}
    assert "verdicts disagree" in [t.get_text() for t in ax.get_legend().get_texts()]
    # confusion table: rows stacking, columns CNN
    zero = dict.fromkeys(["present", "absent", "undetermined", "not detectable", "missing"], "0")
    assert _table(ax_t) == {"present": {**zero, "present": "1", "missing": "1"},
                            "absent": {**zero, "absent": "1", "present": "1"},
                            "undetermined": {**zero, "undetermined": "1"},
                            "not detectable": zero,
                            "missing": zero}
    kappa = cohen_kappa_score(["present", "absent", "absent"], ["present", "absent", "present"])
    assert texts(ax_t)[-1] == ("stations: 5\ncompared (both present/absent): 3\nagreement: 67 % (2 of 3)\n"
                               f"Cohen's kappa: {kappa:.3f}\ndisagree: XX.C")
    assert fig.get_suptitle() == "CNN and stacking verdicts — 5 stations"


def test_agreement_map_with_one_station(tmp_path):
    path, fig = draw(F.plot_agreement, HAND_ROWS[:1], tmp_path / "one.png")
    _check_png(path)
    assert _markers(fig.axes[0]) == {("^", 90): [(20.0, 10.0, 0.9)]}
    x0, x1 = fig.axes[0].get_xlim()
    assert x0 < 20.0 < x1 and x1 - x0 == pytest.approx(1.2 * 2.0)  # the minimum span around one station
    assert texts(fig.axes[1])[-1].startswith(
        "stations: 1\ncompared (both present/absent): 1\nagreement: 100 % (1 of 1)")
    assert fig.get_suptitle().endswith("— 1 station")


def test_agreement_map_with_nan_coordinates(tmp_path):
    rows = [dict(r) for r in HAND_ROWS]
    rows[0]["latitude"] = math.nan
    rows[2]["longitude"] = "nan"  # as read back from stations.csv
    path, fig = draw(F.plot_agreement, rows, tmp_path / "some.png")
    _check_png(path)
    points = _markers(fig.axes[0])
    assert points[("^", 90)] == [(24.0, 14.0, None)] and points[("o", 90)] == [(21.0, 11.0, 0.2)]
    assert ("o", 330) not in points  # the disagreeing station has no coordinates: no ring
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "not on the map (no coordinates): XX.A, XX.C" in legend
    assert texts(fig.axes[1])[-1].startswith("stations: 5\ncompared (both present/absent): 3")  # still counted
    for r in rows:
        r["latitude"] = math.nan
    path, fig = draw(F.plot_agreement, rows, tmp_path / "none.png")
    _check_png(path)
    assert len(fig.axes[0].collections) == 0 and "no station coordinates" in texts(fig.axes[0])
    path, fig = draw(F.plot_agreement, [], tmp_path / "empty.png")
    _check_png(path)
    assert texts(fig.axes[1])[-1].startswith("stations: 0\ncompared (both present/absent): 0\nagreement: n/a")


def test_agreement_map_draws_coastlines_and_goes_global(tmp_path):
    """Shipped Natural Earth coastlines under the stations (offline); a world map when the stations span
    the globe, station codes beside them."""
    rows = [{**HAND_ROWS[0], "station": "CX.PB01", "longitude": -69.49, "latitude": -21.04}]
    _, fig = draw(F.plot_agreement, rows, tmp_path / "chile.png")
    ax = fig.axes[0]
    (coast,) = ax.lines
    lon, lat = coast.get_xdata(), coast.get_ydata()
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    inside = (lon > x0) & (lon < x1) & (lat > y0) & (lat < y1)
    # the coast of northern Chile, west of the station: a vertex within half a degree of (-70.2, -21)
    assert inside.any() and np.nanmin(np.hypot(lon[inside] + 70.2, lat[inside] + 21.0)) < 0.5
    assert [t.get_text() for t in ax.texts] == ["CX.PB01"]
    world = [{**HAND_ROWS[0], "station": f"XX.S{k}", "longitude": lon_, "latitude": lat_}
             for k, (lon_, lat_) in enumerate([(-120.0, 40.0), (10.0, 45.0), (140.0, -30.0)])]
    _, fig = draw(F.plot_agreement, world, tmp_path / "world.png")
    assert fig.axes[0].get_xlim() == (-180.0, 180.0) and fig.axes[0].get_ylim() == (-90.0, 90.0)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["XX.S0", "XX.S1", "XX.S2"]


def test_pretrain_figures_draw_the_results_numbers(tmp_path):
    """``xdisc train pretrain --figures``: confusion tables as given, the ROC of the calibrated test
    probabilities (scikit-learn's), the reliability of the raw ones with the calibrated ones beside."""
    rng = np.random.default_rng(4)
    y = (rng.random(200) < 0.5).astype(int)
    logits = 3.0 * (y - 0.5) + rng.normal(0, 1.5, y.size)
    temperature = 2.0
    result = {"validation": {"confusion": [[9, 1], [2, 8]]},
              "test": {"confusion": [[80, 20], [10, 90]], "ece_uncalibrated": 0.12, "ece": 0.03},
              "_test_logits": logits, "_test_labels": y, "temperature": temperature}
    with saved_figures() as figs:
        paths = F.plot_pretrain(result, tmp_path)
    assert [p.name for p in paths] == ["pretrain_validation_confusion.png", "pretrain_test_confusion.png",
                                       "pretrain_roc.png", "pretrain_reliability.png"]
    val, test, roc, rel = (f.axes[0] for f in figs)
    assert _cells(val)[1, 0] == "2\n20 %" and _cells(test) == {(0, 0): "80\n80 %", (0, 1): "20\n20 %",
                                                                (1, 0): "10\n10 %", (1, 1): "90\n90 %"}
    prob = expit(logits / temperature)
    fpr, tpr, _ = sk_roc_curve(y, prob)
    drawn = line(roc, f"pretrained CNN, synthetic test (AUC = {roc_auc_score(y, prob):.3f})")
    np.testing.assert_allclose(drawn.get_xydata(), np.column_stack([fpr, tpr]))
    counts, _ = np.histogram(expit(logits), np.linspace(0, 1, 11))  # the raw (uncalibrated) probabilities
    np.testing.assert_allclose([b.get_height() for b in figs[3].axes[1].containers[0]], counts)
    assert [ln.get_label() for ln in rel.get_lines()][1:] == ["model (ECE = 0.120)",
                                                               "after temperature scaling (ECE = 0.030)"]
    k = np.clip(np.digitize(prob, np.linspace(0, 1, 11)) - 1, 0, 9)  # calibrated: logit / temperature
    filled = np.unique(k)
    np.testing.assert_allclose(line(rel, "after temperature scaling (ECE = 0.030)").get_xydata(),
                               [[prob[k == b].mean(), y[k == b].mean()] for b in filled])
    with saved_figures() as figs:  # no test set: the validation confusion only
        assert [p.name for p in F.plot_pretrain({"validation": result["validation"]}, tmp_path / "v")] == [
            "pretrain_validation_confusion.png"]
    assert len(figs) == 1 and _cells(figs[0].axes[0])[0, 0] == "9\n90 %"


def test_evaluation_figures_draw_the_results_numbers(tmp_path):
    """``xdisc evaluate --figures``: accuracy and false positives against SNR, detection against dVs (in %)."""
    result = {"snr_levels": [2.0, 10.0, 30.0], "n_samples": 40, "n_rf": 50,
              "cnn": {"accuracy": [0.6, 0.85, 0.95], "false_positive": [0.3, 0.1, 0.05]},
              "stacking": {"accuracy": [0.55, 0.7, 0.9], "false_positive": [0.2, 0.1, 0.0]},
              "by_dvs": {"snr": 10.0, "dvs_bin_centre": [0.015, 0.025, 0.035], "cnn_true_positive": [0.4, 0.8, 1.0],
                         "stacking_true_positive": [0.1, 0.5, math.nan], "cnn_false_positive": 0.1,
                         "stacking_false_positive": 0.05}}
    with saved_figures() as figs:
        paths = F.plot_evaluation(result, tmp_path)
    assert [p.name for p in paths] == ["accuracy_vs_snr.png", "detection_vs_dvs.png"]  # no by_structure
    snr, dvs = (f.axes[0] for f in figs)
    drawn = {c.get_label(): c.lines[0].get_xydata() for c in snr.containers}
    np.testing.assert_allclose(drawn["CNN"], [[2, 0.6], [10, 0.85], [30, 0.95]])
    np.testing.assert_allclose(drawn["stacking false positives"], [[2, 0.2], [10, 0.1], [30, 0.0]])
    assert snr.get_title() == "Synthetic test stations (40, 50 RFs each)"
    drawn = {c.get_label(): c.lines[0].get_xydata() for c in dvs.containers}
    np.testing.assert_allclose(drawn["CNN"], [[1.5, 0.4], [2.5, 0.8], [3.5, 1.0]])  # dVs in percent
    np.testing.assert_allclose(drawn["stacking"], [[1.5, 0.1], [2.5, 0.5], [3.5, np.nan]])
    assert dvs.get_title() == "Detection of X at SNR 10 (false positives: CNN 10 %, stacking 5 %)"


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must end with"):
        F.plot_confusion([[1, 0], [0, 1]], ["a", "b"], tmp_path / "c.jpg2", "x")
    assert not list(tmp_path.iterdir())
