"""Batches of stations (xdisc.data.batches): what the download and injection-test jobs hold."""

import re

import pytest
from xdisc.data.batches import PATTERN, batch_name, batch_of, station_batches
from xdisc.detectability import station_files


def test_batches_keep_the_table_order_and_cover_every_station_once():
    codes = [f"XX.S{i:03d}" for i in range(23)]
    batches = station_batches(codes, 10)
    assert list(batches) == ["b0000", "b0001", "b0002"]
    assert [len(v) for v in batches.values()] == [10, 10, 3]
    assert [c for v in batches.values() for c in v] == codes
    where = batch_of(batches)
    assert where["XX.S000"] == "b0000" and where["XX.S019"] == "b0001" and where["XX.S022"] == "b0002"
    assert station_batches([], 5) == {}
    with pytest.raises(ValueError, match="batch size"):
        station_batches(codes, 0)


def test_batch_names_match_the_wildcard_constraint():
    for k in (0, 7, 9999, 10000, 123456):
        assert re.fullmatch(PATTERN, batch_name(k)), batch_name(k)
    assert batch_name(10000) == "b10000" and not re.fullmatch(PATTERN, "b12")
    assert "{" not in PATTERN  # Snakemake would read braces as a wildcard


def test_detectability_table_reads_batch_folders_and_files(tmp_path):
    (tmp_path / "b0001").mkdir()
    (tmp_path / "b0000").mkdir()
    for name in ("b0001/XX.B.nc", "b0000/XX.C.nc", "b0000/XX.A.nc", "XX.D.nc"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "b0000" / "notes.txt").write_text("not a station file")
    files = station_files([tmp_path / "b0000", tmp_path / "b0001", tmp_path / "XX.D.nc"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["b0000/XX.A.nc", "b0000/XX.C.nc",
                                                                   "b0001/XX.B.nc", "XX.D.nc"]
