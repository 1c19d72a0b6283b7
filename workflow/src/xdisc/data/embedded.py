"""Where the embedded example data live: the real data shipped with the rf package (CX.PB01, Chile, 2011)."""

from __future__ import annotations

from pathlib import Path


def embedded_paths() -> dict[str, Path]:
    """Waveforms (miniSEED), StationXML and QuakeML of the rf package's example."""
    import rf

    root = Path(rf.__file__).parent / "example"
    return {"waveforms": root / "example_data.mseed", "inventory": root / "example_inventory.xml",
            "events": root / "example_events.xml"}
