"""xdisc: map the mantle X-discontinuity from teleseismic P receiver functions."""

import functools


@functools.cache
def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("xdisc")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def __getattr__(name: str):
    # __version__ is looked up on first use: the package metadata search costs ~0.1 s of every start-up
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
