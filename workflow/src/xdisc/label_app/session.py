"""What a labelling session knows: the station image files, the label file and the labels so far."""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from xdisc.labels import (
    ALL_IMAGES,
    LABELS,
    LabelError,
    append_labels,
    ensure_label_file,
    read_label_rows,
    utc_now,
)

log = logging.getLogger(__name__)

PAGE_SOURCE = "xdisc label"  # the source column of the rows the page writes
DEFAULT_IMAGES = Path("results/images")
DEFAULT_STACKS = Path("results/stack")
MAX_NOTE_CHARS = 2000
PNG_CACHE = 48


# ----------------------------------------------------------------------------- station images

@dataclass
class StationImages:
    """What the page needs to know of one image file (the image data are read on demand)."""

    code: str
    path: Path
    n_rf: list[int]
    kind: list[str]
    latitude: float = math.nan
    longitude: float = math.nan
    variable: str = "image"  # name of the image array in the file

    @property
    def n_images(self) -> int:
        return len(self.n_rf)


IMAGE_AXES = ("channel", "slowness_bin", "depth")  # the last three dimensions of the image array


def image_variable(ds) -> str:
    """Name of the image array of a station image file: ``image`` (a data variable, or a coordinate when the
    file has no separate image index), else the only 4-D variable whose last dimensions are :data:`IMAGE_AXES`."""
    if "image" in ds.variables and ds["image"].ndim == 4:
        return "image"
    found = [str(n) for n, v in ds.variables.items() if v.ndim == 4 and tuple(v.dims[1:]) == IMAGE_AXES]
    if len(found) != 1:
        raise LabelError(f"no image array with dimensions (image, {', '.join(IMAGE_AXES)})" if not found else
                         f"several image arrays: {', '.join(found)}")
    return found[0]


def scan_image_file(path: Path) -> StationImages:
    """Read the layout of one station's image file; raise :class:`LabelError` with the reason when unusable."""
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            var = image_variable(ds)
            dims = ds[var].dims
            if tuple(dims[1:]) != IMAGE_AXES:
                raise LabelError(f"{var} has dimensions {dims}, expected (image, {', '.join(IMAGE_AXES)})")
            if "amplitude" not in [str(c) for c in ds["channel"].values]:
                raise LabelError("no channel 'amplitude'")
            code = f"{ds['network'].item()}.{ds['station'].item()}"
            n = ds.sizes[dims[0]]
            n_rf = [int(v) for v in ds["n_rf"].values] if "n_rf" in ds else [-1] * n
            kind = [str(v) for v in ds["kind"].values] if "kind" in ds else [""] * n
            lat = float(ds["latitude"]) if "latitude" in ds.variables else math.nan
            lon = float(ds["longitude"]) if "longitude" in ds.variables else math.nan
    except LabelError:
        raise
    except Exception as exc:  # corrupt NetCDF, missing coordinate, ...: the file is left out, never the page
        raise LabelError(f"{type(exc).__name__}: {exc}") from exc
    if n == 0:
        raise LabelError("no image (too few receiver functions)")
    if len(n_rf) != n or len(kind) != n:
        raise LabelError(f"n_rf or kind has not one value per image ({n})")
    return StationImages(code, Path(path), n_rf, kind, lat, lon, var)


def _read_image(st: StationImages, image: int):
    """One image as a DataArray (channel, slowness_bin, depth)."""
    import xarray as xr

    with xr.open_dataset(st.path, engine="netcdf4") as ds:
        arr = ds[st.variable]
        return arr[image].load().rename("image")


def _read_stack(path: Path):
    import xarray as xr

    with xr.open_dataset(path, engine="netcdf4") as ds:
        keep = [v for v in ("depth_stack", "depth_stack_lower", "depth_stack_upper") if v in ds]
        return ds[keep].load()


# ----------------------------------------------------------------------------- session state

