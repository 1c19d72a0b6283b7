"""The pretrained network that ships with xdisc: its files and provenance, that it scores the canonical
synthetic test set at its recorded accuracy, and that a run whose inputs it was not trained for stops
with the reason."""

import json

import numpy as np
import pytest
from xdisc import config as cfgmod
from xdisc.cli import main
from xdisc.cnn import shipped
from xdisc.cnn.datasets import SyntheticSource, held_out_images
from xdisc.cnn.images import ImageSettings
from xdisc.cnn.module import load_classifier, logits_of
from xdisc.core.artifacts import write_netcdf
from xdisc.synth.stations import StationDraw
from xdisc.synth.synthetics import make_dataset


def test_the_shipped_network_has_its_provenance_and_fits_in_10_mb():
    prov = shipped.provenance()
    assert shipped.CHECKPOINT.stat().st_size <= 10 * 2**20
    assert prov["sha256"] == shipped.sha256(shipped.CHECKPOINT)
    for key in ("date", "command", "seed", "versions", "config", "training", "test"):
        assert key in prov, key
    assert prov["config"]["cnn"]["pretrained"] == "train"
    assert prov["test"]["n"] >= 600 and 0.5 < prov["test"]["accuracy"] <= 1.0
    module = load_classifier(shipped.CHECKPOINT)
    assert module.net.depth_branch is not None
    # the default configuration is one the shipped network can take
    assert shipped.mismatches(prov["config"], cfgmod.load(None)) == []
    pre_p = cfgmod.deep_merge(cfgmod.load(None), {"images": {"noise_coda_s": None}})
    assert shipped.mismatches(prov["config"], pre_p) == ["images.noise_coda_s: None (the shipped network: [85, 120])"]


def _canonical_test_set(prov: dict) -> dict:
    """The configuration of the canonical synthetic test set the shipped network was scored on (as the
    workflow's simulate_synthetics makes the test split: seed + 1, n_test_samples)."""
    cfg = json.loads(json.dumps(prov["config"]))
    cfg["synthetics"] = cfgmod.held_out_synthetics(cfg["synthetics"])
    return cfg


@pytest.mark.slow
def test_the_shipped_network_scores_the_canonical_test_set_at_its_recorded_accuracy(tmp_path):
    prov = shipped.provenance()
    cfg = _canonical_test_set(prov)
    write_netcdf(make_dataset(cfg, n_jobs=2), tmp_path / "test.nc")
    src = SyntheticSource.read(tmp_path / "test.nc")
    data = held_out_images(src, ImageSettings.from_config(cfg["images"]),
                       StationDraw.from_config(cfg["synthetics"], cfg["cnn"]), cfg["earth_model"], cfg["cnn"]["seed"])
    module = load_classifier(shipped.CHECKPOINT)
    logits, y = logits_of(module, data)
    accuracy = float(np.mean((logits >= 0) == (y == 1)))
    assert y.size == prov["test"]["n"]
    assert accuracy == pytest.approx(prov["test"]["accuracy"], abs=0.01)


def test_xdisc_train_shipped_copies_it_and_scores_it_on_the_run_test_set(tmp_path):
    cfg = cfgmod.load(None, {"synthetics": {"n_samples": 12, "slowness_s_per_km": [0.05, 0.07]}})
    write_netcdf(make_dataset(cfg, n_jobs=2), tmp_path / "test.nc")
    args = ["train", "shipped", "--test", tmp_path / "test.nc", "--out", tmp_path / "pre.ckpt", "--metrics",
            tmp_path / "pre.json", "--figures", tmp_path / "figures"]
    assert main([str(a) for a in args]) == 0
    assert shipped.sha256(tmp_path / "pre.ckpt") == shipped.provenance()["sha256"]
    result = json.loads((tmp_path / "pre.json").read_text())
    assert result["source"] == "shipped" and result["test"]["n"] == 12
    assert (tmp_path / "figures" / "pretrain_roc.png").is_file()


def test_a_run_with_other_image_settings_stops_naming_them(tmp_path, caplog):
    args = ["train", "shipped", "--out", str(tmp_path / "pre.ckpt"), "--metrics", str(tmp_path / "pre.json"),
            "--settings", json.dumps({"images": {"depth_step_km": 5.0}})]
    assert main(args) == 1
    assert "images.depth_step_km: 5.0" in caplog.text
    assert not (tmp_path / "pre.ckpt").exists()
