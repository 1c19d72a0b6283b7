"""Would the CNN find X under thick crusts if the crust's own response were taken out first? (not part
of the test suite; docs/results/2026-12-05-crust-removal-and-fragile-scores.md)

The CNN finds fewer X under crusts of 50-70 km than under thin ones, on xdisc's synthetic stations as on
the independent test networks: the crust's PpPs and PpSs land in the X window. This benchmark takes the
crust's response out of every receiver function before the images are made: the receiver function of
the crust alone (over a mantle without any discontinuity, the same source), divided by its direct P,
is subtracted outside the direct P. The steps:

    # 1. synthetic sets with the crust taken out: the true crust (--error none) or a crust with the
    #    errors of a fit (--error mixture: 70 % within 2 km / 0.03 in Vp/Vs, 30 % 10 km / 0.07,
    #    sediment +- 0.4 km; the fit of xdisc.cnn.crust_fit errs so on the independent test networks)
    python tests/benchmarks/crust_removal.py remove --synthetics RUN/results/synthetic/pretrain.nc \\
        --settings RUN/results/settings/synthetics_pretrain.json --error none --out pretrain_ideal.nc
    # (and the test set, with synthetics_test.json), then train a network on each as a run does:
    xdisc train pretrain --settings-file SETTINGS.json --synthetics pretrain_ideal.nc --test test_ideal.nc \\
        --out ideal.ckpt --metrics ideal.json --threads 1 --workers 1
    #    (SETTINGS.json: RUN/results/settings/pretrain.json with cnn.pretrained "train" and
    #    cnn.pretrain.snr [1, 30], as the shipped network; the same training on the unchanged sets is
    #    the baseline)
    # 2. the CNN alone on the test set's stations by Moho depth (xdisc evaluate's stations, SNR 3/10/30)
    python tests/benchmarks/crust_removal.py evaluate --checkpoint ideal.ckpt --test test_ideal.nc \\
        --settings RUN/results/settings/evaluate.json --out ideal_eval.json
    # 3. an independent test network's stations: their receiver functions with each station's fitted crust
    #    (the calibration draws of a run with cnn.adapt.calibration_crust: station) taken out
    python tests/benchmarks/crust_removal.py network --run RUN --own-crust-run OWN --network NET \\
        base=base.ckpt ideal=ideal.ckpt:removed
    # 4. the bound of the idea: each station's TRUE crust (the generator's layering: sediment, upper and
    #    lower crust, over a mantle without any discontinuity) taken out, exactly or with errors of
    #    standard deviation 2 km in Moho depth and 0.03 in Vp/Vs (--perturb 2 0.03; seeded)
    python tests/benchmarks/crust_removal.py network --run RUN --network NET --crust truth --perturb 2 0.03 \\
        base=base.ckpt ideal=ideal.ckpt:removed
    # 5. the stacking's H-kappa crust (RUN/results/verdicts/stacking.csv) where the stacking used it; the
    #    networks adapted first as a run adapts (xdisc adapt RUN/results/noise/*.nc --settings-file
    #    RUN/results/settings/adapt.json --pretrained mix.ckpt --synthetics pretrain_mix.nc --test test_mix.nc)
    python tests/benchmarks/crust_removal.py network --run RUN --network NET --crust hk \\
        adapted=RUN/results/cnn/adapted.ckpt mix=mix_adapted.ckpt:removed

RUN is a finished run of tests/benchmarks/independent_network.py (full-size config). Step 1 takes about
15 s per 600 samples on 2 cores, a training about 5 min, step 2 about 40 s per network, step 3 about 30 s,
steps 4 and 5 about 30 s per draw, an adaptation about a minute
(docs/results/2026-12-06-the-crust-removal-bound.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

# the crust's direct P is kept: the subtraction ramps in from 1.2 to 1.7 s after P
KEEP_P_S = (1.2, 1.7)
CRUST_ATTRS = ("moho_km", "vpvs", "crust_vp_scale", "sediment_km", "sediment_vs_km_s", "sediment_vpvs")
MOHO_CLASSES = ((20, 35), (35, 50), (50, 60), (60, 70))


def crust_only(reference, moho_km, vpvs, vp_scale, sediment_km, sediment_vs, sediment_vpvs):
    """The crust of ``reference`` replaced as the synthetic sets do, over a mantle without any
    discontinuity (the values just below the Moho down to the bottom of the model)."""
    from xdisc.core.earthmodel import replace_crust

    sed = sediment_km > 0
    m = replace_crust(reference, moho_km, vpvs, vp_scale, sediment_km, sediment_vs if sed else 1.5,
                      sediment_vpvs if sed else 2.2)
    values = m.values.copy()
    values[m.depth_km > moho_km] = m.at(moho_km, "below")[0]
    return m.with_nodes(m.depth_km, values)


def true_crusts(network: Path, reference, perturb=(0.0, 0.0)) -> dict:
    """Each station's true crust, as tests/benchmarks/independent_network.py layers it (sediment, an upper
    and a lower crust at the Conrad fraction; each layer's values from its ``profile``), over a mantle
    without any discontinuity (``reference``'s values just below its Moho), by station id; ``perturb``:
    standard deviations of random errors in Moho depth (km) and Vp/Vs (seeded by the draw). The draw is made
    again from its seed and checked against its truth file."""
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import independent_network as inet  # beside this script

    info = json.loads((network / "truth" / "network.json").read_text())
    params, _ = inet.draw_network(int(info["stations"]), int(info["seed"]))
    truth = pd.read_csv(network / "truth" / "truth.csv").set_index("station")
    mantle = reference.at(reference.moho_km(), "below")[0]
    rng = np.random.default_rng([int(info["seed"]), 43])
    out = {}
    for p in params:
        sid = f"{inet.NETWORK}.{p['station']}"
        t = truth.loc[sid]
        if abs(t["moho_km"] - p["moho_km"]) > 0.06 or abs(t["sediment_km"] - p["sediment_km"]) > 0.006:
            sys.exit(f"{sid}: the draw made again from seed {info['seed']} is not the network's (made with "
                     "overrides?)")
        moho = p["moho_km"] + rng.normal(0.0, perturb[0])
        q = {**p, "moho_km": moho, "vpvs": p["vpvs"] + rng.normal(0.0, perturb[1])}
        sed, conrad = q["sediment_km"], q["conrad_fraction"] * moho
        bounds = [*sorted({0.0, sed, max(sed, conrad)}), moho]  # sediment, upper crust (if below it), lower
        layers = list(itertools.pairwise(bounds))
        # each layer's (vp, vs, rho) from the generator's own profile, at the layer's middle
        inside = inet.profile(q, np.array([(top + bottom) / 2 for top, bottom in layers]))
        depth = [z for top, bottom in layers for z in (top, bottom)] + [moho, float(reference.depth_km[-1])]
        values = [list(v) for v in inside for _ in range(2)] + [list(mantle)] * 2
        out[sid] = reference.with_nodes(np.array(depth), np.array(values, float))
    return out


def hk_crusts(stacking_csv: Path, reference) -> dict:
    """The stacking's H-kappa crust of each station where the stacking used it (``depth_model`` "station
    crust ..."): ``reference``'s crust stretched to its Moho with its Vp/Vs, no sediment, by station id."""
    import pandas as pd

    table = pd.read_csv(stacking_csv)
    used = table[table["depth_model"].astype(str).str.startswith("station")]
    return {row["station"]: crust_only(reference, float(row["moho_km"]), float(row["vpvs"]), 1.0, 0.0, 1.5, 2.2)
            for _, row in used.iterrows()}


def keep_p_taper(time_s: np.ndarray) -> np.ndarray:
    return np.clip((time_s - KEEP_P_S[0]) / (KEEP_P_S[1] - KEEP_P_S[0]), 0.0, 1.0)


def remove(a) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from xdisc.core.deconvolution import RFSettings
    from xdisc.core.earthmodel import load_model
    from xdisc.synth.source import sample_sources
    from xdisc.synth.synthetics import Layering, receiver_functions

    cfg = json.loads(Path(a.settings).read_text())
    syn = cfg["synthetics"]
    rf, layering = RFSettings(**cfg["receiver_function"]), Layering(**cfg["layering"])
    ds = xr.load_dataset(a.synthetics)
    seed, n = int(ds.attrs["seed"]), ds.sizes["sample"]
    slowness, time_s = ds["slowness"].values, ds["time"].values
    refs = {m: load_model(m) for m in np.unique(ds["model"].values)}
    rng = np.random.default_rng([seed, 39])
    dh, dk, dsed = np.zeros(n), np.zeros(n), np.zeros(n)
    if a.error == "mixture":
        far = rng.random(n) < 0.3
        dh = np.where(far, rng.normal(0, 10, n), rng.normal(0, 2, n))
        dk = np.where(far, rng.normal(0, 0.07, n), rng.normal(0, 0.03, n))
        dsed = rng.normal(0, 0.4, n)

    def model(i):
        v = {k: float(ds[k].values[i]) for k in CRUST_ATTRS}
        moho = float(np.clip(v["moho_km"] + dh[i], 15, 80))
        sed = v["sediment_km"]
        if sed > 0:
            sed = float(np.clip(sed + dsed[i], 0.3, 0.9 * moho))
        return crust_only(refs[str(ds["model"].values[i])], moho, float(np.clip(v["vpvs"] + dk[i], 1.55, 2.0)),
                          v["crust_vp_scale"], sed, v["sediment_vs_km_s"], v["sediment_vpvs"])

    crust = np.zeros(ds["rf_clean"].shape, np.float32)

    def work(start):
        rows = range(start, min(start + 8, n))
        sources = [sample_sources(seed, i, slowness.size, syn["source"]) for i in rows]
        crust[start:start + len(rows)] = receiver_functions([layering.apply(model(i)) for i in rows], slowness,
                                                            rf, syn["response_duration_s"], sources)

    with ThreadPoolExecutor(a.workers) as pool:
        list(pool.map(work, range(0, n, 8)))
    ds["rf_clean"].values = (ds["rf_clean"].values - crust * keep_p_taper(time_s)).astype(np.float32)
    ds.attrs["crust_removal"] = f"crust taken out ({a.error})"
    ds.to_netcdf(a.out)
    print(f"{n} samples, crust taken out ({a.error}) -> {a.out}")


def _auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, p)), 3) if 0 < np.sum(y) < len(y) else float("nan")


