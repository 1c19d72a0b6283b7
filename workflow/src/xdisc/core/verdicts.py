"""The verdict vocabulary, shared by stacking, the CNN, the comparison and the figures, and the
per-station verdict table both methods write (``results/verdicts/{stacking,cnn}.csv``)."""

from __future__ import annotations

import csv
from pathlib import Path

from xdisc.core.artifacts import atomic_output

PRESENT, ABSENT, UNDETERMINED = "present", "absent", "undetermined"
DECIDED = (PRESENT, ABSENT)
VERDICTS = (*DECIDED, UNDETERMINED)  # what a method may answer
# stations.csv only: 'absent', but X of detectability.target_dvs would not have been seen (xdisc detectability)
NOT_DETECTABLE = "not detectable"
MISSING = "missing"  # comparison only: the station is not in that method's table
CATEGORIES = (*VERDICTS, NOT_DETECTABLE, MISSING)


def write_table(rows: list[dict], columns, path: str | Path) -> None:
    """One row per station, sorted by station, floats to 4 significant digits, written atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: r["station"]):
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})


def write_verdict_table(rows: list[dict], columns, path: str | Path) -> dict[str, int]:
    """:func:`write_table`; returns the number of stations of each of :data:`VERDICTS`."""
    write_table(rows, columns, path)
    return {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
