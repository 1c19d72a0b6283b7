"""Datasets of the CNN: synthetic station images drawn on the fly from a synthetic set, images already
built (real stations), the pretraining data module, and the labelled real images of fine-tuning.

:class:`SyntheticImages` turns each sample of a synthetic dataset (noise-free receiver functions on a
slowness grid) into a synthetic station image on the fly: a fresh noisy, augmented draw every epoch
(seeded by seed, epoch and sample), a fixed draw for validation and test. :class:`XDataModule` reads
the NetCDF files in ``setup`` and splits samples with a seeded permutation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
from xdisc.cnn.synthetic_set import SyntheticSource
from xdisc.core.artifacts import open_netcdf
from xdisc.core.deconvolution import RFSettings
from xdisc.core.earthmodel import load_model
from xdisc.core.verdicts import ABSENT, PRESENT
from xdisc.labels import labels_for_images
from xdisc.synth.stations import StationDraw, synthetic_station
from xdisc.synth.synthetics import load_noise_pool

LABELS = {PRESENT: 1, ABSENT: 0}


class SyntheticImages(Dataset):
    """Synthetic station images of some samples: a new noise draw per epoch unless ``fixed``."""

    def __init__(self, source: SyntheticSource, indices: np.ndarray, settings: ImageSettings, draw: StationDraw,
                 model_name: str, seed: int, fixed: bool = False, noise_pool: np.ndarray | None = None,
                 n_rf: int | None = None, snr=None):
        self.source, self.indices = source, np.asarray(indices)
        self.settings, self.draw, self.seed, self.fixed = settings, draw, seed, fixed
        self.model_name, self.noise_pool, self.n_rf, self.snr = model_name, noise_pool, n_rf, snr
        self.epoch = 0
        self._mapper: DepthMapper | None = None
        self._cache: dict[int, np.ndarray] = {}  # fixed draws are built once

    def __len__(self) -> int:
        return self.indices.size

    def image(self, j: int, epoch: int) -> np.ndarray:
        if self._mapper is None:  # built lazily: cheap to pickle into DataLoader workers
            self._mapper = DepthMapper(load_model(self.model_name), self.settings.depths_km)
        i = int(self.indices[j])
        s = self.source
        rng = np.random.default_rng([self.seed, epoch, i])
        rf, p = synthetic_station(s.clean[i], s.grid_slowness, s.time_s, s.dt, s.gaussian_width_hz, self.draw, rng,
                                  n_rf=self.n_rf, snr=self.snr, noise_pool=self.noise_pool,
                                  model_name=self.model_name)
        return build_image(rf, s.time_s, p, self._mapper, self.settings)[0]

    def __getitem__(self, j: int):
        i = int(self.indices[j])
        if self.fixed:
            if j not in self._cache:
                self._cache[j] = self.image(j, 10**6)
            img = self._cache[j]
        else:
            img = self.image(j, self.epoch)
        label, depth = float(self.source.label[i]), self.source.depth_target(i)
        return torch.from_numpy(img), torch.tensor(label), torch.tensor(depth)


def held_out_images(source: SyntheticSource, settings: ImageSettings, draw: StationDraw, model_name: str, seed: int,
                noise_pool: np.ndarray | None = None) -> SyntheticImages:
    """The held-out test images of pretraining: every sample of ``source``, one fixed draw seeded by
    ``seed + 2`` (``cnn.seed``), as :class:`XDataModule` makes them and the shipped network is scored on."""
    return SyntheticImages(source, np.arange(source.label.size), settings, draw, model_name, seed + 2, fixed=True,
                           noise_pool=noise_pool)


class ArrayImages(Dataset):
    """Images already built (real stations): (image, channel, bin, depth) and labels; items are (image,
    label, X depth), the depth NaN (unknown), as every dataset of the CNN gives them."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, j: int):
        return self.images[j], self.labels[j], torch.tensor(float("nan"))


def _worker_init(_):
    torch.set_num_threads(1)


