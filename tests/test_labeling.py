"""xdisc.labels and xdisc.label_app: the label file, the import of published tables, the labelling server (real HTTP on
127.0.0.1) and the page in a real headless Chromium (selenium; bash tests/INSTALL_browser.sh)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import re
import select
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import in_ci, need
from xdisc import label_app
from xdisc import labels as xlabels
from xdisc.cli import build_parser

SLOWNESS = np.linspace(0.04, 0.08, 9)
DEPTH = np.arange(0.0, 800.0 + 1e-9, 2.5)
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


# ----------------------------------------------------------------------------- fixtures

def _bump(depth_km: float, amp: float, width_km: float = 6.0) -> np.ndarray:
    return amp * np.exp(-0.5 * ((DEPTH - depth_km) / width_km) ** 2)


def write_images(folder: Path, code: str, n_images: int, seed: int = 0, name: str = "image") -> Path:
    """A station image file in the layout of 'xdisc images': Moho, X at 300 km, 410, 660 and noise.

    The array ``image(image, channel, slowness_bin, depth)`` cannot sit beside an ``image`` index
    coordinate (xarray refuses the pair), so with ``name="image"`` the file has no index coordinate
    (xarray then reads the array as a coordinate); with another name it has one."""
    rng = np.random.default_rng(seed)
    net, sta = code.split(".")
    trace = _bump(35.0, 0.3) + _bump(300.0, 0.03) + _bump(410.0, 0.04) + _bump(660.0, 0.035)
    amp = trace[None, None, :] + rng.normal(0.0, 0.008, (n_images, SLOWNESS.size, DEPTH.size))
    t_value = np.clip(amp / 0.01, -5.0, 5.0)
    index = {} if name == "image" else {"image": np.arange(n_images)}
    ds = xr.Dataset(
        {name: (("image", "channel", "slowness_bin", "depth"), np.stack([amp, t_value], axis=1).astype(np.float32)),
         "n_rf": ("image", np.arange(n_images) + 40)},
        coords={**index, "channel": np.array(["amplitude", "t_value"], dtype=object), "slowness_bin": SLOWNESS,
                "depth": DEPTH, "network": net, "station": sta, "latitude": 46.5, "longitude": 7.25})
    path = folder / f"{code}.nc"
    ds.to_netcdf(path, engine="netcdf4")
    return path


def write_stack(folder: Path, code: str, verdict: str = "present") -> Path:
    depth = np.arange(0.0, 801.0)
    stack = np.interp(depth, DEPTH, _bump(35.0, 0.3) + _bump(300.0, 0.03) + _bump(410.0, 0.04) + _bump(660.0, 0.035))
    ds = xr.Dataset({"depth_stack": ("depth", stack), "depth_stack_lower": ("depth", stack - 0.01),
                     "depth_stack_upper": ("depth", stack + 0.01)}, coords={"depth": depth})
    ds.attrs.update(verdict=verdict, reason="" if verdict == "present" else "no peak above the band",
                    x_depth_km=300.0 if verdict == "present" else np.nan, x_amp=0.03, d410_km=412.0, d660_km=np.nan,
                    n_rf=80, x_window_km=[250, 350])
    path = folder / f"{code}.nc"
    ds.to_netcdf(path, engine="netcdf4")
    return path


@pytest.fixture
def workspace(tmp_path):
    """Two stations (AAA: 2 images with a stacking result, BBB: 2 images without), one corrupt file."""
    images, stacks = tmp_path / "images", tmp_path / "stack"
    images.mkdir()
    stacks.mkdir()
    write_images(images, "XX.BBB", 2, seed=2, name="rf_image")
    write_images(images, "XX.AAA", 2, seed=1)
    (images / "XX.BAD.nc").write_bytes(b"this is not NetCDF\n" * 10)
    write_stack(stacks, "XX.AAA")
    return {"images": images, "stacks": stacks, "labels": tmp_path / "labels" / "labels.csv", "root": tmp_path}


def parser() -> argparse.ArgumentParser:
    return build_parser()


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@contextlib.contextmanager
def serving(session: label_app.LabelSession):
    server = label_app.make_server(session, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def request(url: str, data: dict | bytes | None = None, headers: dict | None = None):
    """(status, body, final url) of a GET, or of a POST when ``data`` is given (a dict is sent as JSON)."""
    headers = dict(headers or {})
    if isinstance(data, dict):
        data = json.dumps(data).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), r.url
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), url


# ----------------------------------------------------------------------------- label file

def row(station, image, label, note="", labeller="me"):
    return {"station": station, "image": image, "label": label, "labeller": labeller, "time": xlabels.utc_now(),
            "note": note, "source": label_app.PAGE_SOURCE}


def test_append_creates_file_and_latest_row_wins(tmp_path):
    path = tmp_path / "new" / "folder" / "labels.csv"
    xlabels.append_labels(path, [row("XX.AAA", 0, "present"), row("XX.AAA", 1, "absent", note="low, noisy")])
    xlabels.append_labels(path, [row("XX.AAA", 0, "unsure"), row("XX.BBB", "*", "present")])
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(xlabels.COLUMNS) and len(lines) == 5  # header once, rows never rewritten
    labels = xlabels.read_labels(path)
    assert labels == {("XX.AAA", 0): "unsure", ("XX.AAA", 1): "absent", ("XX.BBB", "*"): "present"}
    assert xlabels.read_label_rows(path)[("XX.AAA", 1)]["note"] == "low, noisy"


def test_station_wide_labels_expand_and_per_image_overrides(tmp_path):
    path = tmp_path / "labels.csv"
    xlabels.append_labels(path, [row("XX.AAA", "*", "present"), row("XX.AAA", 2, "absent"),
                                  row("XX.BBB", 1, "unsure")])
    labels = xlabels.read_labels(path)
    assert xlabels.labels_for_images(labels, "XX.AAA", 4) == ["present", "present", "absent", "present"]
    assert xlabels.labels_for_images(labels, "XX.BBB", 3) == [None, "unsure", None]
    assert xlabels.labels_for_images(labels, "XX.CCC", 2) == [None, None]


def test_old_label_files_read_unchanged_and_an_empty_image_is_the_whole_station(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("station,image,label,labeller,time,note,source\n"
                    "XX.AAA,*,present,me,2026-01-01T00:00:00+00:00,,xdisc label\n"
                    "XX.AAA,1,absent,me,2026-01-01T00:01:00+00:00,,xdisc label\n"
                    "XX.BBB,,absent,me,2026-01-01T00:02:00+00:00,no index: every image,xdisc label\n"
                    "XX.BBB,0,unsure,me,2026-01-01T00:03:00+00:00,,xdisc label\n")
    labels = xlabels.read_labels(path)
    assert labels == {("XX.AAA", "*"): "present", ("XX.AAA", 1): "absent", ("XX.BBB", "*"): "absent",
                      ("XX.BBB", 0): "unsure"}
    assert xlabels.labels_for_images(labels, "XX.AAA", 3) == ["present", "absent", "present"]
    assert xlabels.labels_for_images(labels, "XX.BBB", 3) == ["unsure", "absent", "absent"]
    demo = Path(__file__).parents[1] / "data" / "labels" / "demo.csv"  # the file as shipped, never rewritten
    assert demo.read_text().splitlines()[0] == ",".join(xlabels.COLUMNS)
    assert {k: r["label"] for k, r in xlabels.read_label_rows(demo).items()} == {("CX.PB01", "*"): "absent"}


def test_weak_labels_from_confident_stacking_verdicts(tmp_path):
    table = tmp_path / "stacking.csv"
    header = "station,latitude,longitude,n_rf,verdict,x_depth_km,x_depth_err_km,x_amp,x_amp_err,d410_km,d660_km"
    table.write_text("\n".join([
        header,
        "XX.PRE,1,2,80,present,300,5,0.040,0.010,410,660",   # 4 sigma: weak present
        "XX.LOW,1,2,80,present,300,5,0.020,0.010,410,660",   # 2 sigma: too weak
        "XX.FEW,1,2,20,present,300,5,0.080,0.010,410,660",   # too few receiver functions
        "XX.ABS,1,2,60,absent,,,,,412,655",                  # both 410 and 660 seen: weak absent
        "XX.NO6,1,2,60,absent,,,,,412,",                     # 660 not measured
        "XX.UND,1,2,90,undetermined,,,,,,",
        "XX.MAN,1,2,90,present,300,5,0.050,0.010,410,660",   # has a manual label: no weak one
    ]) + "\n")
    settings = {"enabled": True, "verdicts": ["present", "absent"], "min_rf": 40, "min_amplitude_sigma": 3.0}
    weak = xlabels.weak_labels(table, settings, manual_stations={"XX.MAN"})
    assert {k: r["label"] for k, r in weak.items()} == {("XX.PRE", "*"): "present", ("XX.ABS", "*"): "absent"}
    assert {r["source"] for r in weak.values()} == {xlabels.WEAK_SOURCE} == {"weak (stacking)"}
    assert list(xlabels.weak_labels(table, {**settings, "verdicts": ["absent"]})) == [("XX.ABS", "*")]
    assert list(xlabels.weak_labels(table, {**settings, "min_rf": 10, "min_amplitude_sigma": 1.5})) == [
        ("XX.PRE", "*"), ("XX.LOW", "*"), ("XX.FEW", "*"), ("XX.ABS", "*"), ("XX.MAN", "*")]


def test_torn_last_line_is_ended_and_left_out(tmp_path, caplog):
    path = tmp_path / "labels.csv"
    xlabels.append_labels(path, [row("XX.AAA", 0, "present")])
    with open(path, "a") as f:
        f.write("XX.AAA,1,pre")  # a crash in the middle of a write
    xlabels.append_labels(path, [row("XX.AAA", 2, "absent")])
    with caplog.at_level(logging.WARNING):
        labels = xlabels.read_labels(path)
    assert labels == {("XX.AAA", 0): "present", ("XX.AAA", 2): "absent"}
    assert "line 3" in caplog.text


def test_foreign_csv_is_not_appended_to(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(xlabels.LabelError, match="not a label file"):
        xlabels.append_labels(path, [row("XX.AAA", 0, "present")])
    assert path.read_text() == "a,b\n1,2\n"


def test_demo_labels_are_valid():
    demo = Path(__file__).parents[1] / "data" / "labels" / "demo.csv"
    rows = xlabels.read_label_rows(demo)
    assert list(rows) == [("CX.PB01", "*")]
    row = rows[("CX.PB01", "*")]
    assert row["label"] == "absent" and row["labeller"] == "demo" and row["source"] == "demo"
    assert "DEMO" in row["note"] and "NOT a scientific judgement" in row["note"]


# ----------------------------------------------------------------------------- import

GOOD_TABLE = """# published X verdicts (test)
station,latitude,longitude,verdict,x_depth_km,reference,comment
XX.AAA,46.5,7.25,yes,305,Author 2020,ignored
XX.BBB,46.6,7.30,NoX,,Author 2020,
XX.CCC,,,x,290,,
XX.DDD,,,0,,,
XX.EEE,,,Unsure,,,
XX.AAA,46.5,7.25,present,305,Author 2020,listed twice with the same verdict
"""


def test_import_good_table(tmp_path):
    table, labels = tmp_path / "author2020.csv", tmp_path / "labels" / "published.csv"
    table.write_text(GOOD_TABLE)
    args = parser().parse_args(["label", "import", str(table), "--labels", str(labels), "--source", "Author2020"])
    assert args.func(args) == 0
    rows = csv_rows(labels)
    assert [(r["station"], r["image"], r["label"]) for r in rows] == [
        ("XX.AAA", "*", "present"), ("XX.BBB", "*", "absent"), ("XX.CCC", "*", "present"),
        ("XX.DDD", "*", "absent"), ("XX.EEE", "*", "unsure")]
    assert {r["labeller"] for r in rows} == {"Author2020"} and {r["source"] for r in rows} == {"author2020.csv"}
    assert rows[0]["note"] == "latitude=46.5; longitude=7.25; x_depth_km=305; reference=Author 2020"
    assert xlabels.labels_for_images(xlabels.read_labels(labels), "XX.BBB", 2) == ["absent", "absent"]


def test_import_labels_option_before_subcommand(tmp_path):
    table, labels = tmp_path / "t.csv", tmp_path / "mine.csv"
    table.write_text("station,verdict\nXX.AAA,yes\n")
    args = parser().parse_args(["label", "--labels", str(labels), "import", str(table)])
    assert args.labels == labels and args.func(args) == 0
    assert xlabels.read_labels(labels) == {("XX.AAA", "*"): "present"}


def test_label_file_with_byte_order_mark(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("\ufeff" + ",".join(xlabels.COLUMNS) + "\r\nXX.AAA,3,absent,me,2025-01-01T00:00:00+00:00,,x\r\n")
    xlabels.append_labels(path, [row("XX.AAA", 4, "present")])
    assert xlabels.read_labels(path) == {("XX.AAA", 3): "absent", ("XX.AAA", 4): "present"}


def test_import_semicolon_table_with_label_column(tmp_path):
    table, labels = tmp_path / "t.csv", tmp_path / "labels.csv"
    table.write_text("Station;Label;bin\nXX.AAA;1;12\nXX.BBB;no;13\n")
    rows = xlabels.import_table(table, labels)
    assert [(r["station"], r["label"], r["labeller"], r["note"]) for r in rows] == [
        ("XX.AAA", "present", "t", "bin=12"), ("XX.BBB", "absent", "t", "bin=13")]


@pytest.mark.parametrize("content, line", [
    ("station,verdict\nXX.AAA,yes\nXX.BBB,maybe\n", "line 3"),
    ("station,verdict\nXX.AAA,yes\n\nXXAAA,no\n", "line 4"),
    ("# comment\nstation,verdict\nXX.AAA,yes\nXX.AAA,no\n", "line 4"),
])
def test_bad_table_appends_nothing(tmp_path, caplog, content, line):
    table, labels = tmp_path / "bad.csv", tmp_path / "labels.csv"
    table.write_text(content)
    xlabels.append_labels(labels, [row("XX.ZZZ", 0, "present")])
    before = labels.read_bytes()
    with pytest.raises(xlabels.LabelError, match=line):
        xlabels.import_table(table, labels)
    args = parser().parse_args(["label", "import", str(table), "--labels", str(labels)])
    with caplog.at_level(logging.ERROR):
        assert args.func(args) == 1
    assert line in caplog.text and "nothing imported" in caplog.text
    assert labels.read_bytes() == before


def test_table_without_verdict_column(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("station,x_depth_km\nXX.AAA,300\n")
    with pytest.raises(xlabels.LabelError, match="verdict"):
        xlabels.parse_table(table)


# ----------------------------------------------------------------------------- images and session

def test_corrupt_image_file_is_left_out(workspace, caplog):
    with caplog.at_level(logging.WARNING):
        session = label_app.LabelSession.open(workspace["images"], workspace["labels"], "me", workspace["stacks"])
    assert sorted(session.stations) == ["XX.AAA", "XX.BBB"]
    assert session.items == [("XX.AAA", 0), ("XX.AAA", 1), ("XX.BBB", 0), ("XX.BBB", 1)]
    assert "XX.BAD.nc left out" in caplog.text
    assert [p.name for p, _ in session.left_out] == ["XX.BAD.nc"]
    assert xlabels.read_labels(workspace["labels"]) == {}  # created with its folder, header only
    with serving(session) as url:
        status, body, _ = request(url + "done")
        assert status == 200 and b"XX.BAD.nc" in body
        status, body, _ = request(url + "png/XX.BBB/1.png")
        assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_images_is_an_error(tmp_path, caplog):
    (tmp_path / "images").mkdir()
    args = parser().parse_args(["label", "--images", str(tmp_path / "images"), "--labels",
                                str(tmp_path / "l.csv"), "--labeller", "me"])
    with caplog.at_level(logging.ERROR):
        assert args.func(args) == 1
    assert "no station images to label" in caplog.text
    (tmp_path / "images" / "XX.BAD.nc").write_text("garbage")
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert args.func(args) == 1
    assert "none usable" in caplog.text and "XX.BAD.nc" in caplog.text


def test_labeller_and_loopback_required(workspace, caplog):
    base = ["label", "--images", str(workspace["images"]), "--labels", str(workspace["labels"])]
    with caplog.at_level(logging.ERROR):
        args = parser().parse_args(base)
        assert args.func(args) == 1
        args = parser().parse_args([*base, "--labeller", "me", "--host", "0.0.0.0"])
        assert args.func(args) == 1
    assert "--labeller" in caplog.text and "not a loopback address" in caplog.text


def test_resume_order_and_counts(workspace):
    xlabels.append_labels(workspace["labels"], [row("XX.AAA", 0, "present"), row("XX.BBB", 0, "skip")])
    session = label_app.LabelSession.open(workspace["images"], workspace["labels"], "me", workspace["stacks"])
    assert session.first_unlabelled() == ("XX.AAA", 1)
    assert session.first_unlabelled(after=("XX.AAA", 1)) == ("XX.BBB", 1)
    counts = session.counts()
    assert (counts["labelled"], counts["total"], counts["present"], counts["skip"]) == (2, 4, 1, 1)
    session.save("XX.AAA", 1, "unsure")
    session.save("XX.BBB", 1, "absent", note="  multi\nline   note ")
    assert session.first_unlabelled() is None
    assert csv_rows(workspace["labels"])[-1]["note"] == "multi line note"


def test_a_station_label_labels_the_images_without_their_own(workspace):
    xlabels.append_labels(workspace["labels"], [row("XX.AAA", 0, "present"), row("XX.AAA", "*", "absent")])
    session = label_app.LabelSession.open(workspace["images"], workspace["labels"], "me", workspace["stacks"])
    assert session.first_unlabelled() == ("XX.BBB", 0)  # AAA 1 is labelled by its station
    assert session.label_row("XX.AAA", 0)["label"] == "present"  # its own label overrides the station's
    assert session.label_row("XX.AAA", 1)["label"] == "absent"
    counts = session.counts()
    assert (counts["labelled"], counts["present"], counts["absent"], counts["by_station"]) == (2, 1, 1, 1)
    session.save("XX.BBB", "*", "unsure")
    assert session.first_unlabelled() is None
    assert session.counts()["by_station"] == 3
    with pytest.raises(xlabels.LabelError, match=r"no station XX\.ZZZ"):
        session.save("XX.ZZZ", "*", "present")
    assert [(r["station"], r["image"], r["label"]) for r in csv_rows(workspace["labels"])][-1] == ("XX.BBB", "*",
                                                                                                   "unsure")


def test_amplitude_colour_limit_shows_weak_arrivals():
    amp = np.zeros((9, DEPTH.size))
    amp[:, DEPTH < 60] = 0.35  # Moho: saturates on purpose
    amp[:, (DEPTH > 295) & (DEPTH < 305)] = 0.03
    assert label_app.amplitude_limit(amp, DEPTH) == label_app.AMPLITUDE_LIMITS[0] == 0.05
    noisy = np.random.default_rng(0).normal(0, 0.2, amp.shape)
    assert label_app.amplitude_limit(noisy, DEPTH) == label_app.AMPLITUDE_LIMITS[1]


def test_verdict_text():
    assert label_app.verdict_text(None) == "no stacking result"
    ds = xr.Dataset(attrs={"verdict": "present", "x_depth_km": 302.4, "x_amp": 0.031, "reason": "", "n_rf": 80})
    assert label_app.verdict_text(ds) == ("stacking verdict: present — X at 302 km, amplitude 0.031 — "
                                          "80 receiver functions")


# ----------------------------------------------------------------------------- server (HTTP)

def test_server_pages_and_posts(workspace):
    session = label_app.LabelSession.open(workspace["images"], workspace["labels"], "me", workspace["stacks"])
    labels = workspace["labels"]
    with serving(session) as url:
        status, body, final = request(url)
        assert status == 200 and final.endswith("/item/XX.AAA/0")
        page = body.decode()
        assert "XX.AAA · image 0 of 2" in page and "0 of 4 labelled" in page and "stacking verdict: present" in page
        status, body, _ = request(url + "item/XX.BBB/0")
        assert status == 200 and "no stacking result" in body.decode()
        assert request(url + "item/XX.BBB/7")[0] == 404
        before = labels.read_bytes()
        for bad in ({"station": "XX.AAA", "image": 0, "label": "maybe"},
                    {"station": "XX.AAA", "image": 5, "label": "present"},
                    {"station": "XX.ZZZ", "image": 0, "label": "present"},
                    {"station": "XX.AAA", "image": "zero", "label": "present"}):
            status, body, _ = request(url + "label", bad)
            assert status == 400, bad
            assert json.loads(body)["error"]
        assert request(url + "label", b"{not json", {"Content-Type": "application/json"})[0] == 400
        assert request(url + "label", {"station": "XX.AAA", "image": 0, "label": "present"},
                       {"Origin": "http://evil.example"})[0] == 403
        assert request(url, headers={"Host": "evil.example"})[0] == 403
        assert labels.read_bytes() == before  # nothing written by a refused request
        status, body, _ = request(url + "label", {"station": "XX.AAA", "image": 0, "label": "present", "note": "clear"})
        assert status == 200 and json.loads(body)["next"] == "/item/XX.AAA/1"
        # the form fallback (no JavaScript): urlencoded POST, redirected to the next unlabelled image
        status, _, final = request(url + "label", b"station=XX.AAA&image=1&label=absent&note=")
        assert status == 200 and final.endswith("/item/XX.BBB/0")
    rows = csv_rows(labels)
    assert [(r["station"], r["image"], r["label"], r["note"], r["labeller"], r["source"]) for r in rows] == [
        ("XX.AAA", "0", "present", "clear", "me", "xdisc label"), ("XX.AAA", "1", "absent", "", "me", "xdisc label")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", rows[0]["time"])


def test_station_control_on_the_page(workspace):
    """The per-station buttons label a station once (image *): its images count as labelled and the page moves
    past them; a later label of one image overrides the station's; the form fallback posts * too."""
    session = label_app.LabelSession.open(workspace["images"], workspace["labels"], "me", workspace["stacks"])
    with serving(session) as url:
        page = request(url + "item/XX.AAA/0")[1].decode()
        assert "Whole station (2 images" in page and "id=btn-station-absent" in page
        assert "id=btn-station-absent" not in page.split("id=station-actions")[0]  # its own form, posting image *
        status, body, _ = request(url + "label", {"station": "XX.AAA", "image": "*", "label": "absent"})
        assert status == 200 and json.loads(body)["next"] == "/item/XX.BBB/0"  # past every image of XX.AAA
        page = request(url + "item/XX.AAA/1")[1].decode()
        assert "2 of 4 labelled (2 by station labels)" in page
        assert "This image has no label yet. · Station label: absent (by me" in page
        assert "(applies to this image)" in page
        assert "class='absent current' id=btn-station-absent" in page
        assert request(url + "label", {"station": "XX.ZZZ", "image": "*", "label": "absent"})[0] == 400
        status, body, _ = request(url + "label", {"station": "XX.AAA", "image": 1, "label": "present"})
        assert status == 200 and json.loads(body)["next"] == "/item/XX.BBB/0"
        page = request(url + "item/XX.AAA/1")[1].decode()
        assert "This image: present" in page and "(applies to this image)" not in page
        status, _, final = request(url + "label", b"station=XX.BBB&image=%2A&label=unsure&note=")  # no JavaScript
        assert status == 200 and final.endswith("/done")
        done = request(url + "done")[1].decode()
        assert "4 of 4 labelled (3 by station labels)" in done and "id=station-labels" in done
        counts = dict(re.findall(r"id=count-(\w+)>(\d+)<", done))
        assert counts == {"present": "1", "absent": "1", "unsure": "2", "skip": "0"}  # own label, else station's
    assert [(r["station"], r["image"], r["label"]) for r in csv_rows(workspace["labels"])] == [
        ("XX.AAA", "*", "absent"), ("XX.AAA", "1", "present"), ("XX.BBB", "*", "unsure")]
    labels = xlabels.read_labels(workspace["labels"])
    assert xlabels.labels_for_images(labels, "XX.AAA", 2) == ["absent", "present"]  # what fine-tuning reads


