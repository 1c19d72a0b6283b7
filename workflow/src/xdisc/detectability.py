"""What X could this station have seen? Injection tests on a station's own receiver functions.

Stage ``xdisc detectability`` (sits above ``stack/`` and ``cnn/``, like :mod:`xdisc.evaluate`). For one
station it adds synthetic X conversions to the station's real, QC-passed receiver functions and asks both
detectors, exactly as the pipeline runs them, whether X is there:

- **the X conversion** of each grid point (depth, gradient, dVs) is the noise-free receiver function of the
  run's earth model with that X minus the one without (xdisc's own propagator and deconvolution, at a grid
  of slownesses; :func:`x_kernels`); each event gets it at its own slowness (linear interpolation between
  grid slownesses);
- **draws**: the station's noise (its radial residuals: each receiver function minus its neighbours in
  slowness) with a random polarity per event (a new noise realisation of the same events), added to a
  noise-free structure without X whose crust is like the station's (the no-X samples of the run's
  synthetic test set nearest the station's mean receiver function in the first 20 s; the earth model's
  without a test set), plus the X of one grid point;
  the stacking verdict (depth stack, bootstrap, vespagram moveout check, exactly
  :func:`xdisc.stack.stacking.stack_station`, here on precomputed depth traces and vespagram rows, which
  are linear in the traces) and the CNN verdict (the station's image of all events, its calibrated present
  threshold) count a detection when ``present``, and an X *kept* when their verdict is not ``absent``
  (the CNN's probability above the station's absent threshold, the stacking's not ``absent``);
- **false alarms**: the same draws on structures known to lack X: the no-X samples of the run's synthetic
  test set (their crusts, sediments, distractors and sources; one per draw) at the station's slownesses,
  plus the station's noise;
- **dvs90**: the smallest dVs of the grid detected in at least ``detection_probability`` of the draws,
  averaged over the grid's depths and gradients (NaN: not even the largest);
- **excluded dVs**: the same for X kept, i.e. the smallest X that the method's ``absent`` rules out: X
  this strong would not have been called ``absent`` in ``detection_probability`` of the draws. It is what
  an ``absent`` verdict claims, so it (not dvs90) decides whether that verdict stands
  (:func:`xdisc.report.compare.compare_verdicts`). For the stacking, whose only verdicts with a 410 are
  ``present`` and ``absent``, the two nearly agree; so do the CNN's where its absent threshold is at or
  above its present one (no ``undetermined`` band: about half the stations of the independent test
  networks, all of the demo's), and elsewhere the excluded dVs can lie below dvs90.
"""

from __future__ import annotations

import functools
import logging
import time as _time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from xdisc.config import config_hash
from xdisc.core.artifacts import as_float32, provenance_attrs
from xdisc.core.deconvolution import RFSettings, direct_p, noise_weights, normalise_by_p
from xdisc.core.earthmodel import Discontinuity, EarthModel, insert_discontinuity
from xdisc.core.moveout import delay_table, to_depth
from xdisc.core.verdicts import ABSENT, PRESENT
from xdisc.stack.stacking import bootstrap_means, depth_model, verdict_of_stack, weighted_mean
from xdisc.synth.noise_pool import radial_residuals
from xdisc.synth.synthetics import Layering, receiver_functions

log = logging.getLogger(__name__)

METHODS = ("stacking", "cnn")


@dataclass(frozen=True)
class InjectionGrid:
    depths_km: tuple = (260.0, 300.0, 340.0)
    gradients_km: tuple = (0.0, 15.0)
    dvs: tuple = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06)
    draws: int = 10
    false_alarm_draws: int = 30
    detection_probability: float = 0.9
    kernel_slowness_s_per_km: tuple = tuple(np.round(np.arange(0.040, 0.0801, 0.005), 4))
    seed: int = 20261130

    @classmethod
    def from_config(cls, cfg: dict) -> InjectionGrid:
        keys = ("depths_km", "gradients_km", "dvs", "draws", "false_alarm_draws", "detection_probability", "seed")
        return cls(**{k: tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k] for k in keys if k in cfg})


# ----------------------------------------------------------------------------- kernels

