"""The label and scoring helpers of tests/benchmarks/cnn_run_checks.py, on a hand-made draw.

The benchmark is not part of CI (it needs finished runs of independent test networks), but what it
writes for the pipeline is: the label file of ``labels`` must be read by xdisc's own label reader with
every second station labelled from the truth, ``half`` must score only the stations it left unlabelled,
and the oracle threshold of ``in-domain`` must let exactly 5 % of the no-X stations through.
"""

import json
from pathlib import Path

import benchmark_scripts
import numpy as np
import pandas as pd
from xdisc import config as cfgmod
from xdisc.labels import read_label_rows


def _checks():
    return benchmark_scripts.load("cnn_run_checks")


def _draw(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A draw of six stations (listed out of order) with its truth, and a run with both methods' verdicts."""
    truth = {"XS.S004": 0, "XS.S001": 1, "XS.S006": 1, "XS.S002": 0, "XS.S005": 0, "XS.S003": 1}
    network, run = tmp_path / "xs", tmp_path / "xs-run"
    (network / "truth").mkdir(parents=True)
    (run / "results" / "verdicts").mkdir(parents=True)
    pd.DataFrame({"station": list(truth), "x_present": list(truth.values())}).to_csv(
        network / "truth" / "truth.csv", index=False)
    # unlabelled stations S002 (no X), S004 (no X), S006 (X): CNN absent, present (false alarm), undetermined
    cnn = {"XS.S001": "present", "XS.S002": "absent", "XS.S003": "absent", "XS.S004": "present",
           "XS.S005": "absent", "XS.S006": "undetermined"}
    pd.DataFrame({"station": list(cnn), "verdict": list(cnn.values()),
                  "probability_all": [0.9, 0.1, 0.2, 0.95, 0.3, 0.6]}).to_csv(run / "results/verdicts/cnn.csv",
                                                                         index=False)
    pd.DataFrame({"station": list(cnn), "verdict": ["absent"] * 6}).to_csv(run / "results/verdicts/stacking.csv",
                                                                          index=False)
    return network, run, truth


def test_labels_cover_every_second_station_and_the_pipeline_reads_them(tmp_path):
    checks = _checks()
    network, _, truth = _draw(tmp_path)
    out = tmp_path / "lab" / "labels.csv"
    checks.main(["labels", "--network", str(network), "--out", str(out)])
    rows = read_label_rows(out)
    assert sorted(station for station, _ in rows) == ["XS.S001", "XS.S003", "XS.S005"]
    for (station, image), row in rows.items():
        assert image == "*"
        assert row["label"] == ("present" if truth[station] else "absent")


def test_half_scores_only_the_unlabelled_stations(tmp_path, capsys):
    checks = _checks()
    network, run, _ = _draw(tmp_path)
    checks.main(["half", "--network", str(network), "--run", str(run)])
    out = capsys.readouterr().out
    assert "3 unlabelled stations (1 with X)" in out
    # S002 absent without X: right; S004 present without X: a false alarm; S006 undetermined with X
    assert "| xs-run | cnn | 1 | 0 | 1 | 1 | 0.500 |" in out
    # the stacking says absent everywhere: right at the two stations without X
    assert "| xs-run | stacking | 2 | 0 | 0 | 0 |  |" in out


def test_the_oracle_threshold_lets_five_percent_of_the_stations_without_x_through():
    checks = _checks()
    p_null = np.arange(40) / 40.0             # 40 stations without X: 0.000 ... 0.975
    p_x = np.array([0.99] * 30 + [0.5] * 10)  # 30 X stations above every null score, 10 among them
    p = np.concatenate([p_null, p_x])
    y = np.concatenate([np.zeros(40), np.ones(40)])
    # the threshold is the 38th null score (0.925): 2 of 40 above it, and the 30 strong X
    assert checks._at_five_percent(p, y) == (38 + 30) / 80


def test_run_settings_merge_the_run_s_config_files_in_order(tmp_path):
    checks = _checks()
    assert checks._run_settings(tmp_path) == {}
    (tmp_path / "a.yaml").write_text("images: {max_noise: 0.4, min_rf: 5}\n")
    (tmp_path / "b.yaml").write_text("images: {max_noise: 0.3}\n")
    (tmp_path / "run.json").write_text(json.dumps(
        {"command": ["snakemake", "x.csv", "--configfile", "a.yaml", "b.yaml", "--cores", "2"]}))
    assert checks._run_settings(tmp_path) == {"images": {"max_noise": 0.3, "min_rf": 5}}


def test_rebuilt_scores_image_0_made_again_with_the_options_given(tmp_path, capsys, rf_example_station):
    """Four stations with CX.PB01's real receiver functions: image 0 made again as the run made it (noise measured
    before P and 85-120 s after it, the default), and with the noise measured before P only (the noise channel
    changes, the bins filled do not); the table pools the draw."""
    from xdisc.core.artifacts import write_netcdf

    checks = _checks()
    network, run, truth = tmp_path / "xs", tmp_path / "xs-run", {"XS.S001": 1, "XS.S002": 0, "XS.S003": 1, "XS.S004": 0}
    (network / "truth").mkdir(parents=True)
    (run / "results" / "rf").mkdir(parents=True)
    pd.DataFrame({"station": list(truth), "x_present": list(truth.values())}).to_csv(
        network / "truth" / "truth.csv", index=False)
    for code in truth:
        write_netcdf(rf_example_station["dataset"], run / "results" / "rf" / f"{code}.nc")
    cfg = cfgmod.load(None)
    assert cfg["images"]["noise_coda_s"] == [85, 120]
    coda = checks._rebuilt_images(run / "results/rf/XS.S001.nc", cfg)
    default = checks._rebuilt_images(run / "results/rf/XS.S001.nc",
                                     cfgmod.deep_merge(cfg, {"images": {"noise_coda_s": None}}))
    filled = default[1] < cfg["images"]["max_noise"]
    assert np.array_equal(coda[1] < cfg["images"]["max_noise"], filled)  # the same bins filled, other noise
    assert np.all(np.isfinite(coda)) and not np.allclose(coda[1][filled], default[1][filled], rtol=0.05)
    checks.main(["rebuilt", "--network", str(network), "--run", str(run), "--images", "noise_coda_s=null"])
    out = capsys.readouterr().out
    assert "image 0 rebuilt with images {'noise_coda_s': None}" in out
    assert "| xs | 4 | " in out and "| all | 4 | " in out
