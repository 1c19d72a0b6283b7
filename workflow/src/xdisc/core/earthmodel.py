"""One-dimensional Earth models: reading, perturbing, layering and earth flattening.

A model is a list of nodes (depth, vp, vs, rho) with velocities varying linearly between
nodes; a depth that appears twice is a first-order discontinuity (the first node is the
value just above it, the second just below), as in TauP's ``.tvel`` and ``.nd`` files.
The three reference models are read from the files that ObsPy's TauP ships, so travel
times, synthetics and moveout corrections all use one source of truth.

Units: depth in km, velocities in km/s, density in g/cm^3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EARTH_RADIUS_KM = 6371.0
REFERENCE_MODELS = ("ak135", "iasp91", "prem")
_TAUP_FILES = {"ak135": "ak135.tvel", "iasp91": "iasp91.tvel", "prem": "prem.nd"}


@dataclass(frozen=True)
class EarthModel:
    """Piecewise-linear 1-D model given at nodes; repeated depths are discontinuities."""

    name: str
    depth_km: np.ndarray
    vp_km_s: np.ndarray
    vs_km_s: np.ndarray
    rho_g_cm3: np.ndarray
    source: str = ""

    def __post_init__(self):
        depth = np.asarray(self.depth_km, dtype=float)
        arrays = [np.asarray(a, dtype=float) for a in (self.vp_km_s, self.vs_km_s, self.rho_g_cm3)]
        if any(a.shape != depth.shape for a in arrays) or depth.ndim != 1 or depth.size < 2:
            raise ValueError(f"model {self.name!r}: depth, vp, vs and rho need the same length (>= 2)")
        if depth[0] != 0.0:
            raise ValueError(f"model {self.name!r}: the first node must be at 0 km depth, not {depth[0]}")
        if np.any(np.diff(depth) < 0):
            raise ValueError(f"model {self.name!r}: depths must not decrease")
        for label, a in zip(("vp", "vs", "rho"), arrays, strict=True):
            if not np.all(np.isfinite(a)) or np.any(a < 0):
                raise ValueError(f"model {self.name!r}: {label} must be finite and non-negative")
        object.__setattr__(self, "depth_km", depth)
        for attr, a in zip(("vp_km_s", "vs_km_s", "rho_g_cm3"), arrays, strict=True):
            object.__setattr__(self, attr, a)

    @property
    def values(self) -> np.ndarray:
        """Node values as an array of shape (node, 3): vp, vs, rho."""
        return np.stack([self.vp_km_s, self.vs_km_s, self.rho_g_cm3], axis=1)

    def discontinuities_km(self) -> np.ndarray:
        """Depths of first-order discontinuities."""
        d = self.depth_km
        return np.unique(d[1:][np.diff(d) == 0])

    def at(self, depth_km, side: str = "below") -> np.ndarray:
        """(vp, vs, rho) at ``depth_km``; at a discontinuity ``side`` picks 'above' or 'below'."""
        return _evaluate(self.depth_km, self.values, np.atleast_1d(np.asarray(depth_km, float)), side)

    def moho_km(self) -> float:
        """Depth of the crust-mantle boundary: the deepest discontinuity above 90 km where
        vp reaches mantle values (>= 7.6 km/s below it)."""
        for d in self.discontinuities_km()[::-1]:
            if d <= 90.0 and self.at(d, "below")[0, 0] >= 7.6:
                return float(d)
        raise ValueError(f"model {self.name!r}: no Moho (discontinuity above 90 km with vp >= 7.6 below)")

    def with_nodes(self, depth_km, values, name: str | None = None) -> EarthModel:
        values = np.asarray(values, dtype=float)
        return EarthModel(name or self.name, depth_km, values[:, 0], values[:, 1], values[:, 2], self.source)


def _evaluate(depth: np.ndarray, values: np.ndarray, z: np.ndarray, side: str) -> np.ndarray:
    """Linear interpolation between nodes with one-sided limits at repeated depths."""
    if side not in ("above", "below"):
        raise ValueError("side must be 'above' or 'below'")
    z = np.clip(z, depth[0], depth[-1])
    if side == "below":
        hi = np.searchsorted(depth, z, side="right")
        hi = np.clip(hi, 1, depth.size - 1)
        lo = hi - 1
    else:
        lo = np.searchsorted(depth, z, side="left") - 1
        lo = np.clip(lo, 0, depth.size - 2)
        hi = lo + 1
    dz = depth[hi] - depth[lo]
    w = np.where(dz > 0, (z - depth[lo]) / np.where(dz > 0, dz, 1.0), 0.0)
    exact_below = (side == "below") & (depth[lo] == z)
    exact_above = (side == "above") & (depth[hi] == z)
    w = np.where(exact_below, 0.0, np.where(exact_above, 1.0, w))
    return values[lo] * (1 - w)[:, None] + values[hi] * w[:, None]


# ----------------------------------------------------------------------------- reading

def taup_model_path(name: str) -> Path:
    """Path of the model file that ObsPy's TauP ships for a reference model."""
    import obspy.taup

    key = name.lower()
    if key not in _TAUP_FILES:
        raise ValueError(f"unknown reference model {name!r}; choose one of {', '.join(REFERENCE_MODELS)} "
                         "or give a model file")
    return Path(obspy.taup.__file__).parent / "data" / _TAUP_FILES[key]