def x_kernels(model: EarthModel, grid: InjectionGrid, rf: RFSettings, layering: Layering
              ) -> tuple[np.ndarray, np.ndarray]:
    """X conversions (depth, gradient, dvs, slowness, time), each the normalised receiver function of
    ``model`` with that X minus the one without (the whole change: Ps, its multiples, and the earlier
    410 and 660 behind a faster mantle); and that one without X (slowness, time)."""
    slowness = np.asarray(grid.kernel_slowness_s_per_km, float)
    stacks = [layering.apply(model)]
    for depth in grid.depths_km:
        for gradient in grid.gradients_km:
            for dvs in grid.dvs:
                x = Discontinuity(float(depth), dvs, 0.5 * dvs, 0.3 * dvs, float(gradient), "taper")
                stacks.append(layering.apply(insert_discontinuity(model, x)))
    t = rf.time_axis()
    out = normalise_by_p(receiver_functions(stacks, slowness, rf), t)
    base = out[0]
    shape = (len(grid.depths_km), len(grid.gradients_km), len(grid.dvs), slowness.size, t.size)
    return (out[1:] - base[None]).reshape(shape), base


def at_slowness(table: np.ndarray, grid_slowness: np.ndarray, slowness: np.ndarray) -> np.ndarray:
    """Rows of ``table`` (..., grid slowness, time) interpolated linearly to each ``slowness``:
    (..., event, time); slownesses beyond the grid take its end rows."""
    g = np.asarray(grid_slowness, float)
    p = np.clip(np.asarray(slowness, float), g[0], g[-1])
    k = np.clip(np.searchsorted(g, p) - 1, 0, g.size - 2)
    w = ((p - g[k]) / (g[k + 1] - g[k]))[:, None]
    return table[..., k, :] * (1 - w) + table[..., k + 1, :] * w


# ----------------------------------------------------------------------------- the stacking verdict, fast

