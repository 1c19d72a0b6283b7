"""cnn.refine: X and training draws deconvolved as each station's data (`xdisc refine-draws`), one network per
fold of stations fine-tuned on the other folds' draws only (`xdisc refine`), and calibrate / predict scoring
each station with its fold's network (`--refined`)."""

import csv
import json

import numpy as np
import pytest
import torch
import xarray as xr
from xdisc import config as cfgmod
from xdisc.cli import main
from xdisc.cnn import calibration, folds, predict, redecon, refine
from xdisc.cnn.module import load_classifier
from xdisc.cnn.shipped import CHECKPOINT as SHIPPED_CHECKPOINT
from xdisc.cnn.synthetic_set import SyntheticSource
from xdisc.core.artifacts import write_netcdf
from xdisc.synth.noise_pool import noise_pool
from xdisc.synth.synthetics import make_dataset

CODES = ("CX.PB01", "CX.PB02")
ADAPT = {"calibration_draws": 6}
REFINE = {"enabled": True, "training_stations": 6, "epochs": 1, "batch_size": 16, "balance_look_alikes": True}


def _settings(cfg: dict, **refine_keys) -> str:
    return json.dumps({"cnn": {"adapt": ADAPT, "refine": {**REFINE, **refine_keys}, "verdict": {"min_rf": 3}},
                       "synthetics": cfg["synthetics"]})


@pytest.fixture(scope="module")
def two_stations(rf_example_station, tmp_path_factory):
    """Noise pools and image files of two stations (CX.PB01's data under two codes), a small synthetic test set
    and a small pretraining set."""
    tmp = tmp_path_factory.mktemp("refine")
    cfg = cfgmod.load(None, {"synthetics": {"n_samples": 16, "noise": {"snr": [20, 30]}}})
    write_netcdf(make_dataset(cfg), tmp / "train.nc")
    test_cfg = cfgmod.load(None, {"synthetics": {"n_samples": 16, "seed": cfg["synthetics"]["seed"] + 1}})
    write_netcdf(make_dataset(test_cfg), tmp / "test.nc")
    for code in CODES:
        ds = rf_example_station["dataset"].assign_coords(station=code.split(".")[1])
        write_netcdf(ds, tmp / f"rf_{code}.nc")
        write_netcdf(noise_pool(tmp / f"rf_{code}.nc"), tmp / f"{code}.nc")
        assert main(["images", "--rf", str(tmp / f"rf_{code}.nc"), "--out", str(tmp / "images" / f"{code}.nc")]) == 0
    return {"cfg": cfg, "dir": tmp, "pools": [tmp / f"{c}.nc" for c in CODES], "test": tmp / "test.nc",
            "train": tmp / "train.nc", "images": [tmp / "images" / f"{c}.nc" for c in CODES]}


@pytest.fixture(scope="module")
def drawn(two_stations):
    s, tmp = two_stations, two_stations["dir"]
    settings = _settings(s["cfg"])
    assert main(["calibration-draws", *map(str, s["pools"]), "--test", str(s["test"]), "--out",
                 str(tmp / "no_x"), "--settings", settings]) == 0
    assert main(["refine-draws", *map(str, s["pools"]), "--test", str(s["test"]), "--synthetics",
                 str(s["train"]), "--out", str(tmp / "draws"), "--settings", settings]) == 0
    return tmp / "no_x", tmp / "draws"


def _probabilities(module, images: np.ndarray) -> np.ndarray:
    """sigmoid(logit / temperature), computed here from the network's layers."""
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(images, np.float32))
        return torch.sigmoid(module.net(x) / module.temperature).numpy().astype(float)