def load_model(name_or_path: str | Path) -> EarthModel:
    """Read a reference model by name (ak135, iasp91, prem) or a model file.

    Files: TauP ``.tvel`` (two header lines, then depth vp vs rho), TauP ``.nd`` (depth vp vs
    rho [qp qs], named discontinuity lines such as ``mantle`` ignored) or a layer table
    (``.csv``/``.txt``/``.dat``: columns thickness_km vp vs rho, last row the half-space).
    """
    text = str(name_or_path)
    if text.lower() in _TAUP_FILES:
        path = taup_model_path(text)
        name = text.lower()
    else:
        path = Path(text)
        name = path.stem
        if not path.is_file():
            if not path.suffix and len(path.parts) == 1:
                raise ValueError(f"unknown reference model {text!r}; choose one of {', '.join(REFERENCE_MODELS)} "
                                 "or give the path of a model file")
            raise FileNotFoundError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".tvel":
        rows = _read_rows(path, skip=2)
    elif suffix == ".nd":
        rows = _read_rows(path, skip=0)
    elif suffix in (".csv", ".txt", ".dat", ".tsv"):
        return _read_layer_table(path, name)
    else:
        raise ValueError(f"model file {path}: unknown format {suffix!r} (use .tvel, .nd, or a layer "
                         "table .csv/.txt with thickness_km, vp, vs, rho)")
    rows = np.asarray(rows, dtype=float)
    if rows.ndim != 2 or rows.shape[1] < 4:
        raise ValueError(f"model file {path}: need at least 4 columns (depth vp vs rho)")
    rho = rows[:, 3]
    if np.nanmax(rho) > 100:  # given in kg/m^3
        rho = rho / 1000.0
    return EarthModel(name, rows[:, 0], rows[:, 1], rows[:, 2], rho, source=str(path))


def _numeric_rows(path: Path, what: str, skip: int = 0, skippable=lambda parts, rows: False) -> list[list[float]]:
    """The first four numbers of every line of ``path`` after ``skip`` lines (commas or blanks between
    them; blank lines and ``#`` comments ignored). A line that is not numbers is an error naming the
    file, line and ``what`` a row holds, unless ``skippable(parts, rows_so_far)``."""
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines()[skip:], start=skip + 1):
        parts = line.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            rows.append([float(p) for p in parts[:4]])
        except ValueError:
            if skippable(parts, rows):
                continue
            raise ValueError(f"{path}:{lineno}: cannot read {line!r} as {what}") from None
    return rows


def _read_rows(path: Path, skip: int) -> list[list[float]]:
    """Rows of a TauP .tvel/.nd file; the named discontinuity lines of .nd (mantle, outer-core, ...) are skipped."""
    return _numeric_rows(path, "depth vp vs rho", skip,
                         lambda parts, rows: len(parts) == 1 and parts[0].replace("-", "").isalpha())


def _read_layer_table(path: Path, name: str) -> EarthModel:
    rows = _numeric_rows(path, "thickness vp vs rho", skippable=lambda parts, rows: not rows)  # header lines
    table = np.asarray(rows, dtype=float)
    if table.ndim != 2 or table.shape[1] != 4 or len(table) < 2:
        raise ValueError(f"{path}: need at least two rows of thickness_km vp vs rho (last = half-space)")
    if np.any(table[:-1, 0] <= 0):
        raise ValueError(f"{path}: layer thicknesses must be positive (the last row is the half-space)")
    tops = np.concatenate([[0.0], np.cumsum(table[:-1, 0])])
    bottoms = tops + np.concatenate([table[:-1, 0], [max(100.0, table[:-1, 0].sum())]])
    depth = np.repeat(np.stack([tops, bottoms], axis=1).ravel(), 1)
    values = np.repeat(table[:, 1:], 2, axis=0)
    if np.nanmax(values[:, 2]) > 100:
        values[:, 2] /= 1000.0
    return EarthModel(name, depth, values[:, 0], values[:, 1], values[:, 2], source=str(path))