def test_formula_like_notes_are_stored_as_text(workspace):
    """A note typed on the page that starts like a spreadsheet formula is stored with a leading quote."""
    session = label_app.LabelSession.open(workspace["images"], workspace["labels"], "=me", workspace["stacks"])
    notes = ["=HYPERLINK(\"http://evil.example\")", "+1+1", "-2", "@SUM(A1)", "fine = clear"]
    with serving(session) as url:
        for image, note in zip((0, 1, 0, 1, 0), notes, strict=True):
            station = "XX.AAA" if note not in ("-2", "@SUM(A1)") else "XX.BBB"
            status, _, _ = request(url + "label", {"station": station, "image": image, "label": "present",
                                                   "note": note})
            assert status == 200, note
    rows = csv_rows(workspace["labels"])
    assert [r["note"] for r in rows] == ["'=HYPERLINK(\"http://evil.example\")", "'+1+1", "'-2", "'@SUM(A1)",
                                         "fine = clear"]
    assert {r["labeller"] for r in rows} == {"'=me"}
    assert xlabels.read_labels(workspace["labels"])  # the file stays a valid label file


# ----------------------------------------------------------------------------- real browser

SERVE = ("import sys; from xdisc.cli import build_parser; a = build_parser().parse_args(sys.argv[1:]); "
         "sys.exit(a.func(a))")


