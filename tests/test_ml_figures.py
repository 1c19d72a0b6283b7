"""CNN evaluation and comparison figures: each writes a non-empty image of sensible size, degenerate data included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.special import expit
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


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    verdicts = ["present", "absent", "undetermined", "missing"]
    rows = []
    for i in range(n):
        s, c = verdicts[i % 4], verdicts[(i * 3 + 1) % 4]
        agree = ("yes" if s == c else "no") if s in verdicts[:2] and c in verdicts[:2] else "n/a"
        rows.append({"station": f"XX.S{i:02d}", "latitude": -21 + rng.normal(0, 1), "longitude": -69 + rng.normal(0, 1),
                     "cnn_probability": math.nan if c == "missing" else float(rng.random()), "stacking_verdict": s,
                     "cnn_verdict": c, "agree": agree})
    return rows


def test_confusion_png(tmp_path):
    path = F.plot_confusion([[40, 5], [7, 48]], ["absent", "present"], tmp_path / "c.png", "Synthetic test set")
    _check_png(path)
    _check_png(F.plot_confusion(np.zeros((3, 3)), ["a", "b", "c"], tmp_path / "zero.png", "empty"))
    with pytest.raises(ValueError, match="labels"):
        F.plot_confusion([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "bad.png", "bad")


def test_roc_png_and_pdf(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.5
    s = expit(2 * (y - 0.5) + rng.normal(0, 1, y.size))
    fpr, tpr, _ = M.roc_curve(y, s)
    curves = {"pretrain": (fpr, tpr, M.roc_auc(y, s)), "one class": (*M.roc_curve([1, 1], [0.2, 0.3])[:2], math.nan)}
    _check_png(F.plot_roc(curves, tmp_path / "roc.png"))
    pdf = F.plot_roc(curves, tmp_path / "roc.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    _check_png(F.plot_roc({}, tmp_path / "none.png"))


def test_reliability_png(tmp_path):
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, 2000)
    y = rng.random(z.size) < expit(z)
    bins = M.reliability(y, expit(3 * z))
    after = M.reliability(y, expit(z))
    ece, ece_after = M.expected_calibration_error(y, expit(3 * z)), M.expected_calibration_error(y, expit(z))
    _check_png(F.plot_reliability(bins, tmp_path / "r.png", ece, ece_after, bins_after=after))
    _check_png(F.plot_reliability(bins._asdict(), tmp_path / "r_dict.png", ece, ece_after))  # e.g. read from JSON
    _check_png(F.plot_reliability(M.reliability([], []), tmp_path / "r_empty.png", math.nan))


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

    img = _check_png(F.plot_training_curves({"pretrain": pre, "fine-tune": fine}, tmp_path / "t.png"))
    assert img.shape[1] > img.shape[0]  # the two runs side by side
    _check_png(F.plot_training_curves({"pretrain": pre}, tmp_path / "t1.png"))
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        F.plot_training_curves({"pretrain": tmp_path / "missing.csv"}, tmp_path / "t2.png")


def test_training_curves_with_a_header_only_file(tmp_path):
    empty = tmp_path / "metrics.csv"
    empty.write_text("epoch,step,train/loss,val/loss,val/acc\n")
    _check_png(F.plot_training_curves({"pretrain": empty}, tmp_path / "t.png"))


def test_accuracy_vs_png(tmp_path):
    snr = np.array([1.0, 2, 5, 10, 20])
    series = {"CNN": [0.55, 0.65, 0.8, 0.92, 0.97], "stacking": (snr[:3], [0.5, 0.58, 0.7], [0.05, 0.04, 0.03])}
    _check_png(F.plot_accuracy_vs(snr, series, tmp_path / "snr.png", "signal-to-noise ratio", xscale="log"))
    dvs = ([0.01, 0.02, 0.03, 0.04], [0.6, 0.75, 0.85, 0.9])
    _check_png(F.plot_accuracy_vs(None, {"CNN": dvs}, tmp_path / "dvs.png", "S-velocity jump of X (dVs/Vs)"))
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
    _check_png(F.plot_rates_by_structure(by, 1, tmp_path / "by.png"))
    # three panels in a 2 x 2 grid: the fourth is blank, not an empty frame; no parameter at all: a note
    _check_png(F.plot_rates_by_structure({}, 0, tmp_path / "none.png"), min_px=200)
    one = {"distractor": rates_by(np.array(["none"] * 4), np.array([1, 1, 0, 0]),
                                  {"cnn": np.zeros((1, 4), bool)}, categorical=True)}
    _check_png(F.plot_rates_by_structure(one, 0, tmp_path / "one.png"), min_px=200)


def test_agreement_map(tmp_path):
    _check_png(F.plot_agreement(_rows(14), tmp_path / "a.png"))


def test_agreement_map_with_one_station(tmp_path):
    _check_png(F.plot_agreement(_rows(1), tmp_path / "one.png"))


def test_agreement_map_with_nan_coordinates(tmp_path):
    rows = _rows(5)
    rows[0]["latitude"] = math.nan
    rows[2]["longitude"] = "nan"  # as read back from stations.csv
    _check_png(F.plot_agreement(rows, tmp_path / "some.png"))
    for r in rows:
        r["latitude"] = math.nan
    _check_png(F.plot_agreement(rows, tmp_path / "none.png"))
    _check_png(F.plot_agreement([], tmp_path / "empty.png"))


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must end with"):
        F.plot_confusion([[1, 0], [0, 1]], ["a", "b"], tmp_path / "c.jpg2", "x")
    assert not list(tmp_path.iterdir())