# ----------------------------------------------------------------------------- perturbing

def merge_profiles(model: EarthModel, depth_km, factor) -> EarthModel:
    """Multiply the model by a piecewise-linear factor profile (same node conventions).

    ``factor`` has shape (node, 3) (vp, vs, rho factors). Outside the factor's depth range the
    factor is 1. The result has nodes at the union of both node sets, with discontinuities
    wherever either profile jumps.
    """
    fd = np.asarray(depth_km, float)
    fv = np.asarray(factor, float)
    z = np.unique(np.concatenate([model.depth_km, fd[(fd >= 0) & (fd <= model.depth_km[-1])]]))
    above = model.at(z, "above") * _factor_at(fd, fv, z, "above")
    below = model.at(z, "below") * _factor_at(fd, fv, z, "below")
    jump = (z > 0) & ~np.all(np.isclose(above, below, rtol=0, atol=1e-9), axis=1)
    # one node per depth (the value above; at 0 km the value below), two where the profile jumps
    first = np.where((z == 0)[:, None], below, above)
    depth = np.concatenate([z, z[jump]])
    values = np.concatenate([first, below[jump]])
    order = np.argsort(np.concatenate([np.arange(z.size), np.flatnonzero(jump)]), kind="stable")
    return model.with_nodes(depth[order], values[order])


def _factor_at(fd, fv, z, side):
    """Factor profile at depths ``z`` (1 outside its range, on the outer side of its ends)."""
    out = _evaluate(fd, fv, z, side)
    outside = (z < fd[0]) | (z > fd[-1]) | ((z == fd[0]) & (side == "above")) | ((z == fd[-1]) & (side == "below"))
    out[outside] = 1.0
    return out


def replace_crust(model: EarthModel, moho_km: float, vpvs: float, vp_scale: float = 1.0,
                  sediment_km: float = 0.0, sediment_vs_km_s: float = 1.5,
                  sediment_vpvs: float = 2.2, sediment_rho_g_cm3: float = 2.2) -> EarthModel:
    """Replace the crust of ``model`` by its own crust stretched to ``moho_km``.

    The reference crustal layers keep their relative thicknesses; vp is scaled by
    ``vp_scale`` and vs = vp / vpvs; density is kept. The mantle below the new Moho is the
    reference mantle (extended upwards with its uppermost value for a thinner crust). An
    optional sediment layer of ``sediment_km`` sits on top.
    """
    ref_moho = model.moho_km()
    if not 5.0 <= moho_km < 150.0:
        raise ValueError(f"moho_km must be within 5-150 km, got {moho_km}")
    if not 1.4 < vpvs < 3.0:
        raise ValueError(f"crustal vp/vs must be within 1.4-3.0, got {vpvs}")
    crust = model.depth_km <= ref_moho
    cd = model.depth_km[crust]
    cv = model.values[crust].copy()
    cd, cv = cd[:-1], cv[:-1]  # drop the node just below the Moho (mantle side)
    scale = moho_km / ref_moho
    cd = cd * scale
    cd[-1] = moho_km  # the crust's last node (the reference Moho, above) lands exactly on the new Moho
    cv[:, 0] *= vp_scale
    cv[:, 1] = cv[:, 0] / vpvs
    if sediment_km > 0:
        if sediment_km >= moho_km:
            raise ValueError("sediment thicker than the crust")
        keep = cd > sediment_km
        top = _evaluate(cd, cv, np.array([sediment_km]), "below")
        sed = np.array([sediment_vs_km_s * sediment_vpvs, sediment_vs_km_s, sediment_rho_g_cm3])
        cd = np.concatenate([[0.0, sediment_km, sediment_km], cd[keep]])
        cv = np.concatenate([[sed, sed], top, cv[keep]])
    mantle_top = max(moho_km, ref_moho)
    below = model.depth_km > mantle_top
    md = np.concatenate([[moho_km], model.depth_km[below]])
    mv = np.concatenate([model.at(mantle_top, "below"), model.values[below]])
    return model.with_nodes(np.concatenate([cd, md]), np.concatenate([cv, mv]))


def nafe_drake_density(vp_km_s):
    """Density (g/cm^3) of crustal rock from vp by the Nafe-Drake curve (Brocher 2005, eq. 1)."""
    vp = np.asarray(vp_km_s, float)
    return 1.6612 * vp - 0.4721 * vp**2 + 0.0671 * vp**3 - 0.0043 * vp**4 + 0.000106 * vp**5


