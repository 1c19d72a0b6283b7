"""The pretrained CNN that ships with xdisc (``cnn.pretrained: shipped``, the default).

``shipped/xnet.ckpt`` holds the weights and hyperparameters of a network pretrained by the project's own
code (``snakemake --cores 2 ship_pretrained_cnn --configfile config/config.yaml config/shipped.yaml``);
``shipped/xnet.json`` its provenance: the configuration sections it was trained with, seed, software
versions, the command, the checkpoint's SHA-256 and its metrics on the canonical synthetic test set.
A run that uses it (:func:`use_shipped`) copies the checkpoint, checks that the run's images and
receiver functions are those the network was trained on, and scores it on the run's own test set.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import lightning as L
import torch

from xdisc.cnn.datasets import held_out_images
from xdisc.cnn.images import ImageSettings
from xdisc.cnn.module import XClassifier, logits_of
from xdisc.cnn.synthetic_set import SyntheticSource
from xdisc.config import ConfigError
from xdisc.core.artifacts import atomic_output, software_versions, write_json
from xdisc.synth.stations import StationDraw

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).parent / "shipped"
CHECKPOINT, PROVENANCE = SHIPPED_DIR / "xnet.ckpt", SHIPPED_DIR / "xnet.json"
# the configuration the network's input depends on: a run must match it to use the shipped network
INPUT_KEYS = {"images": ("n_slowness_bins", "slowness_range_s_per_km", "depth_range_km", "depth_step_km",
                         "max_noise", "weighting", "noise_coda_s"),
              "receiver_function": ("sampling_rate_hz", "time_before_p_s", "time_after_p_s", "gaussian_width_hz",
                                    "deconvolution")}
SHIP_COMMAND = "snakemake --cores 2 ship_pretrained_cnn --configfile config/config.yaml config/shipped.yaml"


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def provenance() -> dict:
    """The shipped network's provenance (``xnet.json``); a clear error when none is shipped."""
    import json

    if not CHECKPOINT.is_file() or not PROVENANCE.is_file():
        raise ConfigError(f"no shipped pretrained network in {SHIPPED_DIR}: set cnn.pretrained: train, or make one "
                          f"with `{SHIP_COMMAND}`")
    return json.loads(PROVENANCE.read_text())


def mismatches(trained: dict, config: dict) -> list[str]:
    """Input settings of ``config`` that differ from those the network was ``trained`` with."""
    out = []
    for section, keys in INPUT_KEYS.items():
        for key in keys:
            a, b = trained.get(section, {}).get(key), config[section].get(key)
            if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
                out.append(f"{section}.{key}: {b!r} (the shipped network: {a!r})")
    if trained.get("earth_model") != config["earth_model"]:
        out.append(f"earth_model: {config['earth_model']!r} (the shipped network: {trained.get('earth_model')!r})")
    return out


def use_shipped(config: dict, test_path: str | None, out: Path, metrics_path: Path) -> dict:
    """Copy the shipped network to ``out`` and score it on the run's test set, as pretraining would."""
    from xdisc.cnn.train import depth_metrics, evaluate

    prov = provenance()
    if sha256(CHECKPOINT) != prov["sha256"]:
        raise ConfigError(f"{CHECKPOINT} does not match the SHA-256 in {PROVENANCE}: reinstall xdisc")
    wrong = mismatches(prov["config"], config)
    if wrong:
        raise ConfigError("cnn.pretrained is 'shipped', but the shipped network was trained for other inputs: "
                          + "; ".join(wrong) + ". Set cnn.pretrained: train (or use those settings).")
    with atomic_output(out) as tmp:
        shutil.copyfile(CHECKPOINT, tmp)
    module = XClassifier.load_from_checkpoint(str(out), map_location="cpu")
    temperature = float(module.temperature)
    result = {"stage": "pretrain", "source": "shipped", "checkpoint": str(CHECKPOINT), "sha256": prov["sha256"],
              "provenance": {k: prov[k] for k in ("date", "command", "seed", "versions", "test") if k in prov},
              "temperature": temperature, "parameters": sum(p.numel() for p in module.parameters()),
              "validation": prov.get("validation"), "note": "the shipped network: no training in this run",
              "seed": config["cnn"]["seed"], "versions": software_versions(("torch", "lightning"))}
    log.info("pretrain: the shipped network (%s, %s), recorded test accuracy %.3f", prov.get("date", "?"),
             prov["sha256"][:12], prov.get("test", {}).get("accuracy", float("nan")))
    if test_path:
        cfg = config["cnn"]
        test = SyntheticSource.read(test_path)
        data = held_out_images(test, ImageSettings.from_config(config["images"]),
                           StationDraw.from_config(config["synthetics"], cfg), config["earth_model"], cfg["seed"])
        tl, ty = logits_of(module, data)
        result["test"] = evaluate(tl, ty, temperature)
        result["test"]["depth"] = depth_metrics(module, data, tl / temperature)
        result["test_models"] = sorted(set(test.model))
        result["_test_logits"], result["_test_labels"] = tl, ty
        log.info("pretrain: the shipped network on this run's test set: accuracy %.3f, AUC %.3f",
                 result["test"]["accuracy"], result["test"]["roc_auc"])
    write_json({k: v for k, v in result.items() if not k.startswith("_")}, metrics_path)
    return result


def ship(checkpoint: str | Path, metrics_path: str | Path, config: dict, out_dir: Path = SHIPPED_DIR) -> dict:
    """Write a trained checkpoint (weights and hyperparameters only) and its provenance into ``out_dir``."""
    import datetime as dt
    import json

    metrics = json.loads(Path(metrics_path).read_text())
    if metrics.get("source") == "shipped":
        raise ConfigError("this checkpoint is the shipped one: train a new one (cnn.pretrained: train) to ship it")
    module = XClassifier.load_from_checkpoint(str(checkpoint), map_location="cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT.name
    with atomic_output(ckpt) as tmp:
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                    "pytorch-lightning_version": L.__version__}, tmp)
    prov = {"date": dt.date.today().isoformat(), "command": SHIP_COMMAND, "sha256": sha256(ckpt),
            "size_bytes": ckpt.stat().st_size, "seed": config["cnn"]["seed"],
            "config": {k: config[k] for k in ("earth_model", "images", "receiver_function", "layering", "synthetics",
                                              "cnn")},
            "versions": software_versions(("torch", "lightning")),
            "training": {k: metrics.get(k) for k in ("train_samples", "val_samples", "epochs", "fit_seconds",
                                                     "threads", "train_models", "parameters", "temperature")},
            "validation": metrics.get("validation"), "test": metrics.get("test"),
            "test_models": metrics.get("test_models")}
    write_json(prov, out_dir / PROVENANCE.name)
    log.info("ship: %s (%d bytes, sha256 %s), test accuracy %.3f", ckpt, prov["size_bytes"], prov["sha256"][:12],
             (prov["test"] or {}).get("accuracy", float("nan")))
    return prov
