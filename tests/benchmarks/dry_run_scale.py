"""How the workflow plans a global run: ``snakemake -n`` with N stations (default 10^4).

Builds a working folder whose checkpoint outputs (station table, StationXML, events, providers) are
already there, as after ``select_stations`` of a global FDSN run, then times the dry run and its peak
memory. Not part of CI. Run::

    python tests/benchmarks/dry_run_scale.py                  # 10^4 stations
    python tests/benchmarks/dry_run_scale.py --stations 1000 --keep /tmp/scale
    python tests/benchmarks/dry_run_scale.py --extra --workflow-profile workflow/profiles/slurm

Prints the wall time, the CPU time and the peak resident memory of the snakemake process, and the number
of jobs (and of job groups, when the per-station rules are grouped) it plans.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def station_codes(n: int) -> list[tuple[str, str]]:
    """n distinct valid (network, station) codes: 2-letter networks of up to 1000 stations each."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for i in range(n):
        net = letters[(i // 1000) // 26 % 26] + letters[(i // 1000) % 26]
        out.append((net, f"S{i % 1000:03d}"))
    return out


SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def make_workdir(path: Path, n: int) -> Path:
    """A working folder with the default configuration and the checkpoint outputs of an n-station run
    (written after the settings files that select_stations reads, as in a real run, so that it is done)."""
    (path / "config").mkdir(parents=True, exist_ok=True)
    # the default configuration as a global FDSN run (the default source, the demo network, would make
    # the checkpoint's input anew)
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["data"].update(source="fdsn")
    cfg["data"]["stations"].update(starttime="2015-01-01", endtime="2020-12-31")
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    subprocess.run([*SNAKEMAKE, "--directory", str(path), "--cores", "1", "--until", "write_settings", "--quiet",
                    "all"], check=True, capture_output=True)
    time.sleep(0.01)  # the checkpoint outputs below are newer than the settings files
    raw = path / cfg["data"].get("raw_dir", "data/raw")
    raw.mkdir(parents=True, exist_ok=True)
    with open(raw / "stations.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["network", "station", "latitude", "longitude", "elevation_m", "provider", "status",
                         "reason"])
        for k, (net, sta) in enumerate(station_codes(n)):
            writer.writerow([net, sta, -60 + 120 * (k % 97) / 96, -180 + 360 * (k % 331) / 331, 0, "fake",
                             "selected", ""])
    for name in ("stations.xml", "events.xml", "providers.csv"):
        (raw / name).write_text("fake checkpoint output for the dry run\n")
    return path


def dry_run(workdir: Path, extra: list[str]) -> dict:
    cmd = [*SNAKEMAKE, "--directory", str(workdir), "-n", "--cores", "2", "--quiet", "rules", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        sys.exit(f"snakemake -n failed ({run.returncode}):\n{run.stderr[-4000:]}")
    text = run.stdout + run.stderr
    jobs = sum(int(m.group(2)) for m in re.finditer(r"^(\S+)\s+(\d+)\s*$", text, re.M) if m.group(1) != "total")
    total = re.search(r"^total\s+(\d+)", text, re.M)
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_rss_gib": after.ru_maxrss / 1024**2, "jobs": int(total.group(1)) if total else jobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="build the working folder here and keep it")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more snakemake arguments")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="xdisc-scale-"))
    try:
        make_workdir(folder, args.stations)
        result = dry_run(folder, args.extra)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"snakemake -n, {args.stations} stations: {result['jobs']} jobs planned in {result['wall_s']:.1f} s wall, "
          f"{result['cpu_s']:.1f} s CPU, peak memory {result['peak_rss_gib']:.2f} GiB "
          f"({os.cpu_count()} CPUs; target: <= 30 s wall)")


if __name__ == "__main__":
    main()
