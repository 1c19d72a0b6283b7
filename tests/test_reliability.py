"""Nothing lost, nothing crashes: faults fed to the real workflow (``snakemake`` in a temporary folder), as a
user meets them: Ctrl-C during downloads, hostile station codes. Faults of single pieces (bad files, bad
answers, contradictory configuration) are tested beside those pieces (test_download, test_config)."""

import csv
import json
import os
import signal
import subprocess
import time

import pytest
import xarray as xr
from fdsn_servers import asked_windows, rf_example_paths, rf_example_stack
from obspy import read_inventory
from pipeline_runs import SNAKEMAKE, default_sigint, run_snakemake, workdir
from xdisc.data.download import journal_path, read_manifest

pytestmark = pytest.mark.slow

RF_FILE = "results/rf/CX.PB01.nc"
MANIFEST = "data/raw/waveforms/CX.PB01.csv"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = rf_example_stack(tmp_path_factory.mktemp("fdsn"))
    yield s
    s.stop()


# the embedded example data are of 2011; FDSN requests need the period
PERIOD = {"starttime": "2011-01-01", "endtime": "2011-12-31"}


def _fdsn_config(stack) -> dict:
    return {"data": {"source": "fdsn", "stations": dict(PERIOD),
                     "fdsn": {"providers": [stack.base_url], "event_provider": stack.base_url,
                              "timeout_s": 10, "retries": 1, "backoff_s": 0.01, "max_parallel": 1,
                              "bulk_windows": 2}}}  # bulk requests of 2 windows: Ctrl-C can land between them


@pytest.mark.parametrize("rerun", [(), ("--rerun-incomplete",)], ids=["plain-rerun", "rerun-incomplete"])
def test_ctrl_c_during_downloads_is_never_taken_as_complete(stack, tmp_path, rerun):
    """Ctrl-C in the terminal (SIGINT to Snakemake's whole process group) while a station's windows are being
    downloaded from a slow server: no manifest is left that looks finished; the plain rerun fetches only the
    missing windows, and the receiver functions are made from every window."""
    stack.proxy.reset()
    wd = workdir(tmp_path, _fdsn_config(stack))
    for delay_s in (0.5, 0.5, 4, 4, 4, 4, 4):  # two windows soon, then slow ones: Ctrl-C lands mid-download
        stack.proxy.inject("slow", path_contains="dataselect", delay_s=delay_s)
    with open(tmp_path / "first.log", "w") as out:
        proc = subprocess.Popen([*SNAKEMAKE, "--directory", str(wd), "--cores", "2", RF_FILE], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=default_sigint)
    journal = journal_path(wd / "data" / "raw" / "waveforms" / "CX.PB01")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(r["status"] == "ok" for r in read_manifest(journal).values()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    proc.wait(timeout=120)
    assert proc.returncode != 0
    _wait_for_group_to_end(proc.pid)  # the job may finish its in-flight request after Snakemake has gone
    assert not (wd / MANIFEST).exists(), "an interrupted download left a manifest"
    assert not (wd / RF_FILE).exists()
    finished = {eid for eid, r in read_manifest(journal).items() if r["status"] == "ok"}
    assert 2 <= len(finished) < 7

    stack.proxy.reset()
    again = run_snakemake(wd, "--cores", "2", *rerun, RF_FILE, timeout=600)
    assert again.returncode == 0, again.stderr[-5000:]
    manifest = read_manifest(wd / MANIFEST)
    assert len(manifest) == 7 and {r["status"] for r in manifest.values()} == {"ok"}
    asked = asked_windows(stack.proxy)
    for eid in finished:
        assert manifest[eid]["starttime"][:19] not in asked, f"{eid} fetched again"
    assert len(asked) == 7 - len(finished)
    with xr.open_dataset(wd / RF_FILE) as ds:
        assert ds.sizes["event"] == 7  # every window made it into the receiver functions


def _wait_for_group_to_end(pgid: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)
    raise AssertionError(f"processes of group {pgid} still running {timeout_s} s after Ctrl-C")


def _hostile_inventory(path) -> list[str]:
    """The example StationXML plus stations with codes that must never reach a shell or a path, and one whose
    only channels have invalid codes; returns the hostile codes."""
    _, inventory_path, _ = rf_example_paths()
    inv = read_inventory(str(inventory_path))
    net = inv[0]
    template = net[0]
    codes = ["../../x", "A;touch PWNED", "$(touch PWNED2)", "pb02"]
    for code in codes:
        sta = template.copy()
        sta.code = code
        net.stations.append(sta)
    bad_channels = template.copy()
    bad_channels.code = "PB09"
    for cha in bad_channels.channels:
        cha.location_code = "$(id)"
    net.stations.append(bad_channels)
    inv.write(str(path), format="STATIONXML")
    return codes


def test_hostile_station_codes_are_skipped_and_valid_stations_processed(tmp_path):
    mseed, _, events = rf_example_paths()
    codes = _hostile_inventory(tmp_path / "inventory.xml")
    (tmp_path / "run").mkdir()
    wd = workdir(tmp_path / "run", {"data": {"source": "local", "local": {
        "format": "files", "waveforms": str(mseed), "inventory": str(tmp_path / "inventory.xml"),
        "events": str(events)}}})
    run = run_snakemake(wd, "--cores", "2", "results/verdicts/stacking.csv", timeout=600)
    assert run.returncode == 0, run.stderr[-5000:]
    with open(wd / "data" / "raw" / "stations.csv", newline="") as f:
        rows = {r["station"]: r for r in csv.DictReader(f)}
    assert rows["PB01"]["status"] == "selected" and rows["PB01"]["reason"] == ""
    for code in codes:
        assert rows[code]["status"] == "skipped" and "invalid station code" in rows[code]["reason"], rows[code]
    assert rows["PB09"]["status"] == "skipped" and "no valid channel" in rows["PB09"]["reason"]
    with open(wd / "results" / "verdicts" / "stacking.csv", newline="") as f:
        assert [r["station"] for r in csv.DictReader(f)] == ["CX.PB01"]
    made = sorted(p.name for p in (wd / "results" / "stack").glob("*.nc"))
    assert made == ["CX.PB01.nc"]
    for root in (tmp_path, wd.parent):  # nothing executed, nothing written outside results/ and data/
        assert not list(root.rglob("PWNED*"))
    assert not (tmp_path / "x").exists()
    with open(wd / "data" / "raw" / "providers.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok"]
    log = (wd / "results" / "logs" / "select_stations.log").read_text()
    assert "skipping '../../x'" in log or "skipping 'CX.../../x'" in log or "invalid station code" in log
    json.dumps(rows)  # the table is plain text, nothing else
