"""The crust-aware stacking verdict, step by step, on xdisc's synthetic stations.

Draws a synthetic set (the run's generator, ``config/full.yaml`` settings unless ``--config``), makes one
station of ``--n-rf`` receiver functions per sample at each per-trace SNR (the one station generator the
CNN trains on), and runs ``stack_station`` with the settings of :data:`VARIANTS` (the station's own crust
in the depth conversion, the multiples subtracted, the search margin, an amplitude floor, the 410 rule of
``require_410_660``). Prints,
per SNR: false alarms at stations without X by Moho depth (20-30, 30-50, 50-70 km), detection of X by
its depth (250-260, 260-340, 340-350 km) and by Moho depth, undetermined, and the H-kappa errors
(Moho depth, Vp/Vs); ``--table`` writes each station's parameters, verdicts and reasons (CSV). Not part of
CI (about a second per station and setting).

    python tests/benchmarks/crust_stacking.py --samples 300 --snr 30 1000
    python tests/benchmarks/crust_stacking.py --samples 100 --x-fraction 1 --x-depth 250 260 --variants default
    python tests/benchmarks/crust_stacking.py --network /data/xs1 --run /data/xs1-run   # independent network

With ``--network`` and ``--run`` (a network of ``independent_network.py make`` and a pipeline run on it,
``independent_network.py score``) it stacks the run's receiver-function files (results/rf/) again with each
setting and scores the verdicts against the hidden truth: accuracy, false alarms, misses, undetermined,
depth error, and detection by X depth and Moho depth.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
MOHO_CLASSES = ((20, 30), (30, 50), (50, 70.01))
# the stacking settings compared, each spelled out (the defaults change)
OFF = {"crust.depth_conversion": False, "multiples.suppress": False, "x_margin_km": 0.0, "min_x_amplitude": 0.0,
       "require_410_660": "always", "multiples.residual_fraction": 0.0, "conversion_slowness_max_multiple": None}
ON = {"crust.depth_conversion": True, "multiples.suppress": True}
# the sparse slant stack as first measured (2026-12-02): no coherence check
RADON = {"multiples.suppress": True, "multiples.method": "radon", "multiples.radon_coherent_fraction": 0.0}
VARIANTS = {
    "reference": OFF,                                                     # the verdict before issue 21
    "410 for absent": {**OFF, "require_410_660": "for_absent"},          # the default 2026-12-01
    "default": {},  # the defaults now (2026-12-02: own crust where H-kappa is sure; margin 20, moveout bound 2;
    # min_rf 8 and x_snr_without_410 5; 2026-12-03: floor 0.02; 2026-12-04: x_snr_without_410 3)
    # 2026-12-02: the margin (with the half-width reach) and the bound on steep moveout, apart and together
    "own crust default (2026-12-02)": {"x_margin_km": 0.0, "conversion_slowness_max_multiple": None},
    "margin 10 only": {"x_margin_km": 10.0, "conversion_slowness_max_multiple": None},
    "margin 20 only": {"x_margin_km": 20.0, "conversion_slowness_max_multiple": None},
    "moveout <= 2 only": {"x_margin_km": 0.0, "conversion_slowness_max_multiple": 2.0},
    "moveout <= 2.5 only": {"x_margin_km": 0.0, "conversion_slowness_max_multiple": 2.5},
    "moveout <= 3 only": {"x_margin_km": 0.0, "conversion_slowness_max_multiple": 3.0},
    "multiples, own crust default": {"multiples.suppress": True, "x_margin_km": 0.0,
                                     "conversion_slowness_max_multiple": None},
    "multiples, moveout <= 2 only": {"multiples.suppress": True, "x_margin_km": 0.0},
    "default + multiples": {"multiples.suppress": True},
    # 2026-12-02: reverberations removed in a sparse slant stack (no crust needed), without the coherence check
    "radon": {**RADON, "multiples.residual_fraction": 0.0},
    "radon + residual 0.5": RADON,
    "radon + residual 1": {**RADON, "multiples.residual_fraction": 1.0},
    "radon sparsity 0.1 + residual 1": {**RADON, "multiples.residual_fraction": 1.0, "multiples.radon_sparsity": 0.1},
    "radon sparsity 0.2 + residual 1": {**RADON, "multiples.residual_fraction": 1.0, "multiples.radon_sparsity": 0.2},
    "radon, no bound": {**RADON, "multiples.residual_fraction": 0.0, "conversion_slowness_max_multiple": None},
    "radon sparsity 0.1": {**RADON, "multiples.residual_fraction": 0.0, "multiples.radon_sparsity": 0.1},
    "radon fraction 0.3": {**RADON, "multiples.residual_fraction": 0.0, "multiples.radon_fraction": 0.3},
    # 2026-12-02 (later): X must be held by the sparse model at a conversion's slownesses
    "radon coherent 0.5": {**RADON, "multiples.residual_fraction": 0.0, "multiples.radon_coherent_fraction": 0.5},
    "radon coherent 0.7": {**RADON, "multiples.residual_fraction": 0.0, "multiples.radon_coherent_fraction": 0.7},
    "radon coherent 0.5 + residual 0.5": {**RADON, "multiples.radon_coherent_fraction": 0.5},
    "radon sparsity 0.1, coherent 0.5": {**RADON, "multiples.residual_fraction": 0.0, "multiples.radon_sparsity": 0.1,
                                         "multiples.radon_coherent_fraction": 0.5},
    # 2026-12-02 (later): stations of 8-9 receiver functions, and a strong X where the 410 is not seen
    "default before min_rf 8 and strong X": {"min_rf": 10, "x_snr_without_410": None},
    "strong X 4 without 410": {"min_rf": 10, "x_snr_without_410": 4.0},
    "strong X 5 without 410": {"min_rf": 10, "x_snr_without_410": 5.0},
    "strong X 6 without 410": {"min_rf": 10, "x_snr_without_410": 6.0},
    "min_rf 7": {"min_rf": 7, "x_snr_without_410": None},
    "min_rf 8": {"min_rf": 8, "x_snr_without_410": None},
    "min_rf 7, strong X 5 without 410": {"min_rf": 7, "x_snr_without_410": 5.0},
    # 2026-12-03: an amplitude floor on the default (relative to the direct P; 0.02 is the default since)
    "default before the floor (2026-12-02)": {"min_x_amplitude": 0.0},
    "floor 0.015": {"min_x_amplitude": 0.015},
    "floor 0.02": {"min_x_amplitude": 0.02},
    "floor 0.025": {"min_x_amplitude": 0.025},
    # 2026-12-03: a sediment layer's ringing removed (the resonance filter of Yu et al. 2015), with the floor
    "resonance 0.3": {"resonance.enabled": True, "min_x_amplitude": 0.02},
    "resonance 0.2": {"resonance.enabled": True, "resonance.min_strength": 0.2, "min_x_amplitude": 0.02},
    # 2026-12-03 (22nd session): a floor from the stack's rms between the 410 and the 660 (stacking.quiet_factor)
    "quiet 1.75": {"quiet_factor": 1.75, "min_x_amplitude": 0.02},
    "quiet 2": {"quiet_factor": 2.0, "min_x_amplitude": 0.02},
    "quiet 2.25": {"quiet_factor": 2.25, "min_x_amplitude": 0.02},
    # 2026-12-03 (22nd session): a second look at a failed moveout check, with the larger plane waves taken out
    "clean 0.5": {"moveout_clean_fraction": 0.5, "min_x_amplitude": 0.02},
    "clean 0.7": {"moveout_clean_fraction": 0.7, "min_x_amplitude": 0.02},
    "clean 0.9": {"moveout_clean_fraction": 0.9, "min_x_amplitude": 0.02},
    "quiet 2, clean 0.7": {"quiet_factor": 2.0, "moveout_clean_fraction": 0.7, "min_x_amplitude": 0.02},
    # 2026-12-04 (26th session): X of 3 or 4 times the noise present where the 410 is not seen (with the floor)
    "default before 2026-12-04": {"x_snr_without_410": 5.0, "min_x_amplitude": 0.02},
    "strong X 3 without 410": {"x_snr_without_410": 3.0, "min_x_amplitude": 0.02},
    "strong X 4 without 410, floor": {"x_snr_without_410": 4.0, "min_x_amplitude": 0.02},
    # 2026-12-05 (41st session): the sparse slant stack with a stricter noise factor, with and without the amplitude
    # floor, read off draws 4-8 of the independent network. Named "radon coherent 0.5 + residual 0.5, 3.5 x noise"
    # (and ", floor 0.02") until 2026-12-06, but RADON's coherence check is off: they never had it
    "radon + residual 0.5, 3.5 x noise": {**RADON, "noise_factor": 3.5},
    "radon + residual 0.5, 3.5 x noise, floor 0.02": {**RADON, "noise_factor": 3.5, "min_x_amplitude": 0.02},
    # 2026-12-06 (42nd session): the slant stack only at stations that do not ring (multiples.radon_max_ringing;
    # 0.3 = resonance.min_strength, not tuned), with 3.5 x noise there; the default's floor 0.02 everywhere, and
    # without it (as the 41st session's lead was read off: the slant stack's stations without the floor)
    "gated slant stack (r0 < 0.3), 3.5 x noise": {**RADON, "multiples.radon_coherent_fraction": 0.5,
                                                 "multiples.radon_max_ringing": 0.3,
                                                 "multiples.radon_noise_factor": 3.5, "min_x_amplitude": 0.02},
    "gated slant stack (r0 < 0.3), 3.5 x noise, no floor": {**RADON, "multiples.radon_coherent_fraction": 0.5,
                                                           "multiples.radon_max_ringing": 0.3,
                                                           "multiples.radon_noise_factor": 3.5},
    # ... and without the coherence check, as the lead was read off (the 41st session's 3.5 x noise variant)
    "gated slant stack (r0 < 0.3), no coherence check, 3.5 x noise": {**RADON, "multiples.radon_max_ringing": 0.3,
                                                                     "multiples.radon_noise_factor": 3.5,
                                                                     "min_x_amplitude": 0.02},
    "gated slant stack (r0 < 0.3), no coherence check, 3.5 x noise, no floor": {
        **RADON, "multiples.radon_max_ringing": 0.3, "multiples.radon_noise_factor": 3.5},
    # 2026-12-07 (54th session): the moveout check must hold in a share of the events' bootstrap resamples (0.7
    # read off seeds 20261201 and 7 with moveout_bootstrap.py), and what its fewer false alarms could buy
    "moveout share 0.5": {"moveout_bootstrap_share": 0.5, "min_x_amplitude": 0.02},
    "moveout share 0.6": {"moveout_bootstrap_share": 0.6, "min_x_amplitude": 0.02},
    "moveout share 0.7": {"moveout_bootstrap_share": 0.7, "min_x_amplitude": 0.02},
    "moveout share 0.7, 2.5 x noise": {"moveout_bootstrap_share": 0.7, "noise_factor": 2.5, "min_x_amplitude": 0.02},
    "moveout share 0.7, floor 0.015": {"moveout_bootstrap_share": 0.7, "min_x_amplitude": 0.015},
    "own crust": {**OFF, "crust.depth_conversion": True},
    "+ multiples": {**OFF, **ON, "multiples.order": 2},
    "+ 3rd order": {**OFF, **ON, "multiples.order": 3},
    "+ residual 0.3": {**OFF, **ON, "multiples.order": 3, "multiples.residual_fraction": 0.3},
    "+ residual 0.5": {**OFF, **ON, "multiples.order": 3, "multiples.residual_fraction": 0.5},
    "+ 410 for absent": {**OFF, **ON, "multiples.order": 3, "multiples.residual_fraction": 0.5,
                         "require_410_660": "for_absent"},
    "+ margin 20": {**OFF, **ON, "multiples.order": 3, "x_margin_km": 20.0},
    "+ floor 0.01": {**OFF, **ON, "multiples.order": 3, "x_margin_km": 20.0, "min_x_amplitude": 0.01},
}
# the variants measured before 2026-12-03 had no amplitude floor (the default since): they keep none; and only
# the quiet variants have the quiet floor (off by default), whatever its default becomes
for _name, _change in VARIANTS.items():
    if _name != "default":
        _change.setdefault("min_x_amplitude", 0.0)
        _change.setdefault("quiet_factor", 0.0)
X_CLASSES = ((250, 260), (260, 340), (340, 350.01))


def _removed_near(ds) -> float:
    """The largest absolute depth stack of what was subtracted within 10 km of the X peak (NaN: none)."""
    z, x = ds["depth"].values, ds.attrs["x_depth_km"]
    removed = ds["multiples_depth_stack"].values[np.abs(z - x) <= 10.0]
    return float(np.nanmax(np.abs(removed))) if np.isfinite(x) and np.isfinite(removed).any() else np.nan


def _rate(mask, sel):
    return f"{100 * mask[sel].mean():4.0f} % ({sel.sum():3d})" if sel.any() else "   - (  0)"


def add_station_arguments(ap: argparse.ArgumentParser) -> None:
    """The options that choose the synthetic stations (:func:`synthetic_source`, :func:`station_receiver_functions`)."""
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "full.yaml")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--n-rf", type=int, default=50)
    ap.add_argument("--snr", type=float, nargs="+", default=[30.0, 1000.0])
    ap.add_argument("--seed", type=int, default=20261201)


def synthetic_source(config: dict, jobs: int = 1):
    """The synthetic set of ``config`` (its ``synthetics`` seed and size), made in a temporary file: the
    :class:`~xdisc.cnn.synthetic_set.SyntheticSource` and its columns ``moho_km``, ``vpvs`` and the X,
    distractor and sediment parameters (those the set has)."""
    from xdisc.cnn.synthetic_set import SyntheticSource
    from xdisc.core.artifacts import open_netcdf, write_netcdf
    from xdisc.synth.synthetics import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "set.nc"
        write_netcdf(make_dataset(config, n_jobs=jobs), path)
        src = SyntheticSource.read(path)
        with open_netcdf(path) as ds:
            columns = {k: ds[k].values for k in ("moho_km", "vpvs", "x_depth_km", "x_dvs", "x_style", "distractor",
                                                 "distractor_depth_km", "distractor_style", "sediment_km") if k in ds}
    return src, columns


def station_receiver_functions(src, draw, i: int, seed: int, snr: float, n_rf: int):
    """Sample ``i`` of ``src`` as one station: ``n_rf`` noisy receiver functions at per-trace ``snr`` (the CNN's
    station generator, seeded by ``seed``, the SNR and ``i``), their slownesses and distances."""
    from xdisc.core.moveout import distance_for_slowness
    from xdisc.synth.stations import synthetic_station

    rng = np.random.default_rng([seed, int(snr), i])
    rf, p = synthetic_station(src.clean[i], src.grid_slowness, src.time_s, src.dt, src.gaussian_width_hz,
                              draw, rng, n_rf=n_rf, snr=float(snr), model_name=str(src.model[i]))
    return rf, p, distance_for_slowness(p, str(src.model[i]))


def main(argv=None) -> int:
    from xdisc import config as cfgmod
    from xdisc.core.earthmodel import load_model
    from xdisc.stack.stacking import stack_station
    from xdisc.synth.stations import StationDraw

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_station_arguments(ap)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: all")
    ap.add_argument("--x-depth", type=float, nargs=2, metavar=("TOP", "BOTTOM"),
                    help="X's depth range (km; synthetics.x.depth_km), e.g. 250 260 for the window's upper edge")
    ap.add_argument("--x-fraction", type=float, help="fraction of the stations with X (synthetics.x_fraction)")
    ap.add_argument("--network", type=Path, help="an independent network (independent_network.py make)")
    ap.add_argument("--run", type=Path, help="a pipeline run on it (independent_network.py score --workdir)")
    ap.add_argument("--table", type=Path,
                    help="write each station's parameters (synthetic) or truth (network), verdicts and reasons (CSV)")
    a = ap.parse_args(argv)
    if a.network or a.run:
        return network_scores(a)

    config = cfgmod.validate(yaml.safe_load(a.config.read_text()) or {})
    config["synthetics"].update(seed=a.seed, n_samples=a.samples)
    if a.x_depth:
        config["synthetics"]["x"]["depth_km"] = list(a.x_depth)
    if a.x_fraction is not None:
        config["synthetics"]["x_fraction"] = a.x_fraction
    t0 = time.perf_counter()
    src, columns = synthetic_source(config, a.jobs)
    moho = columns.pop("moho_km").astype(float)
    vpvs = columns.pop("vpvs").astype(float)
    params = columns
    print(f"{a.samples} samples in {time.perf_counter() - t0:.0f} s")
    draw = StationDraw.from_config(config["synthetics"], config["cnn"])
    ref = load_model(config["earth_model"])
    y = src.label.astype(bool)
    settings = {}
    for name, change in VARIANTS.items():
        if a.variants and name not in a.variants:
            continue
        cfg = copy.deepcopy(config["stacking"])
        for key, value in change.items():
            section, _, leaf = key.rpartition(".")
            (cfg[section] if section else cfg)[leaf] = value
        settings[name] = cfg
    table = []
    for snr in a.snr:
        verdict = {k: np.empty(y.size, dtype=object) for k in settings}
        reason = {k: np.empty(y.size, dtype=object) for k in settings}
        peak = {k: np.full((y.size, 8), np.nan) for k in settings}   # X's amplitude, snr, slowness, removed near,
        # coherent in the slant stack, depth; the stack's rms between the 410 and the 660, the station's ringing
        h_err, k_err = np.full(y.size, np.nan), np.full(y.size, np.nan)
        t0 = time.perf_counter()
        for i in range(y.size):
            rf, p, dist = station_receiver_functions(src, draw, i, a.seed, snr, a.n_rf)
            for name, cfg in settings.items():
                ds = stack_station(rf, src.time_s, p, dist, ref, cfg)
                attrs = ds.attrs
                verdict[name][i], reason[name][i] = attrs["verdict"], attrs["reason"]
                peak[name][i] = (attrs["x_amp"], attrs["x_snr"], attrs["x_relative_slowness"], _removed_near(ds),
                                 attrs["x_coherent_amp"], attrs["x_depth_km"], attrs["quiet_rms"],
                                 attrs["ringing_r0"])
            h_err[i], k_err[i] = attrs["moho_km"] - moho[i], attrs["vpvs"] - vpvs[i]
        print(f"\nSNR {snr:g} per trace, {a.n_rf} receiver functions, {y.size} stations "
              f"({time.perf_counter() - t0:.0f} s); H-kappa error: Moho median {np.nanmedian(h_err):+.1f} km "
              f"(|err| median {np.nanmedian(np.abs(h_err)):.1f}), Vp/Vs median {np.nanmedian(k_err):+.3f} "
              f"(|err| median {np.nanmedian(np.abs(k_err)):.3f})")
        for name, v in verdict.items():
            present, undet = v == "present", v == "undetermined"
            acc = np.mean(present == y)
            print(f"  {name:13s} accuracy {100 * acc:.0f} %, false alarms {_rate(present, ~y)}, "
                  f"detected {_rate(present, y)}, undetermined {_rate(undet, np.ones_like(y))}")
            print("    false alarms by Moho: " + "  ".join(
                f"{lo}-{hi:.0f} km {_rate(present, ~y & (moho >= lo) & (moho < hi))}" for lo, hi in MOHO_CLASSES))
            print("    detected by Moho:     " + "  ".join(
                f"{lo}-{hi:.0f} km {_rate(present, y & (moho >= lo) & (moho < hi))}" for lo, hi in MOHO_CLASSES))
            xd = src.x_depth if src.x_depth is not None else np.full(y.size, np.nan)
            print("    detected by X depth:  " + "  ".join(
                f"{lo}-{hi:.0f} km {_rate(present, y & (xd >= lo) & (xd < hi))}" for lo, hi in X_CLASSES))
        table += [{"snr": snr, "sample": i, "model": str(src.model[i]), "x_present": int(y[i]), "moho_km": moho[i],
                   **{k: v[i] for k, v in params.items()},
                   **{f"{name}: {what}": col[i] for name in settings
                      for what, col in (("verdict", verdict[name]), ("reason", reason[name]))},
                  **{f"{name}: {what}": peak[name][i, j] for name in settings
                     for j, what in enumerate(("x_amp", "x_snr", "x_relative_slowness", "removed_near",
                                               "x_coherent_amp", "x_depth_km", "quiet_rms", "ringing_r0"))}}
                  for i in range(y.size)]
    if a.table:
        import pandas as pd

        pd.DataFrame(table).to_csv(a.table, index=False)
        print(f"per-station table: {a.table}")
    return 0



def network_scores(a) -> int:
    """Stack a run's receiver functions again with each setting and score against the network's truth."""
    import pandas as pd
    from xdisc import config as cfgmod
    from xdisc.stack.stacking import stack_file

    truth = pd.read_csv(a.network / "truth" / "truth.csv").set_index("station")
    files = sorted((a.run / "results" / "rf").glob("*.nc"))
    config = cfgmod.validate(yaml.safe_load((ROOT / "config" / "full.yaml").read_text()) or {})
    x = truth["x_present"].astype(bool)
    depth, moho = truth["x_depth_km"].astype(float), truth["moho_km"].astype(float)
    print(f"{len(files)} stations of {a.network} ({int(x.sum())} with X), run {a.run}")
    table = []
    for name, change in VARIANTS.items():
        if a.variants and name not in a.variants:
            continue
        cfg = copy.deepcopy(config)
        for key, value in change.items():
            section, _, leaf = key.rpartition(".")
            (cfg["stacking"][section] if section else cfg["stacking"])[leaf] = value
        rows = {}
        t0 = time.perf_counter()
        for f in files:
            attrs = stack_file(f, cfg).attrs
            rows[f.stem] = (attrs["verdict"], attrs["x_depth_km"], attrs["moho_km"], attrs["vpvs"], attrs["reason"],
                            attrs["x_amp"], attrs["x_snr"], attrs["x_relative_slowness"], attrs["x_coherent_amp"])
        if a.table:
            table += [{"variant": name, "station": code, "verdict": r[0], "x_depth_km": r[1], "reason": r[4],
                       "x_amp": r[5], "x_snr": r[6], "x_relative_slowness": r[7], "x_coherent_amp": r[8],
                       "true_x_present": int(x[code]), "true_x_depth_km": depth[code], "true_moho_km": moho[code]}
                      for code, r in rows.items()]
        v = pd.Series({k: r[0] for k, r in rows.items()}).reindex(truth.index)
        present, decided = v == "present", v.isin(["present", "absent"])
        correct = (present & x) | ((v == "absent") & ~x)
        got = pd.Series({k: r[1] for k, r in rows.items()}).reindex(truth.index)
        err = (got - depth)[present & x]
        h = pd.Series({k: r[2] for k, r in rows.items()}).reindex(truth.index) - moho
        k = pd.Series({k: r[3] for k, r in rows.items()}).reindex(truth.index) - truth["vpvs"].astype(float)
        print(f"  {name:13s} accuracy {100 * correct.mean():.0f} %, false alarms {_rate(present.values, ~x.values)}, "
              f"misses {_rate(~present.values, x.values)}, undetermined {100 * (~decided).mean():.0f} %, "
              f"depth error median {err.abs().median():.1f} km (bias {err.median():+.1f}); "
              f"({time.perf_counter() - t0:.0f} s)")
        print("    detected by X depth:  " + "  ".join(
            f"{lo}-{hi:.0f} km {_rate(present.values, (x & (depth >= lo) & (depth < hi)).values)}"
            for lo, hi in ((250, 275), (275, 335), (335, 351))))
        print("    false alarms by Moho: " + "  ".join(
            f"{lo}-{hi:.0f} km {_rate(present.values, (~x & (moho >= lo) & (moho < hi)).values)}"
            for lo, hi in MOHO_CLASSES))
        if name == "reference":
            print(f"    H-kappa against the truth: Moho |err| median {h.abs().median():.1f} km "
                  f"(bias {h.median():+.1f}), Vp/Vs |err| median {k.abs().median():.3f} (bias {k.median():+.3f})")
    if a.table:
        pd.DataFrame(table).to_csv(a.table, index=False)
        print(f"per-station table: {a.table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
