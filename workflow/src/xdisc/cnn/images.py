"""Receiver-function images: one code path for synthetic and real stations.

An image is built from a set of receiver functions of one station (or a subset of them):
each trace is divided by its direct P, mapped to depth by 1-D ray theory at its own
slowness (moveout correction, :func:`xdisc.core.moveout.to_depth`), and the traces are stacked
per slowness bin (``n_slowness_bins`` bins over ``slowness_range_s_per_km``) with
inverse-variance weights from their pre-P noise. The bins are the cells of the synthetic
slowness grid (``synthetics.slowness_s_per_km`` at their centres; the configuration checks it):
a synthetic trace, snapped to its nearest grid slowness, lands in the bin that a real trace of
its slowness lands in, so synthetic and real images fill the same bins. Two channels:

* ``amplitude``: the weighted mean per bin (fraction of direct P; 0 where a bin is empty or
  below the turning point of P);
* ``noise``: the standard error of that mean expected from the traces' pre-P noise,
  sqrt(sum w_i^2 sigma_i^2) / sum w_i (= 1/sqrt(sum 1/sigma_i^2) for inverse-variance weights),
  at most ``max_noise`` (also the value of empty bins): it tells the classifier how much to trust
  a bin, and unlike a t-value it does not saturate for clean data or many traces.

Images have shape (channel, slowness_bin, depth). A station gets several: image 0 uses all
its receiver functions, the others seeded random subsets (``subset_fraction``) and, with
enough data, back-azimuth quadrants, so the CNN's per-station probability has a spread.

Synthetic stations for training (:func:`xdisc.synth.stations.synthetic_station`) draw receiver
functions from a sample's noise-free set (slowness grid of the synthetic dataset) at distances
uniform in 30-90 deg, add noise per trace and augment, then go through the same :func:`build_image`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from xdisc.config import config_hash
from xdisc.core.artifacts import as_float32, provenance_attrs, usable_receiver_functions
from xdisc.core.deconvolution import noise_sigma, normalise_by_p
from xdisc.core.earthmodel import EarthModel, load_model
from xdisc.core.moveout import delay_table

CHANNELS = ("amplitude", "noise")


@dataclass(frozen=True)
class ImageSettings:
    """The ``images`` configuration section."""

    n_slowness_bins: int = 9
    slowness_range_s_per_km: tuple = (0.0375, 0.0825)
    depth_range_km: tuple = (0.0, 800.0)
    depth_step_km: float = 2.5
    images_per_station: int = 8
    subset_fraction: float = 0.7
    min_rf: int = 3
    min_rf_per_sector: int = 40
    max_noise: float = 0.5
    weighting: str = "noise"
    noise_coda_s: tuple | None = (85.0, 120.0)
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict) -> ImageSettings:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()})

    @property
    def depths_km(self) -> np.ndarray:
        lo, hi = self.depth_range_km
        return np.arange(lo, hi + 0.5 * self.depth_step_km, self.depth_step_km)

    @property
    def bin_edges(self) -> np.ndarray:
        return np.linspace(*self.slowness_range_s_per_km, self.n_slowness_bins + 1)

    @property
    def bin_centres(self) -> np.ndarray:
        e = self.bin_edges
        return 0.5 * (e[1:] + e[:-1])

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(CHANNELS), self.n_slowness_bins, self.depths_km.size)


class DepthMapper:
    """Moveout correction to depth with the delay table of each slowness computed once."""

    def __init__(self, model: EarthModel, depths_km: np.ndarray, decimals: int = 5):
        self.model = model
        self.depths_km = np.asarray(depths_km, float)
        self.decimals = decimals
        self._rows: dict[float, np.ndarray] = {}

    def table(self, slowness: np.ndarray) -> np.ndarray:
        """Ps delay (s) from every depth, per slowness: (n, depth); NaN below P's turning point."""
        keys = np.round(np.asarray(slowness, float), self.decimals)
        new = [k for k in np.unique(keys) if k not in self._rows]
        if new:
            rows = delay_table(self.model, self.depths_km, np.asarray(new))
            self._rows.update(zip(new, rows, strict=True))
        return np.stack([self._rows[k] for k in keys]) if keys.size else np.zeros((0, self.depths_km.size))

    def __call__(self, rf: np.ndarray, time_s: np.ndarray, slowness: np.ndarray) -> np.ndarray:
        """Traces (n, time) sampled at their Ps delay from each depth: (n, depth), NaN outside."""
        delays = self.table(slowness)
        t0, dt, nt = float(time_s[0]), float(time_s[1] - time_s[0]), time_s.size
        pos = (delays - t0) / dt
        idx = np.clip(np.floor(np.nan_to_num(pos, nan=-1.0)).astype(int), 0, nt - 2)
        w = pos - idx
        rows = np.arange(rf.shape[0])[:, None]
        out = rf[rows, idx] * (1.0 - w) + rf[rows, idx + 1] * w
        out[~((pos >= 0) & (pos <= nt - 1))] = np.nan
        return out