def test_refine_draws_are_the_calibration_x_samples_and_balanced_training_stations(two_stations, drawn):
    s = two_stations
    cfg = cfgmod.validate({"cnn": {"adapt": ADAPT, "refine": REFINE}})
    a = calibration.AdaptSettings.from_config(cfg["cnn"]["adapt"])
    test, train = SyntheticSource.read(s["test"]), SyntheticSource.read(s["train"])
    pools = calibration.read_pools(s["pools"], test.grid_slowness, test.time_s, 3, a.noise, True, pre_p=True)
    with xr.open_dataset(drawn[0] / "CX.PB01.nc") as ds:
        no_x_shape = ds["image"].shape[1:]
    for pool in pools:
        with xr.open_dataset(drawn[1] / f"{pool.station}.nc") as ds:
            x = ds["x_sample"].values
            # the X draws of the absent threshold: the samples calibrate picks for this station, X of dVs >= 0.03
            seed = redecon.station_seed(cfg["cnn"]["seed"], pool.station)
            np.testing.assert_array_equal(x, redecon.station_samples(pool, test, a, seed)[1])
            assert np.all(test.label[x] == 1) and np.all(test.x_dvs[x] >= a.absent_dvs)
            np.testing.assert_allclose(ds["x_depth_km"].values, [test.depth_target(int(i)) for i in x], rtol=1e-6)
            # training stations: half without X, half with; depths only with X
            t, lab = ds["train_sample"].values, ds["train_label"].values
            assert t.size == 6 and lab.sum() == 3
            np.testing.assert_array_equal(lab, train.label[t])
            assert np.all(np.isnan(ds["train_depth_km"].values[lab == 0]))
            assert np.all(np.isfinite(ds["train_depth_km"].values[lab == 1]))
            for name in ("x_image", "train_image"):
                assert ds[name].shape[1:] == no_x_shape and np.all(np.isfinite(ds[name].values))
            assert np.std(ds["x_image"].values) > 0
            # which draws are look-alikes of X (the balance of cnn.refine.balance_look_alikes)
            np.testing.assert_array_equal(ds["x_look_alike"].values, test.hard[x])
            np.testing.assert_array_equal(ds["train_look_alike"].values, train.hard[t])
        with xr.open_dataset(drawn[0] / f"{pool.station}.nc") as ds:
            np.testing.assert_array_equal(ds["look_alike"].values, test.hard[ds["sample"].values])
    # the same stations and settings make the same draws
    assert main(["refine-draws", str(s["pools"][0]), "--test", str(s["test"]), "--synthetics", str(s["train"]),
                 "--out", str(s["dir"] / "again"), "--settings", _settings(s["cfg"])]) == 0
    with xr.open_dataset(drawn[1] / "CX.PB01.nc") as one, xr.open_dataset(s["dir"] / "again" / "CX.PB01.nc") as two:
        for name in ("x_image", "train_image"):
            np.testing.assert_array_equal(one[name].values, two[name].values)


