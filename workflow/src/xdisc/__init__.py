"""xdisc: map the mantle X-discontinuity from teleseismic P receiver functions."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("xdisc")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"