def evaluate(a) -> None:
    import torch
    from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
    from xdisc.cnn.module import XClassifier
    from xdisc.cnn.predict import predict_station
    from xdisc.core.earthmodel import load_model
    from xdisc.evaluate import evaluation_samples, evaluation_stations

    torch.set_num_threads(1)
    cfg = json.loads(Path(a.settings).read_text())
    cfg["cnn"]["evaluation"].update(snr_levels=list(a.snr), max_samples=0)
    module = XClassifier.load_from_checkpoint(a.checkpoint, map_location="cpu").eval()
    src, keep = evaluation_samples(a.test, cfg)
    settings = ImageSettings.from_config(cfg["images"])
    mapper = DepthMapper(load_model(cfg["earth_model"]), settings.depths_km)
    prob = np.full((len(a.snr), src.label.size), np.nan)
    for k, i, rf, p in evaluation_stations(src, cfg, cfg["cnn"]["seed"] + 3):
        prob[k, i] = predict_station(module, build_image(rf, src.time_s, p, mapper, settings)[0][None])[0]
    with xr.open_dataset(a.test) as ds:
        moho = ds["moho_km"].values[keep]
    y = src.label.astype(bool)
    out = {}
    for k, snr in enumerate(a.snr):
        pr = prob[k]
        threshold = np.quantile(pr[~y], 0.95)  # 5 % false alarms over the whole test set
        row = {"auc": _auc(y, pr), "x_found_at_5pct_false_alarms": round(float(np.mean(pr[y] > threshold)), 3)}
        for lo, hi in MOHO_CLASSES:
            c = (moho >= lo) & (moho < hi)
            row[f"moho {lo}-{hi} km"] = {"stations": int(c.sum()), "auc": _auc(y[c], pr[c]),
                                         "x_found": round(float(np.mean(pr[c & y] > threshold)), 3),
                                         "false_alarms": round(float(np.mean(pr[c & ~y] > threshold)), 3)}
        out[str(snr)] = row
        print(f"SNR {snr}: {json.dumps(row)}")
    Path(a.out).write_text(json.dumps(out, indent=1))