def test_each_station_is_calibrated_and_scored_by_the_network_of_the_other_fold(two_stations, drawn, tmp_path,
                                                                               caplog):
    s = two_stations
    settings = _settings(s["cfg"])
    out = tmp_path / "refined"
    assert main(["refine", "--model", str(SHIPPED_CHECKPOINT), "--draws", str(drawn[0]), "--refine-draws",
                 str(drawn[1]), "--out", str(out), "--metrics", str(tmp_path / "refine.json"),
                 "--settings", settings]) == 0
    assert folds.read_folds(out) == {"CX.PB01": 0, "CX.PB02": 1}
    # each fold's network learnt from the other station's draws only: its training, no-X and X draws
    sizes = {}
    for code in CODES:
        with xr.open_dataset(drawn[0] / f"{code}.nc") as nx, xr.open_dataset(drawn[1] / f"{code}.nc") as d:
            sizes[code] = nx.sizes["draw"] + d.sizes["x_draw"] + d.sizes["train_draw"]
    result = json.loads((tmp_path / "refine.json").read_text())
    assert [f["images"] for f in result["per_fold"]] == [sizes["CX.PB02"], sizes["CX.PB01"]]
    assert [f["training_stations"] for f in result["per_fold"]] == [1, 1]
    for f in result["per_fold"]:  # look-alikes of X as frequent with X as without (cnn.refine.balance_look_alikes)
        n = {"without_x": f["images"] - f["images_with_x"], "with_x": f["images_with_x"]}
        assert abs(f["look_alikes"]["without_x"] - f["look_alikes"]["with_x"]) <= max(1 / n[k] for k in n) + 1e-9
    base = load_classifier(SHIPPED_CHECKPOINT)
    nets = [load_classifier(folds.fold_checkpoint(out, k)) for k in (0, 1)]
    changed = [any(not torch.equal(base.state_dict()[k], n.state_dict()[k]) for k in base.state_dict()) for n in nets]
    assert all(changed)
    assert not all(torch.equal(nets[0].state_dict()[k], nets[1].state_dict()[k]) for k in base.state_dict())

    # calibrate: a station's no-X and X draws (both deconvolved as its data) scored by its fold's network
    args = ["calibrate", *map(str, s["pools"]), "--model", str(SHIPPED_CHECKPOINT), "--test", str(s["test"]),
            "--draws", str(drawn[0]), "--metrics", str(tmp_path / "cal.json"), "--settings", settings]
    assert main([*args, "--out", str(tmp_path / "thr.csv"), "--refined", str(out), "--refine-draws",
                 str(drawn[1])]) == 0
    rows = {r["station"]: r for r in csv.DictReader((tmp_path / "thr.csv").read_text().splitlines())}
    a = calibration.AdaptSettings.from_config(cfgmod.validate(json.loads(settings))["cnn"]["adapt"])
    for k, code in enumerate(CODES):
        row = rows[code]
        assert (row["network"], row["no_x_draws"], row["x_draws"]) == (f"refined fold {k + 1}", "redeconvolved",
                                                                       "redeconvolved")
        with xr.open_dataset(drawn[0] / f"{code}.nc") as nx, xr.open_dataset(drawn[1] / f"{code}.nc") as d:
            want = calibration.station_thresholds(_probabilities(nets[k], nx["image"].values),
                                                  _probabilities(nets[k], d["x_image"].values), a)
        assert float(row["absent_threshold"]) == pytest.approx(want["absent_threshold"], rel=1e-5)
        assert float(row["false_alarm_rate"]) == pytest.approx(want["false_alarm_rate"])
    cal = json.loads((tmp_path / "cal.json").read_text())
    assert cal["refined_stations"] == 2
    assert cal["own_noise_draws"]["scored"] == 0 and cal["own_noise_draws"]["replaced"] > 0  # none made in vain
    # the folds without the X draws: an error that says what is missing, not thresholds from another network
    assert main([*args, "--out", str(tmp_path / "half.csv"), "--refined", str(out)]) == 1
    assert not (tmp_path / "half.csv").exists() and "lack their no-X (--draws) or X draws" in caplog.text
    # without --refined: the run's network and own-noise X draws, as before cnn.refine
    assert main([*args, "--out", str(tmp_path / "plain.csv")]) == 0
    plain = next(csv.DictReader((tmp_path / "plain.csv").read_text().splitlines()))
    assert (plain["network"], plain["x_draws"]) == ("run", "own-noise")
    own = json.loads((tmp_path / "cal.json").read_text())["own_noise_draws"]  # the X draws only: no-X redeconvolved
    assert own["scored"] > 0 and own["scored"] + own["replaced"] == cal["own_noise_draws"]["replaced"]

    # predict: the station's images scored by its fold's network, the verdict from its refined thresholds
    table = tmp_path / "cnn.csv"
    assert main(["predict", *map(str, s["images"]), "--model", str(SHIPPED_CHECKPOINT), "--calibration",
                 str(tmp_path / "thr.csv"), "--refined", str(out), "--out", str(table), "--settings", settings]) == 0
    got = {r["station"]: r for r in csv.DictReader(table.read_text().splitlines())}
    # thresholds of the folds' networks, judged by the run's network: refused, nothing written
    assert main(["predict", *map(str, s["images"]), "--model", str(SHIPPED_CHECKPOINT), "--calibration",
                 str(tmp_path / "thr.csv"), "--out", str(tmp_path / "mixed.csv"), "--settings", settings]) == 1
    assert "set by another network" in caplog.text and not (tmp_path / "mixed.csv").exists()
    for k, (code, path) in enumerate(zip(CODES, s["images"], strict=True)):
        with xr.open_dataset(path) as ds:
            prob = _probabilities(nets[k], ds["rf_image"].values)
        assert got[code]["network"] == f"refined fold {k + 1}"
        assert float(got[code]["probability_all"]) == pytest.approx(prob[0], abs=6e-5)  # 4 decimals
        assert float(got[code]["verdict_probability"]) == pytest.approx(prob[0], abs=6e-5)
        assert got[code]["verdict"] == predict.calibrated_verdict(prob, int(got[code]["n_rf"]), rows[code],
                                                                  {"min_rf": 3})[0]

    # the injection tests: each station's CNN is the network predict judged it with, with its thresholds
    small = json.dumps({**json.loads(settings), "detectability": {
        "depths_km": [300], "gradients_km": [0], "dvs": [0.03, 0.06], "draws": 2, "false_alarm_draws": 2}})
    assert main(["detectability", "kernels", "--out", str(tmp_path / "kernels.nc"), "--settings", small]) == 0
    station = ["detectability", "station", "--rf", *(str(s["dir"] / f"rf_{c}.nc") for c in CODES), "--kernels",
               str(tmp_path / "kernels.nc"), "--model", str(SHIPPED_CHECKPOINT), "--settings", small]
    assert main([*station, "--calibration", str(tmp_path / "thr.csv"), "--refined", str(out), "--out",
                 str(tmp_path / "det")]) == 0
    for code in CODES:
        with xr.open_dataset(tmp_path / "det" / f"rf_{code}.nc") as ds:
            assert ds.attrs["cnn_network"] == got[code]["network"]
            assert "dvs90_cnn" in ds
    # thresholds of the folds' networks with the run's network (no --refined): refused, nothing written
    assert main([*station, "--calibration", str(tmp_path / "thr.csv"), "--out", str(tmp_path / "mixed")]) == 1
    assert not (tmp_path / "mixed").exists()
    assert main([*station, "--calibration", str(tmp_path / "plain.csv"), "--out", str(tmp_path / "run")]) == 0
    with xr.open_dataset(tmp_path / "run" / "rf_CX.PB01.nc") as ds:
        assert ds.attrs["cnn_network"] == "run"


