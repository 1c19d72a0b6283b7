"""The demo network of the default run (xdisc.data.demo): an archive a user could have, read back through
the local-archive path, with P where TauP puts it and the truth beside it."""

import csv

import numpy as np
import pytest
from obspy import read, read_events, read_inventory
from xdisc import config as cfgmod
from xdisc.core.deconvolution import RFSettings
from xdisc.data.demo import NETWORK, make_demo
from xdisc.data.download import download_station, get_events, get_stations, station_rows
from xdisc.data.examples import demo_paths
from xdisc.data.receiver_functions import compute_station, event_table, load_items
from xdisc.report.truth_score import score_table


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    # sensitivities only in the StationXML, as in the default configuration
    cfg = cfgmod.validate({"data": {"source": "demo", "demo": {"folder": str(folder), "stations": 2, "events": 6,
                                                                "seed": 5}},
                           "rf_processing": {"response": "gain"}})
    info = make_demo(folder, cfg["data"]["demo"], cfg)
    return {"cfg": cfg, "folder": folder, "info": info, "paths": demo_paths(folder)}


def test_archive_holds_the_real_station_and_marked_synthetic_ones(demo):
    paths = demo["paths"]
    inv = read_inventory(str(paths["inventory"]))
    assert sorted(net.code for net in inv) == ["CX", NETWORK]
    sy = inv.select(network=NETWORK)[0]
    assert "SYNTHETIC" in sy.description and [s.code for s in sy] == ["D01", "D02"]
    events = read_events(str(paths["events"]))
    synthetic = [e for e in events if e.event_descriptions and "SYNTHETIC" in e.event_descriptions[0].text]
    assert len(events) == 13 + 6 and len(synthetic) == 6
    with open(paths["truth"], newline="") as f:
        truth = list(csv.DictReader(f))
    assert [r["station"] for r in truth] == ["SY.D01", "SY.D02"]
    assert sorted(r["x_present"] for r in truth) == ["0", "1"]
    x = next(r for r in truth if r["x_present"] == "1")
    assert 260 <= float(x["x_depth_km"]) <= 340 and 0.03 <= float(x["x_dvs"]) <= 0.05
    # the real station's records are in the same SDS tree, unchanged
    assert list((paths["sds"] / "2011" / "CX" / "PB01").iterdir())


def test_demo_stations_read_like_a_users_archive_with_p_at_the_taup_time(demo, tmp_path):
    cfg = demo["cfg"]
    data = cfg["data"]
    events = get_events(data)
    assert len(events) == 19
    inv, providers = get_stations(data)
    rows = {f"{r['network']}.{r['station']}": r for r in station_rows(inv, providers)}
    assert sorted(rows) == ["CX.PB01", "SY.D01", "SY.D02"]
    with open(demo["paths"]["truth"], newline="") as f:
        n_events = {r["station"]: int(r["n_events"]) for r in csv.DictReader(f)}
    got = download_station(events, rows["SY.D01"], data, tmp_path / "w", tmp_path / "m.csv")
    assert got.summary.ok == n_events["SY.D01"] > 0
    items = load_items(tmp_path / "m.csv", tmp_path / "w")
    before = data["window_before_p_s"]
    for request, stream in items:
        z = stream.select(component="Z")[0]
        t = z.times() - before                                   # s after the predicted P
        assert abs(t[np.argmax(np.abs(z.data))]) < 3.0, request["event_id"]  # P is the largest arrival
    ds = compute_station(items, inv, rows["SY.D01"], RFSettings(**cfg["receiver_function"]), cfg["rf_processing"],
                         cfg["earth_model"], event_table(events))
    ok = ds["qc_pass"].values == 1
    assert ok.sum() >= 0.8 * len(items)          # SNR 8-25: nearly every event passes
    assert np.all(np.abs(ds["p_offset_s"].values[ok]) <= 0.5)


def test_score_counts_undetermined_as_wrong(demo, tmp_path):
    with open(demo["paths"]["truth"], newline="") as f:
        truth = {r["station"]: r["x_present"] for r in csv.DictReader(f)}
    xs = next(s for s, v in truth.items() if v == "1")
    ns = next(s for s, v in truth.items() if v == "0")
    stations = tmp_path / "stations.csv"
    stations.write_text("station,stacking_verdict,cnn_verdict,x_depth_km,cnn_x_depth_km\n"
                        "CX.PB01,undetermined,undetermined,nan,nan\n"
                        f"{xs},present,undetermined,300,nan\n"
                        f"{ns},present,absent,280,nan\n")
    table, summary = score_table(stations, demo["paths"]["truth"])
    assert sorted(table["station"]) == sorted(truth)          # only the stations with a truth
    assert summary["stacking"] | {"median_depth_error_km": 0} == {
        "accuracy": 0.5, "false_alarm_rate": 1.0, "miss_rate": 0.0, "undetermined_fraction": 0.0,
        "accuracy_among_decided": 0.5, "median_depth_error_km": 0}
    with open(demo["paths"]["truth"], newline="") as f:
        depth = float(next(r for r in csv.DictReader(f) if r["station"] == xs)["x_depth_km"])
    assert summary["stacking"]["median_depth_error_km"] == pytest.approx(abs(300 - depth))
    assert summary["cnn"]["accuracy"] == 0.5 and summary["cnn"]["miss_rate"] == 1.0
    assert summary["cnn"]["undetermined_fraction"] == 0.5 and summary["cnn"]["false_alarm_rate"] == 0.0


def test_demo_is_reproducible(demo, tmp_path):
    cfg = demo["cfg"]
    make_demo(tmp_path, cfg["data"]["demo"], cfg)
    a = sorted(p.relative_to(demo["paths"]["sds"]) for p in demo["paths"]["sds"].rglob("*.D.*"))
    b = sorted(p.relative_to(tmp_path / "SDS") for p in (tmp_path / "SDS").rglob("*.D.*"))
    assert a == b
    for rel in a[:6]:
        one, two = read(str(demo["paths"]["sds"] / rel)), read(str(tmp_path / "SDS" / rel))
        assert [tr.data.tolist() for tr in one] == [tr.data.tolist() for tr in two]
    assert demo["paths"]["truth"].read_text() == (tmp_path / "truth.csv").read_text()
