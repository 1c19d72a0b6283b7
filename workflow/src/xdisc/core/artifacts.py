"""NetCDF artifacts: CF-style global attributes, provenance, atomic writes; strict JSON summaries."""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import functools
import json
import math
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

CONVENTIONS = "CF-1.10"
_VERSION_PACKAGES = ("xdisc", "numpy", "scipy", "obspy", "xarray", "netCDF4")


@functools.cache
def software_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSION_PACKAGES + tuple(extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance_attrs(title: str, source: str, seed: int | None = None, config_hash: str | None = None,
                     references: str = "", extra_packages: tuple[str, ...] = ()) -> dict[str, str | int]:
    """Global attributes recorded on every artifact."""
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    attrs: dict[str, str | int] = {
        "Conventions": CONVENTIONS,
        "title": title,
        "institution": "xdisc",
        "source": source,
        "history": f"{now} created by: {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))}",
        "references": references,
    }
    for name, version in software_versions(tuple(extra_packages)).items():
        attrs[f"version_{name}"] = version
    if seed is not None:
        attrs["seed"] = int(seed)
    if config_hash is not None:
        attrs["config_hash"] = config_hash
    return attrs


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    A writer that is killed or fails leaves no half-written file under the final name (and
    removes its temporary file when it can)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_netcdf(ds: xr.Dataset, path: str | Path, compress: bool = True) -> Path:
    """Write ``ds`` atomically (see :func:`atomic_output`), numeric variables zlib-compressed."""
    encoding = {}
    if compress:
        for name, var in ds.data_vars.items():
            if var.dtype.kind in "fiu" and var.ndim > 0:
                encoding[name] = {"zlib": True, "complevel": 4}
    with atomic_output(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
    return Path(path)


def json_ready(obj):
    """``obj`` with numpy scalars and arrays turned into Python numbers and lists, tuples into
    lists, and NaN / infinity into ``None``: what strict JSON (and jq, R, JavaScript) can read."""
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        return json_ready(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {(k.item() if isinstance(k, np.generic) else k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def write_json(data: dict, path: str | Path) -> Path:
    """Write ``data`` as indented strict JSON (see :func:`json_ready`: unknown values are ``null``),
    atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n")
    return Path(path)


def write_csv(rows, fields, path: str | Path) -> Path:
    """Write ``rows`` (dicts) as a CSV table with the columns ``fields``, atomically (see
    :func:`atomic_output`); a key a row lacks is written empty, keys not in ``fields`` are left out."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def open_netcdf(path: str | Path) -> xr.Dataset:
    """Open an artifact fully into memory (files stay closed, safe to overwrite)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"artifact {path} does not exist")
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def as_float32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def usable_receiver_functions(path: str | Path, use_qc: bool):
    """A station's receiver functions (``xdisc rf``), the mask of those without NaNs (and, with
    ``use_qc``, that passed quality control), and the station's codes and coordinates."""
    rf_ds = open_netcdf(path)
    keep = np.all(np.isfinite(rf_ds["rf"].values), axis=1)
    if use_qc:
        keep &= rf_ds["qc_pass"].values == 1
    station = {k: rf_ds[k].item() for k in ("network", "station", "latitude", "longitude")}
    return rf_ds, keep, station