@dataclass
class LabelSession:
    """Images to label, the label file and what is labelled (thread-safe)."""

    stations: dict[str, StationImages]
    labels_path: Path
    labeller: str
    stacks_dir: Path | None = None
    left_out: list[tuple[Path, str]] = field(default_factory=list)
    items: list[tuple[str, int]] = field(init=False)
    _index: dict = field(init=False, default_factory=dict)
    _rows: dict = field(init=False, default_factory=dict)
    _stamp: tuple = field(init=False, default=())
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _io_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _png: OrderedDict = field(init=False, default_factory=OrderedDict)
    _stacks: dict = field(init=False, default_factory=dict)

    def __post_init__(self):
        self.labeller = self.labeller.strip()
        if not self.labeller:
            raise LabelError("the labeller name is empty (--labeller NAME)")
        if not self.stations:
            raise LabelError("no station images to label")
        self.items = [(code, j) for code in sorted(self.stations) for j in range(self.stations[code].n_images)]
        self._index = {item: i for i, item in enumerate(self.items)}
        ensure_label_file(self.labels_path)
        self.reload()

    @classmethod
    def open(cls, images_dir: str | Path, labels_path: str | Path, labeller: str,
             stacks_dir: str | Path | None = None) -> LabelSession:
        """Scan ``images_dir/*.nc``; unreadable files are left out with a logged reason."""
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise LabelError(f"image folder {images_dir} does not exist")
        files = sorted(images_dir.glob("*.nc"))
        stations: dict[str, StationImages] = {}
        left_out: list[tuple[Path, str]] = []
        for path in files:
            try:
                st = scan_image_file(path)
            except LabelError as exc:
                log.warning("label: %s left out: %s", path, exc)
                left_out.append((path, str(exc)))
                continue
            if st.code in stations:
                reason = f"station {st.code} already read from {stations[st.code].path}"
                log.warning("label: %s left out: %s", path, reason)
                left_out.append((path, reason))
                continue
            stations[st.code] = st
        if not stations:
            why = "; ".join(f"{p.name}: {r}" for p, r in left_out[:5])
            raise LabelError(f"no station images to label in {images_dir}" +
                             (f" ({len(files)} file(s), none usable: {why})" if files else " (no *.nc file; "
                              "run the pipeline up to 'xdisc images' first)"))
        return cls(stations, Path(labels_path), labeller, Path(stacks_dir) if stacks_dir else None, left_out)

    # labels ------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the label file when it changed on disk (another process may append to it; a deleted
        file is created anew, empty)."""
        if not self.labels_path.is_file():
            log.warning("label: %s disappeared; starting it anew", self.labels_path)
            ensure_label_file(self.labels_path)
        st = self.labels_path.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                self._rows = read_label_rows(self.labels_path)
                self._stamp = stamp

    def row(self, station: str, image: int | str) -> dict | None:
        with self._lock:
            return self._rows.get((station, image))

    def has_item(self, station: str, image: int) -> bool:
        return (station, image) in self._index

    def _label_row(self, item: tuple[str, int]) -> dict | None:  # caller holds the lock
        return self._rows.get(item) or self._rows.get((item[0], ALL_IMAGES))

    def label_row(self, station: str, image: int) -> dict | None:
        """The row that labels an image: its own, else its station's (``*``), else None."""
        with self._lock:
            return self._label_row((station, image))

    def first_unlabelled(self, after: tuple[str, int] | None = None) -> tuple[str, int] | None:
        """The first item with neither its own label nor a station label (searching from the one after
        ``after``, wrapping round)."""
        with self._lock:
            start = self._index[after] + 1 if after in self._index else 0
            n = len(self.items)
            for k in range(n):
                item = self.items[(start + k) % n]
                if self._label_row(item) is None:
                    return item
        return None

    def counts(self) -> dict[str, int]:
        """Images per label (own label, else station label), ``labelled``, ``total`` and ``by_station``
        (images labelled only by their station's label)."""
        with self._lock:
            out = {label: 0 for label in LABELS}
            out["by_station"] = 0
            for item in self.items:
                row = self._label_row(item)
                if row is not None:
                    out[row["label"]] += 1
                    out["by_station"] += item not in self._rows
        out["labelled"] = sum(out[label] for label in LABELS)
        out["total"] = len(self.items)
        return out

    def save(self, station: str, image: int | str, label: str, note: str = "") -> dict:
        """Append one label row (fsync-ed) and return it; ``image`` ``"*"`` labels the whole station (its
        images without a label of their own). :class:`LabelError` for an unknown item or label."""
        if label not in LABELS:
            raise LabelError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        if image == ALL_IMAGES:
            if station not in self.stations:
                raise LabelError(f"no station {station}")
        elif not self.has_item(station, image):
            raise LabelError(f"no image {image} of station {station}")
        note = " ".join(str(note).split())[:MAX_NOTE_CHARS]
        row = {"station": station, "image": image, "label": label, "labeller": self.labeller, "time": utc_now(),
               "note": note, "source": PAGE_SOURCE}
        with self._lock:
            append_labels(self.labels_path, [row])
            self._rows[(station, image)] = row
            st = self.labels_path.stat()
            self._stamp = (st.st_size, st.st_mtime_ns)
        log.info("label: %s image %s: %s%s", station, image, label, f" ({note})" if note else "")
        return row

    # neighbours --------------------------------------------------------------

    def neighbour(self, item: tuple[str, int], step: int) -> tuple[str, int] | None:
        i = self._index[item] + step
        return self.items[i] if 0 <= i < len(self.items) else None

    # data --------------------------------------------------------------------

    def stack(self, code: str):
        """The station's stacking result (None when missing; unreadable ones are logged once and treated as missing)."""
        if self.stacks_dir is None:
            return None
        with self._io_lock:
            if code not in self._stacks:
                path = self.stacks_dir / f"{code}.nc"
                ds = None
                if path.is_file():
                    try:
                        ds = _read_stack(path)
                    except (OSError, RuntimeError, ValueError, KeyError) as exc:  # the image can still be labelled
                        log.warning("label: stacking result %s unreadable: %s", path, exc)
                self._stacks[code] = ds
            return self._stacks[code]

    def png(self, station: str, image: int) -> bytes:
        key = (station, image)
        with self._io_lock:
            if key in self._png:
                self._png.move_to_end(key)
                return self._png[key]
        from xdisc.label_app.render import render_png  # numpy/matplotlib: not at CLI start-up

        st = self.stations[station]
        stack = self.stack(station)
        with self._io_lock:  # HDF5 and matplotlib's font cache are not thread-safe
            img = _read_image(st, image)
            title = f"{station}  image {image}"
            if st.kind[image]:
                title += f"  ({st.kind[image]})"
            if st.n_rf[image] >= 0:
                title += f"  n_rf {st.n_rf[image]}"
            data = render_png(img, stack, title)
            self._png[key] = data
            while len(self._png) > PNG_CACHE:
                self._png.popitem(last=False)
        return data
