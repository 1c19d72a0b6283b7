"""Batches of stations: one job for many stations where a job per station costs more than it does.

Snakemake plans about 1-2 ms per job and a cluster pays a submission per job, so at 10^4 stations the
downloads (``data.batch_stations`` stations per job, sharing the per-provider limits) and the injection
tests (``detectability.batch_stations`` per job, sharing the CNN's start-up) run per batch; the
per-station rule (receiver functions, stacks, images) stays one job per station.

A batch is a run of consecutive selected stations of the station table, in the table's order, named
``b0000``, ``b0001``, ... Light enough for the Snakefile to import.
"""

from __future__ import annotations

# The Snakemake wildcard constraint of {batch} (no braces: Snakemake's wildcard parser would take them
# for a wildcard)
PATTERN = "b[0-9][0-9][0-9][0-9]+"


def batch_name(index: int) -> str:
    """The name of batch ``index`` (0-based): b0000, b0001, ..., b10000, ..."""
    return f"b{index:04d}"


def station_batches(codes, size: int) -> dict[str, tuple[str, ...]]:
    """The stations ``codes`` (in table order) in batches of at most ``size``: {batch name: codes}."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    codes = tuple(codes)
    return {batch_name(k): codes[i:i + size] for k, i in enumerate(range(0, len(codes), size))}


def batch_of(batches: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """{station code: its batch name} of :func:`station_batches`."""
    return {code: name for name, codes in batches.items() for code in codes}
