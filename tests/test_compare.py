"""CNN-stacking comparison: a known pair of tables gives exactly the expected station table and summary."""

from __future__ import annotations

import argparse
import csv
import json
import math

import numpy as np
import pytest
from matplotlib.image import imread
from xdisc.cli import build_parser
from xdisc.core.artifacts import write_json
from xdisc.report import compare
from xdisc.stack.stacking import TABLE_COLUMNS

CNN_CSV = """\
station,latitude,longitude,n_rf,n_images,probability,probability_std,verdict
AA.A1,10.5,20.25,30,5,0.9,0.05,present
AA.A2,11,21,25,4,0.2,0.1,absent
AA.A3,12,22,12,3,0.8,0.1,present
AA.A4,13,23,8,2,0.55,0.2,undetermined
AA.A5,14,24,40,6,0.1,0.02,absent
AA.A7,16,26,20,3,0.3,0.1,absent
AA.A8,17,27,33,5,0.95,0.01,present
AA.A9,18,28,9,2,0.15,0.05,absent
"""

# stacking.TABLE_COLUMNS, written the way 'xdisc verdicts' writes them (%.4g, nan)
STACKING_CSV = """\
station,latitude,longitude,n_rf,verdict,x_depth_km,x_depth_err_km,x_amp,x_amp_err,d410_km,d660_km,moho_km,moho_err_km,vpvs,vpvs_err,depth_model,reason
AA.A1,10.5,20.25,28,present,300,8.5,0.03,0.005,410,660,nan,nan,nan,nan,earth model,
AA.A2,11,21,25,absent,nan,nan,nan,nan,412,665,nan,nan,nan,nan,earth model,not significant
AA.A3,12,22,11,absent,nan,nan,nan,nan,nan,nan,nan,nan,nan,nan,earth model,not significant
AA.A4,13,23,8,present,280,12,0.02,0.006,405,nan,nan,nan,nan,nan,earth model,
AA.A5,14,24,40,absent,nan,nan,nan,nan,410,660,nan,nan,nan,nan,earth model,not significant
AA.A6,15,25,19,present,320,10,0.04,0.01,410,660,nan,nan,nan,nan,earth model,
AA.A8,17,27,31,present,310,5,0.05,0.004,410,660,nan,nan,nan,nan,earth model,
AA.A9,18,28,9,undetermined,nan,nan,nan,nan,nan,nan,nan,nan,nan,nan,earth model,9 receiver functions < 10
"""

EXPECTED_CSV = """\
station,latitude,longitude,n_rf,stacking_verdict,cnn_verdict,cnn_probability,cnn_probability_std,x_depth_km,\
x_depth_err_km,cnn_x_depth_km,cnn_x_depth_err_km,cnn_network,agree
AA.A1,10.5,20.25,28,present,present,0.9,0.05,300,8.5,nan,nan,,yes
AA.A2,11,21,25,absent,absent,0.2,0.1,nan,nan,nan,nan,,yes
AA.A3,12,22,11,absent,present,0.8,0.1,nan,nan,nan,nan,,no
AA.A4,13,23,8,present,undetermined,0.55,0.2,280,12,nan,nan,,n/a
AA.A5,14,24,40,absent,absent,0.1,0.02,nan,nan,nan,nan,,yes
AA.A6,15,25,19,present,missing,nan,nan,320,10,nan,nan,,n/a
AA.A7,16,26,20,missing,absent,0.3,0.1,nan,nan,nan,nan,,n/a
AA.A8,17,27,31,present,present,0.95,0.01,310,5,nan,nan,,yes
AA.A9,18,28,9,undetermined,absent,0.15,0.05,nan,nan,nan,nan,,n/a
"""


@pytest.fixture
def tables(tmp_path):
    cnn, stacking = tmp_path / "cnn.csv", tmp_path / "stacking.csv"
    cnn.write_text(CNN_CSV)
    stacking.write_text(STACKING_CSV)
    return cnn, stacking


