"""Where the example archives live: the real data shipped with the rf package (CX.PB01, Chile, 2011) and the
demo archive that :func:`xdisc.data.demo.make_demo` writes. Light on imports: the workflow reads it when
it parses the Snakefile."""

from __future__ import annotations

from pathlib import Path


def embedded_paths() -> dict[str, Path]:
    """Waveforms (miniSEED), StationXML and QuakeML of the rf package's example."""
    import rf

    root = Path(rf.__file__).parent / "example"
    return {"waveforms": root / "example_data.mseed", "inventory": root / "example_inventory.xml",
            "events": root / "example_events.xml"}


def demo_paths(folder: str | Path) -> dict[str, Path]:
    """Where the demo archive lives below ``folder`` (``data.demo.folder``)."""
    folder = Path(folder)
    return {"sds": folder / "SDS", "inventory": folder / "stations.xml", "events": folder / "events.xml",
            "truth": folder / "truth.csv", "info": folder / "network.json", "readme": folder / "README.txt"}