def build_image(rf: np.ndarray, time_s: np.ndarray, slowness: np.ndarray, mapper: DepthMapper,
                settings: ImageSettings, normalised: bool = False,
                weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image (channel, slowness_bin, depth) of receiver functions (n, time) and RFs per bin.

    ``normalised``: the traces are already divided by their direct P. ``weights``: per-trace
    weights (default: from ``settings.weighting``)."""
    rf = np.asarray(rf, float)
    slowness = np.asarray(slowness, float)
    k = settings.n_slowness_bins
    image = np.zeros((len(CHANNELS), k, mapper.depths_km.size), np.float32)
    counts = np.zeros(k, int)
    b = np.digitize(slowness, settings.bin_edges) - 1
    use = (b >= 0) & (b < k) & np.all(np.isfinite(rf), axis=1)
    if not use.any():
        return image, counts
    rf, slowness, b = rf[use], slowness[use], b[use]
    norm = rf if normalised else normalise_by_p(rf, time_s)
    sigma = noise_sigma(norm, time_s, coda_s=settings.noise_coda_s)
    sigma = np.where(np.isfinite(sigma), sigma, settings.max_noise)
    if weights is None:
        weights = 1.0 / sigma**2 if settings.weighting == "noise" else np.ones(len(norm))
    else:
        weights = np.asarray(weights, float)[use]
    depth = mapper(norm, time_s, slowness)                         # (n, depth)
    finite = np.isfinite(depth)
    x = np.where(finite, depth, 0.0)
    onehot = (b[None, :] == np.arange(k)[:, None]).astype(float)  # (bin, n)
    wb = onehot * weights[None, :]
    sw = wb @ finite                                               # (bin, depth) sum of weights
    n_fin = onehot @ finite
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (wb @ x) / sw
        stderr = np.sqrt((wb**2 * sigma[None, :] ** 2) @ finite) / sw
    image[0] = np.where(n_fin > 0, np.nan_to_num(mean), 0.0)
    image[1] = np.where(n_fin > 0, np.minimum(np.nan_to_num(stderr, nan=settings.max_noise), settings.max_noise),
                        settings.max_noise)
    counts = onehot.sum(axis=1).astype(int)
    return image, counts


@dataclass
class StationImages:
    images: np.ndarray      # (image, channel, slowness_bin, depth)
    n_rf: np.ndarray        # (image,) receiver functions used
    counts: np.ndarray      # (image, slowness_bin)
    kind: list[str]         # "all", "subset", "baz 0-90" ...


def station_images(rf: np.ndarray, time_s: np.ndarray, slowness: np.ndarray, mapper: DepthMapper,
                   settings: ImageSettings, back_azimuth_deg: np.ndarray | None = None,
                   seed: int | None = None) -> StationImages:
    """All images of one station: every RF, seeded random subsets, back-azimuth quadrants."""
    rf = np.asarray(rf, float)
    n = rf.shape[0]
    shape = settings.shape
    if n < settings.min_rf:
        return StationImages(np.zeros((0, *shape), np.float32), np.zeros(0, int),
                             np.zeros((0, shape[1]), int), [])
    norm = normalise_by_p(rf, time_s)
    weights = None if settings.weighting == "noise" else np.ones(n)
    rng = np.random.default_rng(settings.seed if seed is None else seed)
    subsets: list[tuple[str, np.ndarray]] = [("all", np.arange(n))]
    size = max(settings.min_rf, round(settings.subset_fraction * n))
    for _ in range(settings.images_per_station - 1):
        subsets.append(("subset", np.sort(rng.choice(n, size=min(size, n), replace=False))))
    if back_azimuth_deg is not None and settings.min_rf_per_sector > 0:
        baz = np.mod(np.asarray(back_azimuth_deg, float), 360.0)
        for lo in range(0, 360, 90):
            sel = np.flatnonzero((baz >= lo) & (baz < lo + 90))
            if sel.size >= settings.min_rf_per_sector:
                subsets.append((f"baz {lo}-{lo + 90}", sel))
    images, counts = zip(*(build_image(norm[sel], time_s, slowness[sel], mapper, settings, normalised=True,
                                       weights=None if weights is None else weights[sel]) for _, sel in subsets),
                            strict=True)
    return StationImages(np.stack(images), np.array([len(sel) for _, sel in subsets]), np.stack(counts),
                         [kind for kind, _ in subsets])


def images_dataset(st_images, station: dict, settings: ImageSettings, rf_attrs: dict | None = None,
                   n_rf_station: int | None = None) -> xr.Dataset:
    """NetCDF layout of a station's images (``xdisc images``). ``n_rf_station``: the station's usable
    receiver functions (attribute ``n_rf_station``; also when they are too few for an image)."""
    n = len(st_images.n_rf)
    ds = xr.Dataset(
        {
            "rf_image": (("image", "channel", "slowness_bin", "depth"), as_float32(st_images.images),
                      {"units": "1", "long_name": "receiver-function image",
                       "description": "amplitude: moveout-corrected stack per slowness bin / direct P; "
                                      "noise: standard error of that stack from the pre-P noise"}),
            "n_rf": ("image", np.asarray(st_images.n_rf, int), {"units": "1", "long_name": "receiver functions used"}),
            "bin_count": (("image", "slowness_bin"), np.asarray(st_images.counts, int),
                          {"units": "1", "long_name": "receiver functions per slowness bin"}),
            "kind": ("image", np.array(st_images.kind, dtype=object),
                     {"long_name": "all, subset or back-azimuth sector"}),
        },
        coords={
            "image": ("image", np.arange(n), {"long_name": "image index (0 = every receiver function)"}),
            "channel": ("channel", np.array(CHANNELS, dtype=object)),
            "slowness_bin": ("slowness_bin", settings.bin_centres, {"units": "s km-1", "long_name": "bin centre"}),
            "depth": ("depth", settings.depths_km, {"units": "km", "long_name": "conversion depth"}),
            "network": ((), station["network"]), "station": ((), station["station"]),
            "latitude": ((), float(station.get("latitude", np.nan)), {"units": "degrees_north"}),
            "longitude": ((), float(station.get("longitude", np.nan)), {"units": "degrees_east"}),
        },
    )
    ds.attrs.update(provenance_attrs(
        title=f"receiver-function images of {station['network']}.{station['station']}",
        source="xdisc images: moveout-corrected slowness-bin stacks", seed=settings.seed,
        config_hash=config_hash(settings.__dict__)))
    if n_rf_station is not None:
        ds.attrs["n_rf_station"] = int(n_rf_station)
    return ds


def images_file(rf_path, config: dict) -> tuple[xr.Dataset, int]:
    """The images of one station's file (``xdisc rf``; its usable receiver functions as for stacking) as
    :func:`images_dataset`, and the number of receiver functions used."""
    settings = ImageSettings.from_config(config["images"])
    rf_ds, keep, station = usable_receiver_functions(rf_path, config["stacking"]["use_qc"])
    mapper = DepthMapper(load_model(config["earth_model"]), settings.depths_km)
    imgs = station_images(rf_ds["rf"].values[keep], rf_ds["time"].values, rf_ds["slowness_s_per_km"].values[keep],
                          mapper, settings, rf_ds["back_azimuth_deg"].values[keep])
    n_rf = int(keep.sum())
    return images_dataset(imgs, station, settings, n_rf_station=n_rf), n_rf