@contextlib.contextmanager
def server_process(workspace, log_name: str):
    """``xdisc label`` through its argparse parser in a child process; yields (process, URL)."""
    with open(workspace["root"] / log_name, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, "label", "--images", str(workspace["images"]), "--stacks",
             str(workspace["stacks"]), "--labels", str(workspace["labels"]), "--labeller", "tester", "--port", "0",
             "--no-browser"], stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            line = proc.stdout.readline() if ready else ""
            match = re.search(r"http://127\.0\.0\.1:\d+/", line)
            assert match, f"no URL printed: {line!r}; {(workspace['root'] / log_name).read_text()}"
            yield proc, match.group(0)
        finally:
            proc.kill()
            proc.wait(10)


def chromium():
    """A headless Chromium driven through Debian's chromedriver; skipped locally without it, failed in CI."""
    need("selenium", "pip install selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        if in_ci():
            pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} must be installed in CI (bash tests/INSTALL_browser.sh)")
        pytest.skip("Chromium not installed (bash tests/INSTALL_browser.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1100", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def test_label_page_in_browser(workspace):
    driver = chromium()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def at(path):
        WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith(path))
        WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")

    def image_loaded():
        return WebDriverWait(driver, 15).until(lambda d: d.execute_script(
            "const i = document.getElementById('rf'); return i.complete && i.naturalWidth"))

    def press(key):
        ActionChains(driver).send_keys(key).perform()

    labels = workspace["labels"]
    try:
        with server_process(workspace, "server1.log") as (_, url):
            driver.get(url)
            at("/item/XX.AAA/0")
            assert image_loaded() > 0
            assert driver.find_element(By.ID, "title").text == "XX.AAA · image 0 of 2"
            assert driver.find_element(By.ID, "progress").text == "0 of 4 labelled"
            assert "X at 300 km" in driver.find_element(By.ID, "verdict").text
            press("p")
            at("/item/XX.AAA/1")
            assert image_loaded() > 0
            assert [(r["station"], r["image"], r["label"]) for r in csv_rows(labels)] == [("XX.AAA", "0", "present")]
            note = driver.find_element(By.ID, "note")
            note.click()
            note.send_keys("weak arrival at 300 km, a spurious one?")  # p, a, u, s typed here are text, not keys
            note.send_keys(Keys.ENTER)  # leaves the note field
            press("a")
            at("/item/XX.BBB/0")
            assert csv_rows(labels)[-1]["label"] == "absent"
            assert csv_rows(labels)[-1]["note"] == "weak arrival at 300 km, a spurious one?"
            assert len(csv_rows(labels)) == 2
        # the first server was killed (SIGKILL, as a crash): a new one resumes at the first unlabelled image
        with server_process(workspace, "server2.log") as (_, url):
            driver.get(url)
            at("/item/XX.BBB/0")
            assert image_loaded() > 0
            assert "no stacking result" in driver.find_element(By.ID, "verdict").text
            assert driver.find_element(By.ID, "progress").text == "2 of 4 labelled"
            press(Keys.ARROW_LEFT)  # back to an already labelled image
            at("/item/XX.AAA/1")
            assert "This image: absent" in driver.find_element(By.ID, "current").text
            driver.get(url)
            at("/item/XX.BBB/0")
            press("u")
            at("/item/XX.BBB/1")
            driver.find_element(By.ID, "btn-skip").click()  # the buttons do what the keys do
            at("/done")
            assert driver.find_element(By.ID, "done").text == "Done: every image is labelled"
            assert driver.find_element(By.ID, "progress").text.startswith("4 of 4 labelled")
            counts = {k: driver.find_element(By.ID, f"count-{k}").text for k in xlabels.LABELS}
            assert counts == {"present": "1", "absent": "1", "unsure": "1", "skip": "1"}
            driver.find_element(By.ID, "review").click()  # relabel: a new row, the latest wins
            at("/item/XX.AAA/0")
            press("u")
            at("/done")
    finally:
        driver.quit()
    rows = csv_rows(labels)
    assert [(r["station"], r["image"], r["label"]) for r in rows] == [
        ("XX.AAA", "0", "present"), ("XX.AAA", "1", "absent"), ("XX.BBB", "0", "unsure"), ("XX.BBB", "1", "skip"),
        ("XX.AAA", "0", "unsure")]
    assert {r["labeller"] for r in rows} == {"tester"}
    assert xlabels.read_labels(labels)[("XX.AAA", 0)] == "unsure"


