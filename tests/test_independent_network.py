"""The independent test network (tests/benchmarks/independent_network.py), checked at toy size with xdisc.

A 3-station network with a handful of events is generated with telewavesim and read back as a user
would (``xdisc download events/stations/waveforms`` from the SDS archive, then ``xdisc rf``). An oracle
check: at a station with a strong, sharp X and almost no noise, the stacked radial RF has the X
conversion at the Ps delay that ray theory (tests/raytheory.py, TauP's iasp91) predicts.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import benchmark_scripts
import numpy as np
import pytest
import yaml
from conftest import need
from raytheory import delay

pytestmark = pytest.mark.oracle

ROOT = Path(__file__).parents[1]
X_DEPTH_KM = 300.0
# iasp91's own crust and mantle under the oracle stations, so that ray theory through iasp91 applies
IASP91_LIKE = {"moho_km": 35.0, "conrad_fraction": 20.0 / 35.0, "vp_upper": 5.8, "vp_lower": 6.5, "vpvs": 1.73,
               "sediment_km": 0.0, "mantle_scale": 0.0, "d410_km": 410.0, "d660_km": 660.0, "decoy": "none",
               "base_snr": 1000.0, "noise_level": 0.3}
X_STATION = {**IASP91_LIKE, "x_present": True, "x_depth_km": X_DEPTH_KM, "x_dvs": 0.06, "x_dvp": 0.03,
             "x_drho": 0.015, "x_gradient_km": 0.0, "x_style": "taper"}
NO_X_STATION = {**IASP91_LIKE, "x_present": False, "x_depth_km": float("nan"), "x_dvs": 0.0, "x_dvp": 0.0,
                "x_drho": 0.0}


def _benchmark():
    return benchmark_scripts.load("independent_network")


def _xdisc(*args, cwd):
    run = subprocess.run([sys.executable, "-m", "xdisc", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    need("telewavesim")
    bench = _benchmark()
    out = tmp_path_factory.mktemp("xs")
    info = bench.make(out / "network", n_stations=3, seed=5, workers=1, n_catalog=12, npts=2048,
                      events_range=(4, 4), few_events=(4, 4), outside_fraction=0.4,
                      overrides={0: X_STATION, 1: NO_X_STATION}, log=lambda *a, **k: None)
    work = out / "work"
    work.mkdir()
    (work / "cfg.yaml").write_text(yaml.safe_dump(bench.network_config(info)))
    _xdisc("download", "events", "--config", "cfg.yaml", "--out", "events.xml", cwd=work)
    _xdisc("download", "stations", "--config", "cfg.yaml", "--out", "stations.xml", "--out-csv", "stations.csv",
           "--out-providers", "providers.csv", cwd=work)
    for sta in ("S001", "S002"):
        _xdisc("download", "waveforms", "--config", "cfg.yaml", "--station", f"XS.{sta}", "--events", "events.xml",
               "--stations", "stations.csv", "--manifest", f"wf/XS.{sta}.csv", cwd=work)
        _xdisc("rf", "--config", "cfg.yaml", "--station", f"XS.{sta}", "--events", "events.xml", "--stations",
               "stations.csv", "--inventory", "stations.xml", "--manifest", f"wf/XS.{sta}.csv", "--out",
               f"XS.{sta}.nc", cwd=work)
    return {"root": out / "network", "work": work, "info": info}


def test_archive_reads_through_xdisc_local_path(network):
    info, work = network["info"], network["work"]
    assert Path(info["sds"]).is_relative_to(network["root"] / "archive")
    assert "SYNTHETIC" in (network["root"] / "archive" / "README.txt").read_text()
    stations = _rows(work / "stations.csv")
    assert [(r["network"], r["station"], r["status"]) for r in stations] == \
        [("XS", f"S00{i}", "selected") for i in (1, 2, 3)]
    truth = {r["station"]: r for r in _rows(network["root"] / "truth" / "truth.csv")}
    traces = _rows(network["root"] / "truth" / "traces.csv")
    for sta in ("S001", "S002"):
        manifest = _rows(work / "wf" / f"XS.{sta}.csv")
        ok = {r["event_id"] for r in manifest if r["status"] == "ok"}
        recorded_in = {r["event"] for r in traces if r["station"] == sta and r["in_range"] == "True"}
        recorded_out = {r["event"] for r in traces if r["station"] == sta and r["in_range"] == "False"}
        # every recorded event in 30-90 deg is delivered; the recorded ones outside are never requested
        assert ok == recorded_in and len(ok) == int(truth[f"XS.{sta}"]["n_events"]) == 4
        assert not recorded_out & {r["event_id"] for r in manifest}
        assert all(30 <= float(r["distance_deg"]) <= 90 for r in manifest)
    assert sum(int(r["n_events_outside"]) for r in truth.values()) >= 1  # the archive does hold such events


def test_truth_is_outside_the_archive(network):
    archive = network["root"] / "archive"
    names = {p.name for p in archive.rglob("*")}
    assert not names & {"truth.csv", "traces.csv", "network.json"}
    assert not (network["root"] / "truth" / "truth.csv").is_relative_to(archive)
    cfg = yaml.safe_load((network["work"] / "cfg.yaml").read_text())
    assert "truth" not in json.dumps(cfg)


def test_x_conversion_at_the_ray_theory_delay(network):
    import xarray as xr

    stacks, slowness = {}, None
    for sta in ("S001", "S002"):
        with xr.open_dataset(network["work"] / f"XS.{sta}.nc") as ds:
            ok = ds["qc_pass"].values == 1
            assert ok.sum() >= 3
            stacks[sta] = ds["rf"].values[ok].mean(axis=0)
            t = ds["time"].values
            if sta == "S001":
                slowness = ds["slowness_s_per_km"].values[ok]
    predicted = float(np.mean([delay("iasp91", X_DEPTH_KM, p) for p in slowness]))
    assert 30.0 < predicted < 35.0
    win = (t > predicted - 4) & (t < predicted + 4)
    k = np.flatnonzero(win)[np.argmax(stacks["S001"][win])]
    assert abs(t[k] - predicted) < 1.0, (t[k], predicted)
    p_amp = stacks["S001"][np.argmin(np.abs(t))]
    # the same model without X has no such arrival: the difference is the X conversion (~8 % of P for +6 % Vs)
    diff = stacks["S001"][k] - stacks["S002"][k]
    assert diff > 0.04 * p_amp, (diff, p_amp)


def test_receiver_functions_have_the_conversions_of_their_layers(network):
    """The archive's noise-poor receiver functions against xdisc's propagator (checked against a third code,
    tests/oracles/psv_ode.py) on the same flat layers, each event with its own trapezoid and pP/sP, deconvolved
    alike. Until 2026-12-05 the generator cut off the part of telewavesim's P pulse that lies before P, and the
    conversions of every receiver function came out about 1.3 times too large against P."""
    import xarray as xr
    from xdisc.core.deconvolution import RFSettings, deconvolve
    from xdisc.core.earthmodel import LayerStack
    from xdisc.synth.synthetics import response_spectra

    bench = _benchmark()
    stations, events = bench.draw_network(3, 5, 12, 2048, (4, 4), (4, 4), overrides={0: X_STATION, 1: NO_X_STATION},
                                          outside_fraction=0.4)
    by_id = {e["time"].strftime("%Y%m%dT%H%M%S"): e for e in events}
    rf = RFSettings()
    for sta, params in (("S001", stations[0]), ("S002", stations[1])):
        layers = bench.flat_layers(params)
        stack = LayerStack(*(layers[:, i] for i in range(4)))
        with xr.open_dataset(network["work"] / f"XS.{sta}.nc") as ds:
            ok = ds["qc_pass"].values == 1
            observed = ds["rf"].values[ok]
            t = ds["time"].values
            slowness, distance = ds["slowness_s_per_km"].values[ok], ds["distance_deg"].values[ok]
            ids = [str(v)[:19].replace("-", "").replace(":", "") for v in ds["origin_time"].values[ok]]
        binned = np.round(slowness / bench.SLOWNESS_BIN_S_PER_KM) * bench.SLOWNESS_BIN_S_PER_KM
        r_spec, z_spec, nfft = response_spectra([stack], binned, rf, 409.6)
        f = np.fft.rfftfreq(nfft, rf.dt)
        sources = []
        for event_id, dist in zip(ids, distance, strict=True):
            ev = by_id[event_id]
            *_, pp_delay, sp_delay = bench._event_table(ev, np.array([dist]))["table"][0]  # TauP, as make does
            w = bench._wavelet_spectrum(f, {**ev, "pp_delay": pp_delay, "sp_delay": sp_delay})
            sources.append(w / w[0])
        shift = np.exp(-2j * np.pi * f * rf.time_before_p_s)
        z = np.fft.irfft(z_spec[0] * sources * shift, nfft)[:, :t.size]
        r = np.fft.irfft(r_spec[0] * sources * shift, nfft)[:, :t.size]
        predicted = deconvolve(z, r, rf.dt, rf.deconvolution, rf.gaussian_width_hz, time_before_p_s=rf.time_before_p_s,
                               n_out=t.size, max_iterations=rf.max_iterations,
                               min_fit_change_percent=rf.min_fit_change_percent).rf
        obs, pred = observed.mean(axis=0), predicted.mean(axis=0)
        near_p, later = np.abs(t) < 1.0, (t > 3.0) & (t < 45.0)
        assert obs[near_p].max() == pytest.approx(pred[near_p].max(), rel=0.1)
        ratio = float(np.dot(obs[later], pred[later]) / np.dot(pred[later], pred[later]))
        assert 0.85 < ratio < 1.15, (sta, ratio)
        assert np.corrcoef(obs[later], pred[later])[0, 1] > 0.9


def _readme_local_example() -> dict:
    """The README's local-archive YAML block, as written."""
    import re

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    local = [yaml.safe_load(b) for b in blocks if "source: local" in b]
    assert len(local) == 1, "README.md should have one local-archive example"
    return local[0]