def layer_crust(model: EarthModel, conrad_fraction: float, vp_ratio: float, sediment_km: float = 0.0) -> EarthModel:
    """Replace the crystalline crust of ``model`` (below ``sediment_km``, above its Moho) by two layers.

    The upper layer reaches ``conrad_fraction`` of the crystalline crust's thickness (the Conrad); the
    lower layer's vp is ``vp_ratio`` times the upper's. Both keep the crust's vp/vs (that just above the
    Moho), and their vp are set so that the crust's vertical P travel time is that of ``model``, so the
    Moho's Ps delay is the same (vs = vp / vp/vs). Density follows vp (:func:`nafe_drake_density`). The
    sediment above and the mantle below stay as they are."""
    if not 0.0 < conrad_fraction < 1.0:
        raise ValueError(f"conrad_fraction must be within (0, 1), got {conrad_fraction}")
    if not 0.5 < vp_ratio < 2.0:
        raise ValueError(f"the lower crust's vp ratio must be within 0.5-2, got {vp_ratio}")
    moho = model.moho_km()
    if not 0.0 <= sediment_km < moho:
        raise ValueError(f"sediment ({sediment_km} km) must lie above the Moho ({moho} km)")
    z = sediment_km + (np.arange(4000) + 0.5) * (moho - sediment_km) / 4000  # midpoints of thin slices
    slowness = float(np.mean(1.0 / model.at(z, "below")[:, 0]))  # mean vertical P slowness of the crust
    above_moho = model.at(moho, "above")[0]
    vpvs = above_moho[0] / above_moho[1]
    f = conrad_fraction
    vp_upper = (f + (1.0 - f) / vp_ratio) / slowness
    vp_lower = vp_upper * vp_ratio
    conrad = sediment_km + f * (moho - sediment_km)
    upper = [vp_upper, vp_upper / vpvs, float(nafe_drake_density(vp_upper))]
    lower = [vp_lower, vp_lower / vpvs, float(nafe_drake_density(vp_lower))]
    d, v = model.depth_km, model.values
    top = d < sediment_km  # the sediment's nodes (none without sediment)
    sed_depth = [sediment_km] if sediment_km > 0 else []  # its base, then the crust's top at the same depth
    sed_value = list(model.at(sediment_km, "above")) if sediment_km > 0 else []
    depth = np.concatenate([d[top], sed_depth, [sediment_km, conrad, conrad, moho, moho], d[d > moho]])
    values = np.concatenate([v[top].reshape(-1, 3), np.reshape(sed_value, (-1, 3)), [upper, upper, lower, lower],
                             model.at(moho, "below"), v[d > moho]])
    return model.with_nodes(depth, values)


@dataclass(frozen=True)
class Discontinuity:
    """A velocity jump inserted into a model.

    ``dvs``/``dvp``/``drho`` are fractional changes (0.03 = +3 %) reached ``gradient_km``
    below ``depth_km`` (0 = sharp). ``style`` says what happens below:

    - ``taper``: the perturbation decreases linearly back to zero at ``bottom_km``
      (by default the next discontinuity below, e.g. the 410), leaving that one intact;
    - ``constant``: the perturbation stays until ``bottom_km`` (shrinks the 410's jump);
    - ``layer``: the perturbation ends sharply ``thickness_km`` below the top (a lens with
      a negative conversion at its base).
    """

    depth_km: float
    dvs: float
    dvp: float
    drho: float = 0.0
    gradient_km: float = 0.0
    style: str = "taper"
    thickness_km: float = 40.0
    bottom_km: float | None = None


def insert_discontinuity(model: EarthModel, disc: Discontinuity) -> EarthModel:
    """Return ``model`` with the velocity jump ``disc`` inserted."""
    top = float(disc.depth_km)
    ramp = max(float(disc.gradient_km), 0.0)
    full = np.array([1 + disc.dvp, 1 + disc.dvs, 1 + disc.drho])
    one = np.ones(3)
    if disc.style == "layer":
        bottom = top + max(disc.thickness_km, ramp + 1.0)
        end_value = full
    elif disc.style in ("taper", "constant"):
        bottom = disc.bottom_km
        if bottom is None:
            deeper = model.discontinuities_km()
            deeper = deeper[deeper > top + ramp + 1.0]
            bottom = float(deeper[0]) if deeper.size else float(model.depth_km[-1])
        end_value = one if disc.style == "taper" else full
    else:
        raise ValueError(f"unknown discontinuity style {disc.style!r} (taper, constant or layer)")
    if not 0 < top < bottom <= model.depth_km[-1] or top + ramp >= bottom:
        raise ValueError(f"discontinuity at {top} km (+{ramp} km ramp) does not fit above {bottom} km")
    if ramp > 0:
        fd = [top, top + ramp, bottom, bottom]
        fv = [one, full, end_value, one]
    else:
        fd = [top, top, bottom, bottom]
        fv = [one, full, end_value, one]
    return merge_profiles(model, fd, fv)