def test_station_keys_in_browser(workspace):
    """Shift with a label key labels the whole station and moves to the next station."""
    driver = chromium()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def at(path):
        WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith(path))
        WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")

    try:
        with server_process(workspace, "server.log") as (_, url):
            driver.get(url)
            at("/item/XX.AAA/0")
            ActionChains(driver).key_down(Keys.SHIFT).send_keys("a").key_up(Keys.SHIFT).perform()
            at("/item/XX.BBB/0")
            assert driver.find_element(By.ID, "progress").text == "2 of 4 labelled (2 by station labels)"
            driver.find_element(By.ID, "btn-station-present").click()  # the button does what Shift+P does
            at("/done")
            assert driver.find_element(By.ID, "progress").text.startswith("4 of 4 labelled (4 by station labels)")
    finally:
        driver.quit()
    assert [(r["station"], r["image"], r["label"]) for r in csv_rows(workspace["labels"])] == [
        ("XX.AAA", "*", "absent"), ("XX.BBB", "*", "present")]


def test_install_script_is_idempotent():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()) or shutil.which("bash") is None:
        pytest.skip("Chromium not installed")
    start = time.perf_counter()
    out = subprocess.run(["bash", str(Path(__file__).parent / "INSTALL_browser.sh")], check=False, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "already installed" in out.stdout
    assert time.perf_counter() - start < 10
