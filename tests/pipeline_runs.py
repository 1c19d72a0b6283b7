"""Helpers for tests that run the Snakemake workflow in a temporary folder."""

import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]

# the whole DAG at toy size: every rule runs, in about two minutes on 2 cores (the adaptation and the injection
# tests shrunk too: at their defaults they took 70 and 30 s of the tiny run, which the CI runs three times)
TINY = {"data": {"demo": {"stations": 2, "events": 8}},
        "synthetics": {"n_samples": 12, "n_test_samples": 8, "slowness_s_per_km": [0.05, 0.07]},
        "cnn": {"pretrained": "train", "pretrain": {"max_epochs": 1, "batch_size": 8},
                "adapt": {"epochs": 1, "images_per_epoch": 256},
                "finetune": {"max_epochs": 1, "batch_size": 8}, "rf_per_station": [10, 20]},
        "detectability": {"draws": 4, "false_alarm_draws": 8}}

VERDICT_TABLES = ("verdicts/stacking.csv", "verdicts/cnn.csv", "verdicts/stations.csv")


def default_sigint() -> None:
    """``preexec_fn`` of a child that a test interrupts with SIGINT: a shell that starts a job in the
    background without job control (``nohup ... &``, some CI runners) leaves SIGINT ignored, and an ignored
    signal stays ignored across exec; a terminal's Ctrl-C is never ignored, so the test restores it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def workdir(path: Path, config: dict) -> Path:
    """A working folder whose config/config.yaml is the default one with ``config``'s sections merged in."""
    (path / "config").mkdir()
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for key, value in config.items():
        base.setdefault(key, {}).update(value)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(base))
    return path


def run_snakemake(path: Path, *args, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--directory", str(path), *args], capture_output=True, text=True,
                          timeout=timeout)