def _kappa_by_hand() -> float:
    # compared stations (both present/absent): A1 p/p, A2 a/a, A3 a/p, A5 a/a, A8 p/p
    #                  cnn present  cnn absent
    # stacking present      2            0
    # stacking absent       1            2
    n = 5
    observed = (2 + 2) / n
    chance = (2 / n) * (3 / n) + (3 / n) * (2 / n)  # row x column marginals, present then absent
    return (observed - chance) / (1 - chance)


def test_stacking_fixture_has_the_stacking_columns():
    assert STACKING_CSV.splitlines()[0].split(",") == list(TABLE_COLUMNS)


def test_known_tables_give_the_expected_rows_and_summary(tables, tmp_path):
    rows, summary = compare.compare_verdicts(*tables)
    assert [r["station"] for r in rows] == [f"AA.A{i}" for i in range(1, 10)]
    a6 = rows[5]
    assert a6["cnn_verdict"] == "missing" and math.isnan(a6["cnn_probability"]) and a6["n_rf"] == 19
    a7 = rows[6]
    assert a7["stacking_verdict"] == "missing" and math.isnan(a7["x_depth_km"]) and a7["latitude"] == 16.0

    assert summary["n_stations"] == 9
    assert summary["n_compared"] == 5
    assert summary["n_agree"] == 4
    assert summary["agreement"] == pytest.approx(0.8)
    assert summary["cohen_kappa"] == pytest.approx(_kappa_by_hand())
    assert summary["cohen_kappa"] == pytest.approx(8 / 13)  # (0.8 - 0.48) / 0.52
    assert summary["disagreeing"] == ["AA.A3"]
    assert summary["missing_in_cnn"] == ["AA.A6"]
    assert summary["missing_in_stacking"] == ["AA.A7"]
    nd = "not detectable"  # no detectability table here: nobody is
    assert summary["confusion"] == {
        "present": {"present": 2, "absent": 0, "undetermined": 1, nd: 0, "missing": 1},
        "absent": {"present": 1, "absent": 2, "undetermined": 0, nd: 0, "missing": 0},
        "undetermined": {"present": 0, "absent": 1, "undetermined": 0, nd: 0, "missing": 0},
        nd: {"present": 0, "absent": 0, "undetermined": 0, nd: 0, "missing": 0},
        "missing": {"present": 0, "absent": 1, "undetermined": 0, nd: 0, "missing": 0},
    }
    assert sum(sum(r.values()) for r in summary["confusion"].values()) == summary["n_stations"]
    assert summary["inputs"] == {"cnn": str(tables[0]), "stacking": str(tables[1])}

    out_csv, out_json = tmp_path / "verdicts" / "stations.csv", tmp_path / "metrics" / "agreement.json"
    compare.write_outputs(rows, summary, out_csv, out_json)
    assert out_csv.read_bytes().decode() == EXPECTED_CSV.replace("\n", "\r\n")  # csv writes \r\n (RFC 4180)
    with open(out_csv, newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == compare.STATION_COLUMNS
    written = json.loads(out_json.read_text())
    assert written == json.loads(json.dumps(summary))
    assert not list(tmp_path.rglob("*.part"))


def test_nothing_compared_gives_null_agreement_in_json(tmp_path):
    cnn, stacking = tmp_path / "cnn.csv", tmp_path / "stacking.csv"
    cnn.write_text(CNN_CSV.splitlines()[0] + "\nAA.B1,1,2,3,1,0.5,0.3,undetermined\n")
    stacking.write_text(STACKING_CSV.splitlines()[0] + "\nAA.B1,1,2,3,present,300,10,0.03,0.01,410,660\n")
    rows, summary = compare.compare_verdicts(cnn, stacking)
    assert rows[0]["agree"] == "n/a"
    assert summary["n_compared"] == 0 and math.isnan(summary["agreement"]) and math.isnan(summary["cohen_kappa"])
    out_json = tmp_path / "agreement.json"
    compare.write_outputs(rows, summary, tmp_path / "stations.csv", out_json)
    text = out_json.read_text()
    assert "NaN" not in text
    assert json.loads(text)["agreement"] is None and json.loads(text)["cohen_kappa"] is None


def test_metrics_json_is_strict_json_with_numpy_values_and_unknowns_as_null(tmp_path):
    """The one JSON writer of every metrics file (training, evaluation, agreement)."""
    data = {"auc": np.float64("nan"), "acc": np.float32(0.75), "n": np.int64(3), "curve": np.array([0.0, np.inf]),
            "per_model": {np.str_("ak135"): np.float64(0.8)}, "pair": (1, float("-inf")), "ok": True}
    path = write_json(data, tmp_path / "metrics" / "m.json")

    def reject(name):
        raise ValueError(f"not strict JSON: {name}")

    loaded = json.loads(path.read_text(), parse_constant=reject)
    assert loaded == {"auc": None, "acc": 0.75, "n": 3, "curve": [0.0, None], "per_model": {"ak135": 0.8},
                      "pair": [1, None], "ok": True}
    assert not list(tmp_path.rglob("*.part"))


def test_coordinates_fall_back_to_the_cnn_table(tmp_path):
    cnn, stacking = tmp_path / "cnn.csv", tmp_path / "stacking.csv"
    cnn.write_text(CNN_CSV.splitlines()[0] + "\nAA.B1,1.5,2.5,3,1,0.7,0.1,present\n")
    stacking.write_text(STACKING_CSV.splitlines()[0] + "\nAA.B1,nan,nan,3,present,300,10,0.03,0.01,410,660\n")
    rows, _ = compare.compare_verdicts(cnn, stacking)
    assert (rows[0]["latitude"], rows[0]["longitude"]) == (1.5, 2.5)


def test_stations_show_the_probability_the_cnn_verdict_was_decided_on(tmp_path):
    """With its own thresholds the CNN decides on image 0's probability, not the mean over the images:
    stations.csv shows that one (a station called present at the mean 0.69 showed a probability below its
    threshold); a station decided on the mean (no own thresholds: the cell is blank) keeps the mean."""
    cnn, stacking = tmp_path / "cnn.csv", tmp_path / "stacking.csv"
    cnn.write_text("station,latitude,longitude,n_rf,n_images,probability,probability_std,probability_all,"
                   "verdict_probability,verdict\n"
                   "AA.B1,1,2,40,8,0.69,0.3,0.93,0.93,present\n"
                   "AA.B2,1,2,40,8,0.2,0.1,0.4,,absent\n")
    stacking.write_text(STACKING_CSV.splitlines()[0] + "\nAA.B1,1,2,40,absent,nan,nan,nan,nan,410,660\n"
                        "AA.B2,1,2,40,absent,nan,nan,nan,nan,410,660\n")
    rows, _ = compare.compare_verdicts(cnn, stacking)
    assert [(r["station"], r["cnn_probability"], r["cnn_probability_std"]) for r in rows] == [
        ("AA.B1", 0.93, 0.3), ("AA.B2", 0.2, 0.1)]


def test_stations_name_the_network_that_judged_each_station(tmp_path):
    """With cnn.refine a station is judged by its fold's network: stations.csv says which (cnn_network); a
    station the CNN did not judge has none."""
    cnn, stacking = tmp_path / "cnn.csv", tmp_path / "stacking.csv"
    cnn.write_text("station,latitude,longitude,n_rf,n_images,probability,probability_std,verdict,network\n"
                   "AA.B1,1,2,40,8,0.9,0.1,present,refined fold 2\n"
                   "AA.B2,1,2,40,8,0.2,0.1,absent,run\n")
    stacking.write_text(STACKING_CSV.splitlines()[0] + "\nAA.B1,1,2,40,absent,nan,nan,nan,nan,410,660\n"
                        "AA.B3,1,2,40,absent,nan,nan,nan,nan,410,660\n")
    compare.write_outputs(*compare.compare_verdicts(cnn, stacking), tmp_path / "stations.csv", tmp_path / "a.json")
    rows = list(csv.DictReader((tmp_path / "stations.csv").read_text().splitlines()))
    assert [(r["station"], r["cnn_network"]) for r in rows] == [
        ("AA.B1", "refined fold 2"), ("AA.B2", "run"), ("AA.B3", "")]


@pytest.mark.parametrize("table,text,match", [
    ("cnn", CNN_CSV.replace("AA.A2,11,21,25,4,0.2,0.1,absent", "AA.A2,11,21,25,4,0.2,0.1,maybe"), "maybe"),
    ("stacking", STACKING_CSV.replace("AA.A9,", "AA.A8,"), "listed twice"),
    ("cnn", CNN_CSV.replace("probability_std,", "prob_std,"), "probability_std"),
])
def test_bad_tables_raise_clear_errors(tables, table, text, match):
    path = tables[0] if table == "cnn" else tables[1]
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        compare.compare_verdicts(*tables)


def test_missing_table(tables, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        compare.compare_verdicts(tmp_path / "nope.csv", tables[1])


def _parser() -> argparse.ArgumentParser:
    return build_parser()


def test_cli_writes_table_summary_and_figure(tables, tmp_path):
    out, summary, figure = tmp_path / "stations.csv", tmp_path / "agreement.json", tmp_path / "agreement.png"
    args = _parser().parse_args(["compare", "--cnn", str(tables[0]), "--stacking", str(tables[1]), "--out", str(out),
                                 "--summary", str(summary), "--figure", str(figure)])
    assert args.func(args) == 0
    assert out.read_bytes().decode() == EXPECTED_CSV.replace("\n", "\r\n")
    assert json.loads(summary.read_text())["agreement"] == pytest.approx(0.8)
    assert imread(figure).shape[0] > 300


def test_cli_needs_its_inputs(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["compare", "--cnn", "a.csv"])
    assert "--stacking" in capsys.readouterr().err


def test_short_rows_padded_verdicts_and_negative_zero(tmp_path):
    cnn, stacking = tmp_path / "cnn.csv", tmp_path / "stacking.csv"
    cnn.write_text(CNN_CSV.splitlines()[0] + "\nAA.B1,1.5,2.5,3,1,0.7,-0, present \n")
    stacking.write_text("station,latitude,longitude,n_rf,verdict,x_depth_km,x_depth_err_km\nAA.B1,1,2,3.9,absent,300\n")
    (row,), summary = compare.compare_verdicts(cnn, stacking)
    assert (row["cnn_verdict"], row["stacking_verdict"], row["agree"]) == ("present", "absent", "no")
    assert row["x_depth_km"] == 300.0 and math.isnan(row["x_depth_err_km"])  # the cell the row lacks
    assert row["n_rf"] == 3 and math.copysign(1.0, row["cnn_probability_std"]) == -1.0
    assert summary["disagreeing"] == ["AA.B1"]


DETECTABILITY_CSV = """\
station,n_rf,dvs90_stacking,dvs90_cnn,false_alarm_rate_stacking,false_alarm_rate_cnn
AA.A1,28,0.02,0.02,0.03,0.0
AA.A2,25,0.03,0.05,0.0,0.1
AA.A3,11,nan,0.03,0.1,0.03
AA.A5,40,0.06,0.01,0.0,0.0
"""


def test_absent_that_would_not_have_seen_x_becomes_not_detectable(tables, tmp_path, caplog):
    """A table written before the excluded dVs (2026-12-04): dvs90 decides, and the log says so."""
    det = tmp_path / "detectability.csv"
    det.write_text(DETECTABILITY_CSV)
    with caplog.at_level("WARNING", logger="xdisc.report.compare"):
        rows, summary = compare.compare_verdicts(*tables, detectability_csv=det, target_dvs=0.03)
    assert "judged by dvs90" in caplog.text
    by = {r["station"]: r for r in rows}
    # A2: both absent; stacking would see 3 % (dvs90 0.03), the CNN only 5 %
    assert (by["AA.A2"]["stacking_verdict"], by["AA.A2"]["cnn_verdict"]) == ("absent", "not detectable")
    # A3: stacking absent with unknown dvs90 -> not detectable; the CNN's present is left alone
    assert (by["AA.A3"]["stacking_verdict"], by["AA.A3"]["cnn_verdict"]) == ("not detectable", "present")
    assert by["AA.A3"]["agree"] == "n/a" and by["AA.A2"]["agree"] == "n/a"
    # A5: the stacking needs 6 %: not detectable; the CNN 1 %: absent stands
    assert (by["AA.A5"]["stacking_verdict"], by["AA.A5"]["cnn_verdict"]) == ("not detectable", "absent")
    # A9: no detectability row: the CNN's absent has no dvs90 -> not detectable
    assert by["AA.A9"]["cnn_verdict"] == "not detectable"
    assert by["AA.A1"]["dvs90_cnn"] == pytest.approx(0.02) and math.isnan(by["AA.A9"]["dvs90_stacking"])
    assert summary["n_compared"] == 2 and summary["inputs"]["detectability"] == str(det)  # A1, A8
    out_csv = tmp_path / "stations.csv"
    compare.write_outputs(rows, summary, out_csv, tmp_path / "agreement.json")
    with open(out_csv, newline="") as f:
        header = tuple(csv.DictReader(f).fieldnames)
    assert header == (*compare.STATION_COLUMNS, *compare.DETECTABILITY_COLUMNS, *compare.EXCLUDED_COLUMNS,
                      compare.DETECTABILITY_NOTE)
    assert by["AA.A9"]["detectability_note"].startswith("not tested") and by["AA.A1"]["detectability_note"] == ""
    assert by["AA.A2"]["excluded_dvs_cnn"] == pytest.approx(0.05)  # the fallback, shown as used


def test_absent_stands_where_x_would_not_have_been_called_absent(tables, tmp_path, caplog):
    """The excluded dVs decides: X of 3 % that the CNN would rarely call absent, though it would not call it
    present either (dvs90 5 %), leaves the CNN's absent standing."""
    det = tmp_path / "detectability.csv"
    lines = DETECTABILITY_CSV.splitlines()
    excluded = {"AA.A1": "0.02,0.01", "AA.A2": "0.03,0.03", "AA.A3": "nan,0.02", "AA.A5": "0.04,0.04"}
    det.write_text("\n".join([lines[0] + ",excluded_dvs_stacking,excluded_dvs_cnn"]
                             + [f"{line},{excluded[line.split(',')[0]]}" for line in lines[1:]]) + "\n")
    with caplog.at_level("WARNING", logger="xdisc.report.compare"):
        rows, _ = compare.compare_verdicts(*tables, detectability_csv=det, target_dvs=0.03)
    assert "judged by dvs90" not in caplog.text
    by = {r["station"]: r for r in rows}
    # A2: the CNN's dvs90 is 5 %, but X of 3 % would not have been called absent: its absent stands
    assert (by["AA.A2"]["stacking_verdict"], by["AA.A2"]["cnn_verdict"]) == ("absent", "absent")
    assert by["AA.A2"]["agree"] == "yes" and by["AA.A2"]["dvs90_cnn"] == pytest.approx(0.05)
    # A5: the CNN's dvs90 is 1 %, but it would call X of 3 % absent too often: not detectable
    assert (by["AA.A5"]["stacking_verdict"], by["AA.A5"]["cnn_verdict"]) == ("not detectable", "not detectable")
    # A3: unknown excluded dVs for the stacking: not detectable; A9 (no row): not detectable
    assert by["AA.A3"]["stacking_verdict"] == "not detectable" and by["AA.A9"]["cnn_verdict"] == "not detectable"