class StackingDraws:
    """The stacking verdict of :func:`xdisc.stack.stacking.stack_station` for many versions of one
    station's receiver functions: ``structure + sign * noise (+ an injected X)``, one random polarity per
    event and draw. Depth conversion and vespagram are linear in the traces, so the depth traces and the
    vespagram rows (inside the X window's times) of structure and noise are computed once and a draw only
    sums them: the verdict is that of ``stack_station`` on the summed traces (a test checks it)."""

    def __init__(self, structure: np.ndarray, noise: np.ndarray, time_s: np.ndarray, slowness: np.ndarray,
                 distance_deg: np.ndarray, model: EarthModel, cfg: dict, noise_parts: tuple | None = None):
        self.time_s, self.slowness, self.distance = time_s, np.asarray(slowness, float), np.asarray(distance_deg)
        self.model, self.cfg = model, cfg
        self.depths = np.arange(0.0, cfg["max_depth_km"] + 0.5 * cfg["depth_step_km"], cfg["depth_step_km"])
        self.rel_s = np.round(np.arange(cfg["relative_slowness_s_per_deg"][0],
                                        cfg["relative_slowness_s_per_deg"][1] + 1e-9,
                                        cfg["relative_slowness_step_s_per_deg"]), 6)
        self.ref_dist = float(np.nanmedian(self.distance))
        self.p_ref = float(np.nanmedian(self.slowness))
        # times where the moveout check looks: the X window's Ps delays at the station's slownesses, +-3 s
        margin = float(cfg.get("x_margin_km", 0.0))
        d = delay_table(model, [cfg["x_window_km"][0] - margin, cfg["x_window_km"][1] + margin],
                        [self.slowness.min(), self.slowness.max()])
        self.window = np.flatnonzero((time_s >= np.nanmin(d) - 3.0) & (time_s <= np.nanmax(d) + 3.0))
        self.structure, self.noise = np.asarray(structure, float), np.asarray(noise, float)
        self.s_depth, self.s_vesp = self.depth_traces(self.structure), self.vespagram_rows(self.structure)
        # the noise's parts can come from another instance with the same noise (false-alarm draws)
        self.n_depth, self.n_vesp = noise_parts or (self.depth_traces(self.noise), self.vespagram_rows(self.noise))

    def depth_traces(self, traces: np.ndarray) -> np.ndarray:
        return to_depth(traces, self.time_s, self.slowness, self.model, self.depths)

    def vespagram_rows(self, traces: np.ndarray) -> np.ndarray:
        """Each event's shifted trace (u, event, window time): the vespagram is their weighted mean."""
        n = self.time_s.size
        nfft = int(2 ** np.ceil(np.log2(2 * n)))
        f = np.fft.rfftfreq(nfft, self.time_s[1] - self.time_s[0])
        spec = np.fft.rfft(np.nan_to_num(traces), nfft)
        out = np.empty((self.rel_s.size, traces.shape[0], self.window.size))
        for k, phase in enumerate(self._phases(f)):
            out[k] = np.fft.irfft(spec * phase, nfft)[:, self.window]
        return out

    def _phases(self, f: np.ndarray):
        """exp(2 pi i f u (distance - reference)) (event, f) for each relative slowness u in turn, as
        :func:`xdisc.stack.stacking.vespagram` shifts. The u are evenly spaced, so each is the one before
        times one step's factor: a complex product instead of a complex exponential per element. The
        exponentials took 11 of the 20.5 s of the injection tests of a station of 45 receiver functions
        (8.3 s now); the rows agree with theirs to 2e-14 of their largest value
        (``tests/benchmarks/bench_detectability.py``). The array yielded is updated in place for the
        next u: use it before asking for the next."""
        offset = 2j * np.pi * f[None, :] * (self.distance - self.ref_dist)[:, None]
        steps = np.diff(self.rel_s)
        if steps.size == 0 or not np.allclose(steps, steps[0], rtol=1e-6, atol=0.0):
            for u in self.rel_s:
                yield np.exp(offset * u)
            return
        phase, step = np.exp(offset * self.rel_s[0]), np.exp(offset * steps[0])
        for k in range(self.rel_s.size):
            if k:
                phase *= step
            yield phase

    def traces(self, sign: np.ndarray) -> np.ndarray:
        return self.structure + sign[:, None] * self.noise

    def verdict(self, sign: np.ndarray, add: tuple | None = None) -> dict:
        """The verdict of structure + ``sign`` (event,) x noise, plus an injected signal ``add``: its traces
        (event, time), depth traces (event, depth) and vespagram rows (u, event, time)."""
        depth = self.s_depth + sign[:, None] * self.n_depth
        vrows = self.s_vesp + sign[None, :, None] * self.n_vesp
        traces = self.traces(sign)
        if add is not None:
            traces, depth, vrows = traces + add[0], depth + add[1], vrows + add[2]
        # each trace divided by its own direct P, as stack_station does (the noise changes it a little)
        amp = direct_p(traces, self.time_s)[0]
        depth, vrows, traces = depth / amp[:, None], vrows / amp[None, :, None], traces / amp[:, None]
        w = noise_weights(traces, self.time_s) if self.cfg["weighting"] == "noise" else np.ones(len(sign))
        stack = weighted_mean(depth, w[None, :])[0]
        boot = bootstrap_means(depth, self.cfg["n_bootstrap"], self.cfg["seed"], w)
        lower = np.percentile(boot, 2.5, axis=0)
        vesp = np.einsum("e,uek->uk", w / w.mean(), vrows) / len(sign)
        return verdict_of_stack(stack, lower, boot, boot.std(axis=0), self.depths, vesp, self.rel_s,
                                self.time_s[self.window], self.model, self.cfg, len(sign), self.p_ref, self.ref_dist)


# ----------------------------------------------------------------------------- one station