def network(a) -> None:
    import pandas as pd
    import torch
    from xdisc.cnn.images import DepthMapper, ImageSettings, station_images
    from xdisc.cnn.module import XClassifier
    from xdisc.core.artifacts import usable_receiver_functions
    from xdisc.core.deconvolution import RFSettings, normalise_by_p
    from xdisc.core.earthmodel import load_model
    from xdisc.synth.synthetics import Layering, receiver_functions

    torch.set_num_threads(1)
    run = Path(a.run) / "results"
    st = json.loads((run / "settings/station.json").read_text())
    syn = json.loads((run / "settings/synthetics_test.json").read_text())
    rf_settings, layering = RFSettings(**syn["receiver_function"]), Layering(**syn["layering"])
    # image 0 (every receiver function) only: no random subsets or back-azimuth sectors to make and drop
    settings = dataclasses.replace(ImageSettings.from_config(st["images"]), images_per_station=1)
    ref = load_model(st["earth_model"])
    mapper = DepthMapper(ref, settings.depths_km)
    nets = {}
    for spec in a.networks:
        name, _, rest = spec.partition("=")
        path, _, how = rest.partition(":")
        nets[name] = (XClassifier.load_from_checkpoint(path, map_location="cpu").eval(), how == "removed")
    if a.crust == "fit":
        if a.own_crust_run is None:
            sys.exit("--crust fit needs --own-crust-run (a run with cnn.adapt.calibration_crust: station)")
        crusts = {}
        for f in glob.glob(str(Path(a.own_crust_run) / "results/calibration/b*/*.nc")):
            with xr.open_dataset(f) as ds:
                c = [float(ds.attrs[f"crust_{k}"]) for k in CRUST_ATTRS]
            crusts[Path(f).stem] = crust_only(ref, *c)
    elif a.crust == "hk":
        crusts = hk_crusts(run / "verdicts" / "stacking.csv", ref)
    else:
        crusts = true_crusts(Path(a.network), ref, a.perturb)
    rows = []
    for f in sorted(glob.glob(str(run / "rf/*.nc"))):
        rf_ds, keep, _ = usable_receiver_functions(f, st["stacking"]["use_qc"])
        row = {"station": Path(f).stem}
        if keep.sum() >= settings.min_rf and row["station"] in crusts:
            rf = rf_ds["rf"].values[keep].astype(float)
            t, p = rf_ds["time"].values, rf_ds["slowness_s_per_km"].values[keep]
            crust = receiver_functions([layering.apply(crusts[row["station"]])], p, rf_settings,
                                       syn["synthetics"]["response_duration_s"])[0]
            removed = normalise_by_p(rf, t) - normalise_by_p(crust, t) * keep_p_taper(t)
            image = {False: station_images(rf, t, p, mapper, settings).images,
                     True: station_images(removed, t, p, mapper, settings).images}
            with torch.no_grad():
                for name, (module, rem) in nets.items():
                    row[name] = float(module.probability(torch.from_numpy(image[rem].astype(np.float32)))[0])
        rows.append(row)
    truth = pd.read_csv(Path(a.network) / "truth/truth.csv")
    df = pd.DataFrame(rows).merge(truth[["station", "x_present", "moho_km"]], on="station").dropna(subset=list(nets))
    out = {"stations": len(df)}
    for name in nets:
        out[name] = {"auc": _auc(df["x_present"], df[name])}
        for lo, hi in ((0, 40), (40, 54), (54, 80)):
            c = df[(df["moho_km"] >= lo) & (df["moho_km"] < hi)]
            out[name][f"moho {lo}-{hi} km"] = _auc(c["x_present"], c[name])
    print(json.dumps(out))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("remove", help="a synthetic set with the crust's response taken out")
    r.add_argument("--synthetics", required=True)
    r.add_argument("--settings", required=True, help="the set's settings file (results/settings/synthetics_*.json)")
    r.add_argument("--error", choices=("none", "mixture"), default="none")
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--out", required=True)
    e = sub.add_parser("evaluate", help="the CNN on the test set's stations by Moho depth")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--test", required=True)
    e.add_argument("--settings", required=True, help="results/settings/evaluate.json of a run")
    e.add_argument("--snr", type=float, nargs="+", default=[3, 10, 30])
    e.add_argument("--out", required=True)
    n = sub.add_parser("network", help="an independent network's stations with a crust taken out (fitted, true "
                       "or the stacking's H-kappa crust)")
    n.add_argument("--run", required=True)
    n.add_argument("--own-crust-run", help="the run whose calibration draws hold each station's fitted crust "
                   "(--crust fit)")
    n.add_argument("--network", required=True)
    n.add_argument("--crust", choices=("fit", "truth", "hk"), default="fit",
                   help="take out each station's fitted crust, its true one (the generator's own layering), or "
                   "the stacking's H-kappa crust (only the stations where the stacking used it are scored)")
    n.add_argument("--perturb", type=float, nargs=2, default=(0.0, 0.0), metavar=("MOHO_KM", "VPVS"),
                   help="with --crust truth: random errors of these standard deviations (seeded)")
    n.add_argument("networks", nargs="+", help="name=checkpoint, or name=checkpoint:removed")
    a = ap.parse_args(argv)
    {"remove": remove, "evaluate": evaluate, "network": network}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