class XDataModule(L.LightningDataModule):
    """Synthetic pretraining data: seeded train/validation split of one file, a separate test file."""

    def __init__(self, train_path: str, test_path: str | None, settings: ImageSettings, draw: StationDraw,
                 model_name: str, seed: int, batch_size: int = 64, val_fraction: float = 0.15,
                 train_models: list[str] | None = None, test_models: list[str] | None = None,
                 noise_file: str | None = None, num_workers: int = 0, rf: RFSettings | None = None,
                 train_snr: tuple | None = None):
        super().__init__()
        self.train_path, self.test_path = train_path, test_path
        self.settings, self.draw, self.model_name, self.seed = settings, draw, model_name, seed
        self.batch_size, self.val_fraction, self.num_workers = batch_size, val_fraction, num_workers
        self.train_models, self.test_models, self.noise_file, self.rf = train_models, test_models, noise_file, rf
        self.train_snr = tuple(train_snr) if train_snr else None

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        pool = load_noise_pool(self.noise_file, self.rf) if self.noise_file else None
        src = SyntheticSource.read(self.train_path, self.train_models)
        order = np.random.default_rng([self.seed, 7]).permutation(src.label.size)
        n_val = max(1, round(self.val_fraction * order.size))
        common = dict(settings=self.settings, model_name=self.model_name, noise_pool=pool)
        train_draw = replace(self.draw, snr=self.train_snr) if self.train_snr else self.draw
        self.train_set = SyntheticImages(src, np.sort(order[n_val:]), seed=self.seed, draw=train_draw, **common)
        self.val_set = SyntheticImages(src, np.sort(order[:n_val]), seed=self.seed + 1, fixed=True, draw=train_draw,
                                       **common)
        self.test_set = None
        if self.test_path:
            test = SyntheticSource.read(self.test_path, self.test_models)
            self.test_set = held_out_images(test, self.settings, self.draw, self.model_name, self.seed, pool)

    def _loader(self, data, shuffle: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, generator=gen if shuffle else None,
                          num_workers=self.num_workers, worker_init_fn=_worker_init if self.num_workers else None)

    def train_dataloader(self):
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        return self._loader(self.val_set, False)

    def test_dataloader(self):
        return self._loader(self.test_set, False)


def read_station_images(path: str | Path) -> dict:
    """Images of one station (from ``xdisc images``) as plain arrays."""
    with open_netcdf(path) as ds:
        n_rf = ds["n_rf"].values
        # the station's usable receiver functions, also where they were too few for an image (older files:
        # those of the image of every receiver function)
        n_station = int(ds.attrs.get("n_rf_station", n_rf[0] if len(n_rf) else 0))
        return {"station": f"{ds['network'].item()}.{ds['station'].item()}", "images": ds["rf_image"].values,
                "n_rf": n_rf, "n_rf_station": n_station, "latitude": float(ds["latitude"]),
                "longitude": float(ds["longitude"])}


@dataclass
class LabelledImages:
    """Images with a present/absent label, from :func:`labelled_images`."""

    x: np.ndarray          # (image, channel, bin, depth)
    y: np.ndarray          # 1 present, 0 absent
    groups: np.ndarray     # station code of each image (for station-grouped folds)
    source: np.ndarray     # source column of the label row of each image
    n_images: dict         # images of every station read, labelled or not: {NET.STA: count}


def labelled_images(image_files: list[str | Path], labels: dict) -> LabelledImages:
    """Images with a present/absent label (``labels``: ``{(station, image): row}`` with rows of
    :func:`xdisc.labels.read_label_rows`, or plain label strings), station labels (``"*"``) expanded
    to every image of the station and overridden by labels of single images."""
    xs, ys, groups, sources, n_images = [], [], [], [], {}
    for path in image_files:
        st = read_station_images(path)
        n_images[st["station"]] = n_images.get(st["station"], 0) + len(st["images"])
        for j, row in enumerate(labels_for_images(labels, st["station"], len(st["images"]))):
            lab = row["label"] if isinstance(row, dict) else row
            if lab in LABELS:
                xs.append(st["images"][j])
                ys.append(LABELS[lab])
                groups.append(st["station"])
                sources.append(row.get("source", "") if isinstance(row, dict) else "")
    if not xs:
        return LabelledImages(np.zeros((0,)), np.zeros(0, int), np.zeros(0, str), np.zeros(0, str), n_images)
    return LabelledImages(np.stack(xs), np.array(ys), np.array(groups), np.array(sources), n_images)