@dataclass
class CNNJudge:
    """The CNN verdict as the pipeline gives it: the image of all events, the network's calibrated
    probability, ``present`` at or above the station's present threshold, else ``absent`` at or below its
    absent threshold (:func:`xdisc.cnn.predict.calibrated_verdict`)."""

    module: object            # xdisc.cnn.module.XClassifier
    settings: object          # xdisc.cnn.images.ImageSettings
    mapper: object            # xdisc.cnn.images.DepthMapper
    present_threshold: float
    min_rf: int = 1           # cnn.verdict.min_rf: fewer receiver functions are undetermined, never present
    absent_threshold: float = -np.inf  # none given: nothing is called absent

    def verdicts(self, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(present, not absent) of each probability, present checked first as in the pipeline."""
        present = prob >= self.present_threshold
        return present, present | (prob > self.absent_threshold)

    def probabilities(self, batches: list[tuple[np.ndarray, np.ndarray]], time_s: np.ndarray) -> np.ndarray:
        from xdisc.cnn.images import build_image
        from xdisc.cnn.predict import predict_station

        # each trace divided by its own direct P first, as station_images does
        images = np.stack([build_image(normalise_by_p(rf, time_s), time_s, p, self.mapper, self.settings,
                                       normalised=True)[0] for rf, p in batches])
        return predict_station(self.module, images)


def station_detectability(norm: np.ndarray, time_s: np.ndarray, slowness: np.ndarray, distance_deg: np.ndarray,
                          kernels: np.ndarray, reference: np.ndarray, grid: InjectionGrid, model: EarthModel,
                          stacking_cfg: dict, cnn: CNNJudge | None = None, station: dict | None = None,
                          progress=None, quiet: tuple | None = None, like: tuple | None = None) -> xr.Dataset:
    """Detection probability of both methods over the grid, their false-alarm rates and dvs90 for one
    station's normalised receiver functions ``norm`` (event, time).

    The station's noise is its radial residuals (:func:`xdisc.synth.noise_pool.radial_residuals`: each
    receiver function minus its neighbours in slowness, at one trace's noise level); a draw gives each
    event's noise a random polarity and adds it to a noise-free structure at the events' slownesses.
    Detection draws: ``like`` = (receiver functions (sample, slowness, time) / direct P, their slownesses),
    structures without X whose crust is like the station's (:func:`like_station`; one per draw, in turn),
    else the earth model's (``reference``), plus the X of one grid point. False alarms: ``quiet``, in the
    same form (e.g. no-X samples of the run's synthetic test set: crusts, sediments, distractors,
    sources; one per draw), else ``reference``.

    Why not the station's own traces as the structure: any structure estimated from them carries one
    realisation of the noise of the station's stack, so draws built on it are centred on that realisation
    and their stacks carry it besides their own noise. On synthetic stations of known noise that made the
    CNN's curves 0.1-0.15 too low at SNR 5 (noisier images) and, at a station that has X, the injected X
    would add to it (``tests/benchmarks/detectability_calibration.py``)."""
    t0 = _time.perf_counter()
    norm = np.asarray(norm, float)
    n = norm.shape[0]
    rng = np.random.default_rng(grid.seed)
    g_slow = np.asarray(grid.kernel_slowness_s_per_km, float)
    nd, ng, nv = len(grid.depths_km), len(grid.gradients_km), len(grid.dvs)
    methods = ["stacking"] + (["cnn"] if cnn is not None else [])
    detected = {m: np.zeros((nd, ng, nv, grid.draws), bool) for m in methods}
    kept = {m: np.zeros((nd, ng, nv, grid.draws), bool) for m in methods}  # verdict not absent
    noise = radial_residuals(norm, slowness)

    def structures(table: tuple | None, count: int) -> list[np.ndarray]:
        if table is None:
            return [at_slowness(reference, g_slow, slowness)]
        return [at_slowness(table[0][j], table[1], slowness) for j in range(min(count, len(table[0])))]

    first = StackingDraws(structures(like, 1)[0], noise, time_s, slowness, distance_deg, model, stacking_cfg)
    parts = (first.n_depth, first.n_vesp)                        # the noise's parts, shared by every draw
    draws = [first] + [StackingDraws(x, noise, time_s, slowness, distance_deg, model, stacking_cfg, parts)
                       for x in structures(like, grid.draws)[1:]]
    per_event = at_slowness(kernels, g_slow, slowness)          # (depth, gradient, dvs, event, time)
    signs = rng.choice((-1.0, 1.0), size=(grid.draws, n))        # the same noise draws at every grid point
    for a in range(nd):
        for b in range(ng):
            batches = []
            for c in range(nv):
                k_ev = per_event[a, b, c]
                add = (k_ev, first.depth_traces(k_ev), first.vespagram_rows(k_ev))
                for j in range(grid.draws):
                    d = draws[j % len(draws)]
                    verdict = d.verdict(signs[j], add)["verdict"]
                    detected["stacking"][a, b, c, j] = verdict == PRESENT
                    kept["stacking"][a, b, c, j] = verdict != ABSENT
                    if cnn is not None:
                        batches.append((d.traces(signs[j]) + k_ev, slowness))
            if cnn is not None and n >= cnn.min_rf:
                prob = cnn.probabilities(batches, time_s).reshape(nv, grid.draws)
                detected["cnn"][a, b], kept["cnn"][a, b] = cnn.verdicts(prob)
            if progress is not None:
                progress(a * ng + b + 1, nd * ng, _time.perf_counter() - t0, "grid points")
    false = {m: np.zeros(grid.false_alarm_draws, bool) for m in methods}
    fa_signs = rng.choice((-1.0, 1.0), size=(grid.false_alarm_draws, n))
    calm = structures(quiet, grid.false_alarm_draws)
    batches = []
    for j, sign in enumerate(fa_signs):
        d = StackingDraws(calm[j % len(calm)], noise, time_s, slowness, distance_deg, model, stacking_cfg, parts)
        false["stacking"][j] = d.verdict(sign)["verdict"] == PRESENT
        batches.append((d.traces(sign), slowness))
    if cnn is not None:
        false["cnn"] = cnn.probabilities(batches, time_s) >= cnn.present_threshold if n >= cnn.min_rf else \
            np.zeros(grid.false_alarm_draws, bool)
    return _dataset(detected, false, grid, n, station, _time.perf_counter() - t0, kept)


def like_station(norm: np.ndarray, slowness: np.ndarray, time_s: np.ndarray, table: tuple, n: int,
                 window_s: tuple = (-1.0, 20.0)) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` structures of ``table`` = (receiver functions (sample, slowness, time) / direct P, their
    slownesses) whose crustal part (``window_s`` around P: direct P, sediment and Moho conversions, the
    first multiples) is closest to the station's mean receiver function at each of its slownesses
    (:func:`xdisc.cnn.calibration.crust_misfit`, as the CNN's calibration matches crusts), nearest first."""
    from xdisc.cnn.calibration import crust_misfit

    rf_q, p_q = np.asarray(table[0], float), np.asarray(table[1], float)
    win = (time_s >= window_s[0]) & (time_s <= window_s[1])
    nearest = np.argmin(np.abs(np.asarray(slowness, float)[:, None] - p_q[None, :]), axis=1)
    pick = np.argsort(crust_misfit(norm[:, win], nearest, rf_q[:, :, win]), kind="stable")[:n]
    return rf_q[pick], p_q


def dvs90(probability: np.ndarray, dvs, level: float) -> float:
    """Smallest dVs whose detection probability (dvs,) reaches ``level`` there and at every larger dVs of
    the grid; NaN when the largest does not."""
    ok = np.asarray(probability) >= level
    if not ok[-1]:
        return float("nan")
    first = ok.size - int(np.argmin(ok[::-1])) if not ok.all() else 0
    return float(np.asarray(dvs)[first])


def _dataset(detected: dict, false: dict, grid: InjectionGrid, n_rf: int, station: dict | None,
             seconds: float, kept: dict | None = None) -> xr.Dataset:
    """``kept`` (like ``detected``): draws whose verdict is not absent; None: none (nothing excluded)."""
    station = station or {"network": "XX", "station": "SYN", "latitude": np.nan, "longitude": np.nan}
    kept = kept or {m: np.zeros_like(hits) for m, hits in detected.items()}
    data = {}
    for m, hits in detected.items():
        prob = hits.mean(axis=-1) if hits.shape[-1] else np.full(hits.shape[:-1], np.nan)
        data[f"detection_{m}"] = (("depth", "gradient", "dvs"), as_float32(prob),
                                  {"units": "1", "long_name": f"fraction of draws the {m} verdict is present"})
        not_absent = kept[m].mean(axis=-1) if kept[m].shape[-1] else np.full(hits.shape[:-1], np.nan)
        data[f"not_absent_{m}"] = (("depth", "gradient", "dvs"), as_float32(not_absent),
                                   {"units": "1", "long_name": f"fraction of draws the {m} verdict is not absent"})
        data[f"excluded_dvs_{m}"] = ((), dvs90(not_absent.mean(axis=(0, 1)), grid.dvs, grid.detection_probability),
                                     {"units": "1", "long_name": f"{m}: smallest dVs not called absent in "
                                                                 f"{grid.detection_probability:.0%} of the draws"})
        data[f"false_alarm_rate_{m}"] = ((), float(false[m].mean()) if false[m].size else float("nan"),
                                         {"units": "1", "long_name": f"{m}: present without X (own noise)"})
        data[f"dvs90_{m}"] = ((), dvs90(prob.mean(axis=(0, 1)), grid.dvs, grid.detection_probability),
                              {"units": "1", "long_name": f"{m}: smallest dVs detected in "
                                                          f"{grid.detection_probability:.0%} of the draws"})
    ds = xr.Dataset(data, coords={
        "depth": ("depth", np.asarray(grid.depths_km, float), {"units": "km", "long_name": "depth of X (top)"}),
        "gradient": ("gradient", np.asarray(grid.gradients_km, float),
                     {"units": "km", "long_name": "depth interval of the jump"}),
        "dvs": ("dvs", np.asarray(grid.dvs, float), {"units": "1", "long_name": "relative S-velocity jump of X"}),
        "network": ((), station["network"]), "station": ((), station["station"]),
        "latitude": ((), float(station.get("latitude", np.nan)), {"units": "degrees_north"}),
        "longitude": ((), float(station.get("longitude", np.nan)), {"units": "degrees_east"})})
    ds.attrs.update(provenance_attrs(
        title=f"X detectability of {station['network']}.{station['station']}",
        source="xdisc detectability: synthetic X conversions injected into the station's receiver functions",
        seed=grid.seed, config_hash=config_hash(grid.__dict__)))
    ds.attrs.update({"n_rf": int(n_rf), "draws": grid.draws, "false_alarm_draws": grid.false_alarm_draws,
                     "detection_probability": grid.detection_probability, "seconds": round(seconds, 2)})
    return ds


# ----------------------------------------------------------------------------- files

def kernels_dataset(config: dict) -> xr.Dataset:
    """The run's X conversions (:func:`x_kernels`) as NetCDF (``xdisc detectability kernels``)."""
    from xdisc.core.earthmodel import load_model

    grid = InjectionGrid.from_config(config["detectability"])
    rf = RFSettings(**config["receiver_function"])
    kernels, base = x_kernels(load_model(config["earth_model"]), grid, rf, Layering(**config["layering"]))
    ds = xr.Dataset(
        {"x_conversion": (("depth", "gradient", "dvs", "slowness", "time"), as_float32(kernels),
                          {"units": "1", "long_name": "receiver function with X minus without, / direct P"}),
         "reference": (("slowness", "time"), as_float32(base),
                       {"units": "1", "long_name": "receiver function of the earth model without X / direct P"})},
        coords={"depth": ("depth", np.asarray(grid.depths_km, float), {"units": "km", "long_name": "depth of X"}),
                "gradient": ("gradient", np.asarray(grid.gradients_km, float), {"units": "km"}),
                "dvs": ("dvs", np.asarray(grid.dvs, float), {"units": "1", "long_name": "relative S jump"}),
                "slowness": ("slowness", np.asarray(grid.kernel_slowness_s_per_km, float), {"units": "s km-1"}),
                "time": ("time", rf.time_axis(), {"units": "s", "long_name": "time after direct P"})})
    ds.attrs.update(provenance_attrs(
        title=f"X conversions injected by xdisc detectability ({config['earth_model']})",
        source="xdisc detectability: plane-wave responses of the earth model with and without X, deconvolved",
        seed=grid.seed, config_hash=config_hash({k: config[k] for k in ("detectability", "earth_model",
                                                                          "receiver_function", "layering")})))
    ds.attrs["earth_model"] = config["earth_model"]
    return ds


def station_file(rf_path, kernels_path, config: dict, model_path=None, calibration: dict | None = None,
                 progress=None, test_path=None, refined: dict | None = None) -> xr.Dataset:
    """:func:`station_detectability` of one station's receiver-function file (``xdisc rf``) with the
    run's kernels; the CNN judged too when ``model_path`` (the run's checkpoint) is given, by the network that
    ``xdisc predict`` judges the station with (``refined``: station code -> (checkpoint, name) of
    :func:`xdisc.cnn.folds.fold_checkpoints`; its name in the attribute ``cnn_network``), with the thresholds
    of the station's row of ``calibration`` (:func:`xdisc.cnn.predict.read_calibration`, read once per batch),
    else ``cnn.verdict``'s; false alarms on the no-X samples of
    the synthetic set ``test_path`` (:func:`quiet_structures`), and detection draws on its no-X samples
    whose crust is like the station's (:func:`like_station`); else both on the earth model's own."""
    from xdisc.core.artifacts import open_netcdf
    from xdisc.core.earthmodel import load_model

    grid = InjectionGrid.from_config(config["detectability"])
    with open_netcdf(kernels_path) as k:
        kernels, reference = k["x_conversion"].values.astype(float), k["reference"].values.astype(float)
        grid = InjectionGrid(**{**grid.__dict__, "kernel_slowness_s_per_km": tuple(k["slowness"].values)})
    stacking_cfg = config["stacking"]
    station, n_rf, norm, time_s, slowness, distance = station_traces(rf_path, stacking_cfg["use_qc"])
    model = load_model(config["earth_model"])
    code = f"{station['network']}.{station['station']}"
    fewest = min(int(stacking_cfg["min_rf"]), int(config["cnn"]["verdict"]["min_rf"]))
    if n_rf < max(fewest, 3):
        # neither method gives a verdict on so few (both say undetermined): nothing is ever detected
        needs = f"stacking.min_rf {stacking_cfg['min_rf']} and cnn.verdict.min_rf {config['cnn']['verdict']['min_rf']}"
        note = (f"{n_rf} receiver function(s): fewer than either method needs for a verdict ({needs})"
                if n_rf < fewest else f"{n_rf} receiver functions: too few to estimate their noise "
                                      "(neighbours in slowness)")
        log.info("detectability: %s: %s: detection probability 0", code, note)
        shape = (len(grid.depths_km), len(grid.gradients_km), len(grid.dvs), 1)
        ds = _dataset({m: np.zeros(shape, bool) for m in METHODS}, {m: np.zeros(1, bool) for m in METHODS}, grid,
                      n_rf, station, 0.0)
        ds.attrs["note"] = note
        return ds
    cnn = network = None
    if model_path is not None:
        from xdisc.cnn.folds import judging_network

        model_path, network = judging_network(refined, code, model_path)
        cnn = _cnn_judge(model_path, calibration or {}, code, config, model)
    quiet = like = None
    if test_path:
        quiet = quiet_structures(test_path, grid.false_alarm_draws, grid.seed)
        like = like_station(norm, slowness, time_s, quiet_structures(test_path, 1000, grid.seed), grid.draws)
    # the verdict's depth conversion: with stacking.crust.depth_conversion, through the station's own crust
    conversion = depth_model(norm, time_s, slowness, model, stacking_cfg)
    ds = station_detectability(norm, time_s, slowness, distance, kernels, reference, grid, conversion,
                               stacking_cfg, cnn, station, progress, quiet, like)
    if network is not None:
        ds.attrs["cnn_network"] = network
    return ds


def station_traces(rf_path, use_qc: bool) -> tuple[dict, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A station's receiver functions as the injection tests take them: (station, number of usable receiver
    functions, those whose division by their direct P is finite (event, time), time, slowness, distance)."""
    from xdisc.core.artifacts import usable_receiver_functions

    rf_ds, keep, station = usable_receiver_functions(rf_path, use_qc)
    time_s = rf_ds["time"].values
    rf = rf_ds["rf"].values[keep].astype(float)
    norm = normalise_by_p(rf, time_s)
    ok = np.all(np.isfinite(norm), axis=1)
    return (station, rf.shape[0], norm[ok], time_s, rf_ds["slowness_s_per_km"].values[keep][ok],
            rf_ds["distance_deg"].values[keep][ok])


def quiet_samples(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices (ascending) of the ``n`` samples without X that :func:`quiet_structures` draws from a
    synthetic set with these ``labels`` (seeded; all of them when it has fewer)."""
    no_x = np.flatnonzero(np.asarray(labels) == 0)
    return np.sort(np.random.default_rng([seed, 5]).permutation(no_x)[:n])


def quiet_structures(test_path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noise-free receiver functions without X (sample, slowness, time), divided by their direct P,
    drawn (seeded) from a synthetic set of ``xdisc synth`` (in index order; :func:`quiet_samples`), and its
    slownesses."""
    from xdisc.core.artifacts import open_netcdf

    with open_netcdf(test_path) as ds:
        pick = quiet_samples(ds["label"].values, n, seed)
        if pick.size == 0:
            raise ValueError(f"{test_path}: no sample without X for the draws")
        rf = normalise_by_p(ds["rf_clean"].isel(sample=pick).values.astype(float), ds["time"].values)
        return rf, ds["slowness"].values.astype(float)


@functools.lru_cache(maxsize=4)
def _load_module(path: str, mtime_ns: int):
    """The CNN of a checkpoint, loaded once per process (a batch of stations shares it; with cnn.refine the
    run's network and the folds' networks, by default two, take turns)."""
    from xdisc.cnn.module import XClassifier

    module = XClassifier.load_from_checkpoint(path, map_location="cpu")
    module.eval()
    return module


def _cnn_judge(model_path, calibration: dict, code: str, config: dict, model: EarthModel) -> CNNJudge:
    """The CNN judge of station ``code``: the checkpoint's network with the station's thresholds from
    ``calibration`` (station code -> row, :func:`xdisc.cnn.predict.read_calibration`), else ``cnn.verdict``'s."""
    import torch

    from xdisc.cnn.images import DepthMapper, ImageSettings

    torch.set_num_threads(1)
    module = _load_module(str(model_path), Path(model_path).stat().st_mtime_ns)
    settings = ImageSettings.from_config(config["images"])
    verdict = config["cnn"]["verdict"]
    present, absent = float(verdict["present_probability"]), float(verdict["absent_probability"])
    if code in calibration:
        present = float(calibration[code]["present_threshold"])
        absent = float(calibration[code]["absent_threshold"])
    return CNNJudge(module, settings, DepthMapper(model, settings.depths_km), present, int(verdict["min_rf"]),
                    absent)


COLUMNS = ("station", "n_rf", "dvs90_stacking", "dvs90_cnn", "false_alarm_rate_stacking", "false_alarm_rate_cnn",
           "excluded_dvs_stacking", "excluded_dvs_cnn", "detectability_note")


def station_files(paths) -> list[Path]:
    """The station files among ``paths``: files as given, folders (one per batch of stations) as the
    ``*.nc`` files inside, sorted by name."""
    out = []
    for path in map(Path, paths):
        out.extend(sorted(path.glob("*.nc")) if path.is_dir() else [path])
    return out


def table_rows(paths) -> list[dict]:
    """One row of ``results/verdicts/detectability.csv`` per station file; ``detectability_note`` says why
    a dvs90 is missing (too few receiver functions, or not even the grid's largest dVs is seen)."""
    from xdisc.core.artifacts import open_netcdf

    rows = []
    for path in paths:
        with open_netcdf(path) as ds:
            row = {"station": f"{ds['network'].item()}.{ds['station'].item()}", "n_rf": int(ds.attrs["n_rf"])}
            station_note = "note" in ds.attrs  # too few receiver functions: says it for both methods
            notes = [str(ds.attrs["note"])] if station_note else []
            level, largest = float(ds.attrs["detection_probability"]), float(ds["dvs"].values[-1])
            for m in METHODS:
                for key in ("dvs90", "false_alarm_rate", "excluded_dvs"):
                    name = f"{key}_{m}"
                    row[name] = float(ds[name]) if name in ds else float("nan")
                if f"detection_{m}" in ds and f"not_absent_{m}" not in ds:
                    # a file of an earlier version (before 2026-12-04): its rule, dvs90, stands in
                    row[f"excluded_dvs_{m}"] = row[f"dvs90_{m}"]
                    notes.append(f"{m}: excluded dVs not computed (file of an earlier xdisc): dvs90 used")
                if f"detection_{m}" in ds and not station_note and not np.isfinite(row[f"dvs90_{m}"]):
                    # the excluded dVs is never above dvs90: where it is missing, dvs90 is too
                    unexcluded = f"not_absent_{m}" in ds and not np.isfinite(row[f"excluded_dvs_{m}"])
                    notes.append(f"{m}: not even {largest:.0%} is seen in {level:.0%} of the draws"
                                 + (f", and it is called absent in more than {1 - level:.0%}" if unexcluded else ""))
            row["detectability_note"] = "; ".join(notes)
            rows.append(row)
    return sorted(rows, key=lambda r: r["station"])