@pytest.mark.slow
def test_readme_local_archive_example_runs_as_written(network, tmp_path):
    """The README's example on an archive of 2021 (not the embedded data's 2011): only the three paths are
    the user's; the run finds every station and event and stacks each station (the default configuration
    once filtered events by the embedded data's year and found none)."""
    cfg = _readme_local_example()
    info = network["info"]
    local = cfg["data"]["local"]
    assert set(local) == {"waveforms", "format", "inventory", "events"}, local
    local.update(waveforms=info["sds"], inventory=info["inventory"], events=info["events"])
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(cfg))
    # the README's command, with a target short of the CNN (targets before --configfile, as it says)
    run = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2",
                          "results/verdicts/stacking.csv", "--configfile", "config/config.yaml", "my.yaml"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    stations = _rows(tmp_path / "data" / "raw" / "stations.csv")
    assert sorted(r["station"] for r in stations if r["status"] == "selected") == ["S001", "S002", "S003"]
    stacking = _rows(tmp_path / "results" / "verdicts" / "stacking.csv")
    assert len(stacking) == 3
    # four events per station: too few to decide, and the table says why
    assert all(r["verdict"] == "undetermined" and "receiver functions <" in r["reason"] for r in stacking), stacking
    # the benchmark scores such a run (its `score --stacking-only`) without a cnn.csv: the stacking alone
    bench = _benchmark()
    s = bench.score(network["root"], tmp_path)
    assert list(s["methods"]) == ["stacking"] and s["n_missing"] == {"stacking": 0}
    assert s["methods"]["stacking"]["undetermined"] == 1.0 and s["methods"]["stacking"]["accuracy"] == 0.0
    printed = []
    bench.print_score(s, out=printed.append)
    assert printed[1].split() == ["stacking"] and not any("cnn" in line for line in printed), printed[:3]
    # `tally` pools draws: the same draw twice counts every station twice
    (tmp_path / "score.json").write_text(json.dumps(s))
    pooled = bench.tally([tmp_path / "score.json"] * 2, out=lambda *a: None)
    n_x = sum(r["x_present"] == 1 for r in s["per_station"])
    assert pooled["n_stations"] == 6 and pooled["n_x"] == 2 * n_x
    st = pooled["methods"]["stacking"]
    assert st["undetermined"] == 6 and st["right"] == st["x_found"] == st["false_alarms"] == 0
    assert st["false_alarm_interval"][0] == 0.0 and 0 < st["false_alarm_interval"][1] < 1
    assert sum(v["n_x"] + v["n_no_x"] for v in st["by"]["moho_class"].values()) == 6
    from obspy import read_events

    assert len(read_events(str(tmp_path / "data" / "raw" / "events.xml"))) == info["catalogue_events"]