# ----------------------------------------------------------------------------- layering

@dataclass(frozen=True)
class LayerStack:
    """Homogeneous layers over a half-space (the last row has thickness 0 and is the half-space)."""

    thickness_km: np.ndarray
    vp_km_s: np.ndarray
    vs_km_s: np.ndarray
    rho_g_cm3: np.ndarray
    flattened: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.thickness_km.size)

    @property
    def top_km(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.thickness_km[:-1])])


def discretize(model: EarthModel, max_depth_km: float = 700.0, max_thickness_km: float = 25.0,
               max_velocity_step: float = 0.01, flatten: bool = True,
               radius_km: float = EARTH_RADIUS_KM) -> LayerStack:
    """Split the model into homogeneous layers down to ``max_depth_km`` (the half-space).

    Each linear segment between nodes is cut into equal sub-layers no thicker than
    ``max_thickness_km`` and with a relative velocity change (of the flattened profile when
    ``flatten``) no larger than ``max_velocity_step`` per sub-layer; each sub-layer takes the
    profile's value at its mid-depth. With ``flatten`` the earth-flattening transformation
    is applied: z_f = R ln(R/r), v_f = v R/r, rho_f = rho (r/R)^(l+2) with l = -1, the choice
    (after G. Randall's EFT) that keeps impedance products rho*v unchanged, so conversion and
    reflection coefficients at an interface equal the spherical ones.
    Adjacent identical layers are merged.
    """
    if max_thickness_km <= 0 or max_velocity_step <= 0:
        raise ValueError("max_thickness_km and max_velocity_step must be positive")
    if not 0 < max_depth_km <= model.depth_km[-1]:
        raise ValueError(f"max_depth_km {max_depth_km} outside the model (0-{model.depth_km[-1]} km)")
    d = model.depth_km
    breaks = np.unique(np.concatenate([d[d < max_depth_km], [max_depth_km]]))
    z0, z1 = breaks[:-1], breaks[1:]
    v0 = _flat_values(model.at(z0, "below"), z0, flatten, radius_km)[:, :2]
    v1 = _flat_values(model.at(z1, "above"), z1, flatten, radius_km)[:, :2]
    rel = np.max(np.abs(v1 - v0) / np.maximum(np.minimum(v0, v1), 1e-6), axis=1)
    n_sub = np.maximum(np.ceil((z1 - z0) / max_thickness_km - 1e-9), np.ceil(rel / max_velocity_step - 1e-9))
    n_sub = np.maximum(n_sub, 1).astype(int)
    seg = np.repeat(np.arange(z0.size), n_sub)
    k = np.arange(seg.size) - np.repeat(np.cumsum(n_sub) - n_sub, n_sub)
    step = (z1 - z0)[seg] / n_sub[seg]
    tops = z0[seg] + k * step
    bots = np.where(k == n_sub[seg] - 1, z1[seg], tops + step)
    mid = 0.5 * (tops + bots)
    vals = _flat_values(model.at(mid, "below"), mid, flatten, radius_km)
    h = radius_km * np.log((radius_km - tops) / (radius_km - bots)) if flatten else bots - tops
    half = _flat_values(model.at(max_depth_km, "below"), np.array([max_depth_km]), flatten, radius_km)
    h = np.concatenate([h, [0.0]])
    vals = np.concatenate([vals, half])
    # merge neighbours with identical properties (not the half-space)
    layers, lv = h[:-1], vals[:-1]
    new_group = np.r_[True, ~np.all(np.isclose(lv[1:], lv[:-1], rtol=1e-12, atol=0), axis=1)]
    group = np.cumsum(new_group) - 1
    keep_h = np.r_[np.bincount(group, weights=layers), 0.0]
    v = np.concatenate([lv[new_group], vals[-1:]])
    return LayerStack(keep_h, v[:, 0], v[:, 1], v[:, 2], flattened=flatten,
                      meta={"model": model.name, "max_depth_km": max_depth_km})


def _flat_values(values, depth, flatten, radius_km):
    values = np.atleast_2d(np.asarray(values, float)).copy()
    if not flatten:
        return values
    r = radius_km - np.atleast_1d(depth)
    values[:, 0] *= radius_km / r
    values[:, 1] *= radius_km / r
    values[:, 2] *= r / radius_km
    return values
