"""SLURM submission on a real scheduler: a single-node cluster on this machine (Debian's slurm-wlm
and munge, started without systemd by workflow/slurm/start_local_cluster.sh), the tiny DAG submitted
with the official executor plugin and the repository's SLURM profile, jobs checked in the job
completion log, outputs compared with a local run.

Needs root and apt-get (CI has both); skipped elsewhere unless CI=true."""

import os
import shutil
import subprocess

import pytest
import xarray as xr
from conftest import in_ci
from pipeline_runs import ROOT, SNAKEMAKE, TINY, VERDICT_TABLES, workdir

SCRIPTS = ROOT / "workflow" / "slurm"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        if in_ci():
            pytest.fail("the SLURM test needs root and apt-get in CI")
        pytest.skip("needs root and apt-get (Debian) to install and start slurm-wlm")
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(SCRIPTS / "start_local_cluster.sh"), str(state)], capture_output=True,
                           text=True, timeout=900)
    assert start.returncode == 0, start.stdout + start.stderr
    yield state
    subprocess.run(["bash", str(SCRIPTS / "stop_local_cluster.sh"), str(state)], capture_output=True, timeout=120)
    for pidfile in ("slurmctld.pid", "slurmd.pid", "munged.pidfile"):
        assert not (state / pidfile).exists(), f"{pidfile}: daemon not stopped"


@pytest.mark.slow
def test_tiny_dag_through_slurm_equals_the_local_run(cluster, tiny_run, tmp_path):
    wd = workdir(tmp_path, TINY)
    env = dict(os.environ, SLURM_CONF=str(cluster / "slurm.conf"))
    small = ["simulate_synthetics", "pretrain_cnn", "finetune_cnn"]
    cmd = ["timeout", "-s", "KILL", "1200", *SNAKEMAKE, "--directory", str(wd),
           "--workflow-profile", str(ROOT / "workflow" / "profiles" / "slurm"),
           "--jobs", "4", "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "--latency-wait", "5",
           # this one-node cluster has 2 CPUs: one station per group job (a group job asks for the CPUs of all
           # its jobs that could run at once: 3 stations would ask for 3), and the profile's requests shrunk
           # so that jobs fit
           "--group-components", "station=1", "detectability=1",
           "--set-threads", *[f"{r}=2" for r in small],
           "--set-resources", *[f"{r}:cpus_per_task=2" for r in small], *[f"{r}:mem_mb=3000" for r in small]]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    # every job went through SLURM: the job completion log has one COMPLETED line per submitted job
    log = (cluster / "jobcomp.log").read_text().splitlines()
    completed = [line for line in log if "JobState=COMPLETED" in line and f"WorkDir={wd}" in line]
    submitted = (run.stdout + run.stderr).count("has been submitted with SLURM jobid")
    assert submitted >= 10, run.stderr[-3000:]
    assert len(completed) == submitted, f"{len(completed)} completed of {submitted} submitted"
    # and the outputs equal those of the local run
    for table in VERDICT_TABLES:
        assert (wd / "results" / table).read_text() == (tiny_run / "results" / table).read_text(), table
    for nc in ("rf/CX.PB01.nc", "stack/CX.PB01.nc", "images/CX.PB01.nc", "synthetic/pretrain.nc"):
        a, b = xr.open_dataset(wd / "results" / nc), xr.open_dataset(tiny_run / "results" / nc)
        xr.testing.assert_equal(a.drop_attrs(deep=False), b.drop_attrs(deep=False))
