"""Event identity shared by the download and the receiver functions (neither imports the other for it)."""

from __future__ import annotations


def event_id(event) -> str:
    """Stable id of an event: its preferred origin time (UTC), e.g. 20110515T130815."""
    origin = event.preferred_origin() or event.origins[0]
    return origin.time.strftime("%Y%m%dT%H%M%S")
