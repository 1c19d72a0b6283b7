"""SEED codes and the station table's selection: light enough for the Snakefile to import.

Network, station, location and channel codes are checked against the SEED 2.4 rules
(upper-case letters and digits; the location code may be empty) where they enter the pipeline,
so that a hostile or broken code never becomes a job, a file name or a request.
"""

from __future__ import annotations

import re

# The Snakemake wildcard constraints use the network and station patterns.
CODE_PATTERNS = {"network": "[A-Z0-9]{1,2}", "station": "[A-Z0-9]{1,5}", "location": "[A-Z0-9]{0,2}",
                 "channel": "[A-Z0-9]{3}"}
_CODE_RE = {kind: re.compile(f"{pattern}\\Z") for kind, pattern in CODE_PATTERNS.items()}
_RULES = {"network": "1-2 characters A-Z, 0-9", "station": "1-5 characters A-Z, 0-9",
          "location": "0-2 characters A-Z, 0-9", "channel": "3 characters A-Z, 0-9"}
STATION_STATUS = ("selected", "skipped")  # the status column of the station table


def code_problem(kind: str, code) -> str | None:
    """Why ``code`` is not a valid SEED ``kind`` code ("network", "station", "location", "channel"),
    or None when it is valid."""
    if not isinstance(code, str) or not _CODE_RE[kind].match(code):
        return f"invalid {kind} code {code!r} (SEED: {_RULES[kind]})"
    return None


def selected(rows: list[dict]) -> list[dict]:
    """The rows of a station table that are to be processed (a table written before the status column
    existed selects every station)."""
    return [row for row in rows if row.get("status", STATION_STATUS[0]) == STATION_STATUS[0]]