def test_look_alikes_are_balanced_between_the_labels_and_each_label_keeps_its_size():
    # no X: 60 % look-alikes (the calibration draws' hard fraction), X: 20 %
    label = np.r_[np.zeros(100, int), np.ones(100, int)]
    alike = np.r_[np.arange(100) < 60, np.arange(100) < 20]
    keep = refine.balanced_look_alikes(label, alike, np.random.default_rng(5))
    assert (label[keep] == 0).sum() == 100 and (label[keep] == 1).sum() == 100
    for value in (0, 1):
        assert alike[keep][label[keep] == value].mean() == pytest.approx(0.4)  # the pooled fraction
    # X's 20 look-alikes drawn 40 times, with replacement; the no-X draws' 60 drawn 40 times, without
    assert np.unique(keep[(label[keep] == 1) & alike[keep]]).size <= 20
    assert np.unique(keep[(label[keep] == 0) & alike[keep]]).size == 40
    np.testing.assert_array_equal(keep, refine.balanced_look_alikes(label, alike, np.random.default_rng(5)))
    # a label with no look-alike (or only look-alikes) cannot be balanced: it is kept as it is
    alike = np.r_[np.arange(100) < 60, np.zeros(100, bool)]
    keep = refine.balanced_look_alikes(label, alike, np.random.default_rng(5))
    np.testing.assert_array_equal(keep[label[keep] == 1], np.arange(100, 200))
    assert alike[keep][label[keep] == 0].mean() == pytest.approx(0.3)


def test_interpolated_weights_mix_floats_and_keep_the_refined_networks_counts():
    refined = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(7)}
    run = {"w": torch.tensor([-1.0, 1.0]), "n": torch.tensor(2)}
    got = refine.interpolated(refined, run, 0.25)
    torch.testing.assert_close(got["w"], torch.tensor([-0.5, 1.5]))
    assert torch.equal(got["n"], torch.tensor(7))
    assert torch.equal(refine.interpolated(refined, run, 1.0)["w"], refined["w"])


