"""A synthetic set's noise-free receiver functions and labels in memory (:class:`SyntheticSource`), read
without torch: the datasets of training, the calibration draws and the evaluation share it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xdisc.core.artifacts import open_netcdf

HARD_SEDIMENT_KM = 1.5  # behind this much sediment the source's residue reaches several % of P in the X window


def is_look_alike(distractor, sediment_km) -> np.ndarray:
    """Which samples are look-alikes of X: a distractor below the X window ("deep") or a low-velocity zone, or
    HARD_SEDIMENT_KM of sediment or more (``sediment_km``: per sample, or one value for all)."""
    deep = np.isin(np.asarray(distractor).astype(str), ("deep", "lvz"))
    return deep | (np.nan_to_num(np.asarray(sediment_km, float)) >= HARD_SEDIMENT_KM)


# the attributes of a draw file's look-alike flags (xdisc.cnn.redecon, xdisc.cnn.refine)
LOOK_ALIKE_ATTRS = {"long_name": "1: the sample is a look-alike of X (a distractor below the X window, a "
                                 "low-velocity zone or thick sediment), 0: not"}


@dataclass
class SyntheticSource:
    """Noise-free receiver functions of a synthetic dataset, in memory."""

    clean: np.ndarray          # (sample, slowness, time) float32
    label: np.ndarray          # (sample,)
    model: np.ndarray          # (sample,) reference model name
    x_dvs: np.ndarray          # (sample,)
    grid_slowness: np.ndarray
    time_s: np.ndarray
    dt: float
    gaussian_width_hz: float
    x_depth: np.ndarray | None = None  # (sample,) depth of the X conversion (km): top + half the gradient; NaN: none
    hard: np.ndarray | None = None     # (sample,) a look-alike of X: a distractor below the X window or a
    #                                    low-velocity zone, or sediments of HARD_SEDIMENT_KM or more

    @classmethod
    def read(cls, path: str | Path, models: list[str] | None = None) -> SyntheticSource:
        with open_netcdf(path) as ds:
            keep = np.ones(ds.sizes["sample"], bool)
            if models:
                keep = np.isin(ds["model"].values.astype(str), models)
                if not keep.any():
                    raise ValueError(f"{path}: no sample of model(s) {', '.join(models)}")
            time_s = ds["time"].values
            depth = None
            if "x_depth_km" in ds:
                depth = ds["x_depth_km"].values[keep].astype(float)
                if "x_gradient_km" in ds:
                    depth = depth + 0.5 * np.nan_to_num(ds["x_gradient_km"].values[keep].astype(float))
            hard = None
            if "distractor" in ds and "sediment_km" in ds:
                hard = is_look_alike(ds["distractor"].values[keep], ds["sediment_km"].values[keep])
            return cls(clean=np.ascontiguousarray(ds["rf_clean"].values[keep], dtype=np.float32),
                       label=ds["label"].values[keep].astype(int), model=ds["model"].values[keep].astype(str),
                       x_dvs=ds["x_dvs"].values[keep].astype(float), grid_slowness=ds["slowness"].values.astype(float),
                       time_s=time_s, dt=float(time_s[1] - time_s[0]),
                       gaussian_width_hz=float(ds.attrs["rf_gaussian_width_hz"]), x_depth=depth, hard=hard)

    def look_alikes(self, samples) -> np.ndarray:
        """Which of ``samples`` are look-alikes of X (``hard``; none where the set lacks the columns), as int8
        for a draw file."""
        hard = self.hard if self.hard is not None else np.zeros(len(self.label), bool)
        return hard[np.asarray(samples, int)].astype(np.int8)

    def depth_target(self, i: int) -> float:
        """Depth of sample ``i``'s X conversion (km) for the depth head; NaN without X or unknown."""
        if self.x_depth is None or self.label[i] != 1:
            return float("nan")
        return float(self.x_depth[i])
