"""The verdict vocabulary, shared by stacking, the CNN, the comparison and the figures, and the
per-station verdict table both methods write (``results/verdicts/{stacking,cnn}.csv``)."""

from __future__ import annotations

import csv
from pathlib import Path

from xdisc.core.artifacts import atomic_output

PRESENT, ABSENT, UNDETERMINED = "present", "absent", "undetermined"
DECIDED = (PRESENT, ABSENT)
VERDICTS = (*DECIDED, UNDETERMINED)  # what a method may answer
MISSING = "missing"  # comparison only: the station is not in that method's table
CATEGORIES = (*VERDICTS, MISSING)


def write_verdict_table(rows: list[dict], columns, path: str | Path) -> dict[str, int]:
    """One row per station, sorted by station, floats to 4 significant digits, written atomically;
    returns the number of stations of each of :data:`VERDICTS`."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: r["station"]):
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})
    return {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