def test_refine_mixes_each_folds_fine_tuned_weights_with_the_run_networks(two_stations, drawn, tmp_path):
    s = two_stations

    def refined(weight: float) -> tuple:
        out = tmp_path / f"refined_{weight:g}"
        assert main(["refine", "--model", str(SHIPPED_CHECKPOINT), "--draws", str(drawn[0]), "--refine-draws",
                     str(drawn[1]), "--out", str(out), "--metrics", str(out / "refine.json"),
                     "--settings", _settings(s["cfg"], interpolation=weight)]) == 0
        return out, json.loads((out / "refine.json").read_text())

    (tuned, plain), (mixed, result) = refined(1.0), refined(0.25)
    base = load_classifier(SHIPPED_CHECKPOINT).state_dict()
    for k in (0, 1):  # the same fine-tuning (seeded), then 0.25 x its weights + 0.75 x the run's network's
        want = load_classifier(folds.fold_checkpoint(tuned, k)).state_dict()
        got = load_classifier(folds.fold_checkpoint(mixed, k)).state_dict()
        assert any(not torch.equal(want[n], base[n]) for n in base)
        for name, value in got.items():
            if value.is_floating_point():
                torch.testing.assert_close(value, 0.25 * want[name] + 0.75 * base[name])
            else:
                assert torch.equal(value, want[name])
    assert result["settings"]["interpolation"] == 0.25
    for f, g in zip(result["per_fold"], plain["per_fold"], strict=True):
        # the fold's own draws scored by the run's, the fine-tuned (as refined without the mix) and the mixed network
        assert set(f["held_out_draws"]) == {"run", "fine-tuned", "refined"}
        assert f["held_out_draws"]["fine-tuned"] == pytest.approx(g["held_out_draws"]["refined"], nan_ok=True)


def test_refine_with_draw_files_without_look_alike_flags_says_it_does_not_balance(two_stations, drawn, tmp_path,
                                                                                  caplog):
    s = two_stations
    old = tmp_path / "old_draws"
    old.mkdir()
    for code in CODES:  # refinement draws as written before the flags existed
        with xr.open_dataset(drawn[1] / f"{code}.nc") as ds:
            write_netcdf(ds.drop_vars(["x_look_alike", "train_look_alike"]).load(), old / f"{code}.nc")
    with caplog.at_level("WARNING"):
        assert main(["refine", "--model", str(SHIPPED_CHECKPOINT), "--draws", str(drawn[0]), "--refine-draws",
                     str(old), "--out", str(tmp_path / "refined"), "--metrics", str(tmp_path / "r.json"),
                     "--settings", _settings(s["cfg"])]) == 0
    assert "without look-alike flags" in caplog.text
    result = json.loads((tmp_path / "r.json").read_text())
    assert all(f["look_alikes"].startswith("not balanced") for f in result["per_fold"])


def test_refine_with_fewer_stations_than_folds_refines_nothing_and_says_so(two_stations, drawn, tmp_path, caplog):
    s = two_stations
    out = tmp_path / "refined"
    with caplog.at_level("WARNING"):
        assert main(["refine", "--model", str(SHIPPED_CHECKPOINT), "--draws", str(drawn[0] / "CX.PB01.nc"),
                     "--refine-draws", str(drawn[1]), "--out", str(out), "--metrics", str(tmp_path / "r.json"),
                     "--settings", _settings(s["cfg"], folds=3)]) == 0
    assert "fewer than cnn.refine.folds (3)" in caplog.text
    assert "CX.PB02" in caplog.text  # X draws without no-X draws: scored by the run's network
    assert folds.read_folds(out) == {} and not list(out.glob("*.ckpt"))


def test_refine_needs_the_redeconvolved_calibration():
    with pytest.raises(cfgmod.ConfigError, match=r"cnn\.refine\.enabled needs cnn\.adapt\.enabled"):
        cfgmod.validate({"cnn": {"refine": {"enabled": True}, "adapt": {"enabled": False}}})
    assert cfgmod.validate({"cnn": {"refine": {"enabled": True}}})["cnn"]["refine"]["folds"] == 2


def test_a_station_whose_draws_fail_is_left_to_the_run_network_and_the_batch_goes_on(two_stations, monkeypatch,
                                                                                       tmp_path, caplog):
    from xdisc.cnn import refine

    s, original = two_stations, refine._images

    def failing(resp, pool, *args, **kwargs):  # the propagator refusing one station's samples
        if pool.station == "CX.PB02":
            raise FloatingPointError("overflow in the propagator")
        return original(resp, pool, *args, **kwargs)

    monkeypatch.setattr(refine, "_images", failing)
    with caplog.at_level("WARNING"):
        assert main(["refine-draws", *map(str, s["pools"]), "--test", str(s["test"]), "--synthetics",
                     str(s["train"]), "--out", str(tmp_path / "draws"), "--settings", _settings(s["cfg"])]) == 0
    assert "CX.PB02: no draws (overflow in the propagator)" in caplog.text
    assert sorted(f.name for f in (tmp_path / "draws").glob("*.nc")) == ["CX.PB01.nc"]
