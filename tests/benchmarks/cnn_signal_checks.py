"""What the CNN finds, without noise and without xdisc's own ways of making X (not part of the test suite).

Three checks, each printing rates of the network's calibrated probability (``present`` needs 0.9,
``cnn.adapt.present_probability``):

``injected``: the canonical test set's X samples of dVs >= 3 % (config/config.yaml + config/shipped.yaml,
seed + 1, as the shipped network was scored), each made in five ways and given the same coloured-noise
station draws (per-trace SNR 3-10): the sample as the set holds it (its own crust, X style and extended
sources), the same with impulsive sources, the sample's model without X plus a ``taper`` X with the
injection tests' dVp / drho (dVs / 2, 0.3 dVs), the same X in the sample's own style, and the earth model's
X conversion (AK135's crust, ``taper``) added to the sample without X, as ``xdisc detectability`` injects
X. Pooled and by X style, sediment and gradient. About 1 min on 2 cores (60 samples).

``noise-free``: a draw of ``independent_network.py`` with its clairvoyant networks
(``clairvoyant_bound.py make`` and ``rf``: the X stations without noise, with X and with X's contrasts
zeroed, through the pipeline), scored by a CNN stage of that draw's run (``xdisc predict`` with its
adapted network and station thresholds). How often the network finds X in data with no noise at all, and
how often the structure alone (no X, no noise) reaches 0.5 and 0.9, by sediment.

``sources``: the network's stations (X zeroed; every sediment station and a third of the others) through
xdisc's propagator on the network's own flat layers, and the canonical test set's structures without X,
noise-free, 40 events per station, each with its own source: an impulse, a draw of xdisc's
``synthetics.source``, or the independent network's trapezoid with pP and sP. Images as the pipeline
makes them, scored by the given network.

``evidence``: how much of X the runs' own images hold. For each X station of one or more finished runs of
``independent_network.py``, the t-value of image 0's inverse-variance weighted stack over the slowness
bins (the network's derived channel, :meth:`xdisc.cnn.model.XNet.derive`) at X's true depth (top plus
half the gradient, the largest within 10 km); the CNN's and the stacking's verdicts (the runs'
``cnn.csv`` and ``stacking.csv``) by that t-value; and, at the stations without X, how far the same
statistic strays from a unit normal in 250-350 km (median |t|, 0.674 for pure noise that the noise channel
measures right). Separates the X the images hardly hold from the X the network misses with evidence in front
of it. Seconds per run.

    python tests/benchmarks/cnn_signal_checks.py injected [--samples 60]
    python tests/benchmarks/cnn_signal_checks.py noise-free --seed 2 --network /data/xs2 --bound /data/bound2 \\
        --run /data/xs2-run [--cnn DIR]     # DIR: finetune.ckpt and station_thresholds.csv (default:
                                            # RUN/results/cnn), or adapted.ckpt and thr.csv
    python tests/benchmarks/cnn_signal_checks.py sources --seed 2 --run /data/xs2-run [--checkpoint CKPT]
    python tests/benchmarks/cnn_signal_checks.py evidence --network /data/xs4 /data/xs5 \\
        --run /data/xs4-run /data/xs5-run

Results: docs/results/2026-12-05-what-the-cnn-misses-and-why.md; ``evidence``:
docs/results/2026-12-05-redeconvolved-fine-tuning-cross-fitted.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from xdisc import config as cfgmod
from xdisc.cnn import shipped
from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
from xdisc.cnn.module import load_classifier
from xdisc.cnn.predict import predict_station
from xdisc.core.deconvolution import RFSettings, deconvolve, normalise_by_p
from xdisc.core.earthmodel import Discontinuity, LayerStack, insert_discontinuity, load_model
from xdisc.synth import synthetics as S
from xdisc.synth.source import draw_source, sample_sources, source_spectrum
from xdisc.synth.stations import StationDraw, synthetic_station

HERE = Path(__file__).resolve().parent
N_EVENTS = 40


def _network_module():
    spec = importlib.util.spec_from_file_location("independent_network", HERE / "independent_network.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rates(p: np.ndarray) -> str:
    p = np.asarray(p)
    return f"n {p.size:4d}  >= 0.5: {np.mean(p >= 0.5):.3f}  >= 0.9: {np.mean(p >= 0.9):.3f}" if p.size else "n    0"


# ----------------------------------------------------------------------------- injected

def injected(args) -> None:
    torch.set_num_threads(2)
    cfg = json.loads(json.dumps(shipped.provenance()["config"]))
    syn = cfgmod.held_out_synthetics(cfg["synthetics"])  # the canonical test set's parameters
    seed = syn["seed"]
    p = S.draw_parameters(syn["n_samples"], syn, seed)
    idx = np.flatnonzero((p["label"] == 1) & (p["x_dvs"] >= 0.03))[: args.samples]
    rf = RFSettings(**cfg["receiver_function"])
    lay = S.Layering(**cfg["layering"])
    slow = np.asarray(syn["slowness_s_per_km"], float)
    t = rf.time_axis()
    refs = {m: load_model(m) for m in np.unique(p["model"])}
    earth = load_model(cfg["earth_model"])
    names = ("as in the set", "impulsive sources", "own crust, taper X", "own crust, own style",
             "earth model's X added")
    clean = {k: [] for k in names}
    for i in idx:
        row = S._row(p, i)
        ref = refs[row["model"]]
        with_x, without = S.build_model(row, ref), S.build_model(dict(row, label=0), ref)
        dv = row["x_dvs"]
        taper = Discontinuity(row["x_depth_km"], dv, 0.5 * dv, 0.3 * dv, row["x_gradient_km"], "taper")
        styled = Discontinuity(row["x_depth_km"], dv, 0.5 * dv, 0.3 * dv, row["x_gradient_km"], row["x_style"],
                               row["x_thickness_km"])
        models = (with_x, without, insert_discontinuity(without, taper), insert_discontinuity(without, styled),
                  earth, insert_discontinuity(earth, taper))
        out = normalise_by_p(S.receiver_functions([lay.apply(m) for m in models], slow, rf,
                                                  syn["response_duration_s"]), t)
        src = [sample_sources(seed, int(i), slow.size, syn["source"])]
        clean["as in the set"].append(normalise_by_p(S.receiver_functions(
            [lay.apply(with_x)], slow, rf, syn["response_duration_s"], src), t)[0])
        clean["impulsive sources"].append(out[0])
        clean["own crust, taper X"].append(out[2])
        clean["own crust, own style"].append(out[3])
        clean["earth model's X added"].append(out[1] + out[5] - out[4])
    module = load_classifier(shipped.CHECKPOINT)
    module.eval()
    settings = ImageSettings.from_config(cfg["images"])
    mapper = DepthMapper(earth, settings.depths_km)
    draw = StationDraw.from_config(syn, cfg["cnn"])
    style = np.repeat(p["x_style"][idx], args.draws)
    sed = np.repeat(p["sediment_km"][idx] > 0, args.draws)
    grad = np.repeat(p["x_gradient_km"][idx] > 7.5, args.draws)
    print(f"{idx.size} X samples (dVs >= 3 %) x {args.draws} station draws, per-trace SNR {args.snr}; "
          f"styles {dict(zip(*np.unique(p['x_style'][idx], return_counts=True), strict=True))}")
    for name in names:
        images = []
        for j, i in enumerate(idx):
            for r in range(args.draws):
                rng = np.random.default_rng([77, r, int(i)])  # the same noise for every way of making X
                x, pp = synthetic_station(clean[name][j], slow, t, rf.dt, rf.gaussian_width_hz, draw, rng,
                                          snr=tuple(args.snr))
                images.append(build_image(x, t, pp, mapper, settings)[0])
        prob = predict_station(module, np.stack(images))
        by = "  ".join(f"{s} {np.mean(prob[style == s] >= 0.9):.2f}" for s in np.unique(style))
        print(f"{name:24s} {rates(prob)} | at 0.9: {by} | sediment {np.mean(prob[sed] >= 0.9):.2f} "
              f"none {np.mean(prob[~sed] >= 0.9):.2f} | gradient > 7.5 km {np.mean(prob[grad] >= 0.9):.2f} "
              f"sharp {np.mean(prob[~grad] >= 0.9):.2f}", flush=True)


# ----------------------------------------------------------------------------- noise-free

def noise_free(args) -> None:
    cnn = args.cnn or args.run / "results" / "cnn"
    # a run's folder: the network and thresholds its predict_stations used; else a CNN stage made by hand
    ckpt = cnn / "finetune.ckpt" if (cnn / "finetune.ckpt").is_file() else cnn / "adapted.ckpt"
    thr = cnn / "station_thresholds.csv" if (cnn / "station_thresholds.csv").is_file() else cnn / "thr.csv"
    truth = pd.read_csv(args.network / "truth" / "truth.csv")
    probs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("x", "zero"):
            images = sorted((args.bound / f"run_{kind}" / "results" / "images").glob("*.nc"))
            out = Path(tmp) / f"{kind}.csv"
            subprocess.run([sys.executable, "-m", "xdisc", "predict", *map(str, images), "--settings-file",
                            str(args.run / "results" / "settings" / "predict.json"), "--model", str(ckpt),
                            "--calibration", str(thr), "--out", str(out)], check=True, capture_output=True)
            probs[kind] = pd.read_csv(out)[["station", "probability_all"]].rename(
                columns={"probability_all": f"p_{kind}"})
    m = truth.merge(probs["x"], on="station").merge(probs["zero"], on="station")
    sed = m["sediment_km"] > 0
    print(f"draw {args.seed}: {len(m)} X stations without noise ({ckpt})")
    print(f"  with X:            {rates(m['p_x'])}")
    print(f"  X zeroed:          {rates(m['p_zero'])}")
    print(f"  X zeroed, sediment {rates(m.loc[sed, 'p_zero'])}")
    print(f"  X zeroed, none     {rates(m.loc[~sed, 'p_zero'])}")
    cols = ["station", "x_dvs", "x_depth_km", "x_gradient_km", "x_style", "decoy", "sediment_km", "moho_km",
            "p_x", "p_zero"]
    print(m.loc[(m["p_x"] < 0.9) | (m["p_zero"] >= 0.5), cols].round(3).to_string(index=False))


# ----------------------------------------------------------------------------- sources

def per_event_images(layers: LayerStack, slowness: np.ndarray, rf: RFSettings, duration_s: float,
                     source_cfg: dict, rng: np.random.Generator, mapper, settings, trapezoid) -> np.ndarray:
    """Noise-free images of one structure: ``N_EVENTS`` events at random grid slownesses, each with an
    impulse, one of xdisc's sources, or a trapezoid with pP and sP (``trapezoid(f, rng)``)."""
    rs, zs, nfft = S.response_spectra([layers], slowness, rf, duration_s)
    f = np.fft.rfftfreq(nfft, rf.dt)
    delay = np.exp(-2j * np.pi * f * rf.time_before_p_s)
    t = rf.time_axis()
    k = rng.integers(0, slowness.size, N_EVENTS)
    sources = (np.ones((N_EVENTS, f.size)),
               np.array([source_spectrum(draw_source(rng, source_cfg), f) for _ in range(N_EVENTS)]),
               np.array([trapezoid(f, rng) for _ in range(N_EVENTS)]))
    images = []
    for spec in sources:
        z = np.fft.irfft(zs[0, k] * spec * delay, nfft)[:, :t.size]
        r = np.fft.irfft(rs[0, k] * spec * delay, nfft)[:, :t.size]
        res = deconvolve(z, r, rf.dt, rf.deconvolution, rf.gaussian_width_hz, time_before_p_s=rf.time_before_p_s,
                         n_out=t.size, water_level=rf.water_level, max_iterations=rf.max_iterations,
                         min_fit_change_percent=rf.min_fit_change_percent)
        images.append(build_image(res.rf, t, slowness[k], mapper, settings)[0])
    return np.stack(images)


def sources(args) -> None:
    torch.set_num_threads(2)
    net = _network_module()

    def trapezoid(f, rng):
        ev = {"stf_s": rng.uniform(1, 6), "stf_rise": rng.uniform(0.15, 0.45), "a_pp": -rng.uniform(0.2, 0.7),
              "a_sp": rng.uniform(0.1, 0.5)}
        delay = rng.uniform(2, 100)
        ev.update(pp_delay=delay, sp_delay=delay * rng.uniform(1.1, 1.4))
        w = net._wavelet_spectrum(f, ev)
        return w / w[0]

    settings_dir = args.run / "results" / "settings"
    # the run's settings merged over today's defaults, as xdisc synth and xdisc adapt read them
    cfg = cfgmod.load(None, json.loads((settings_dir / "synthetics_test.json").read_text()))
    images_cfg = cfgmod.load(None, json.loads((settings_dir / "adapt.json").read_text()))["images"]
    rf = RFSettings(**cfg["receiver_function"])
    syn = cfg["synthetics"]
    slow = np.asarray(syn["slowness_s_per_km"], float)
    settings = ImageSettings.from_config(images_cfg)
    mapper = DepthMapper(load_model("ak135"), settings.depths_km)
    ckpt = args.checkpoint or args.run / "results" / "cnn" / "finetune.ckpt"
    module = load_classifier(ckpt)
    module.eval()
    kinds = ("impulse", "xdisc's sources", "trapezoids")
    rows = []
    stations, _ = net.draw_network(100, args.seed)
    for s in stations:
        if s["sediment_km"] <= 0 and int(s["station"][1:]) % 3:
            continue
        L = net.flat_layers(dict(s, x_present=False))
        layers = LayerStack(thickness_km=L[:, 0], vp_km_s=L[:, 1], vs_km_s=L[:, 2], rho_g_cm3=L[:, 3])
        rng = np.random.default_rng([11, args.seed, int(s["station"][1:])])
        p = predict_station(module, per_event_images(layers, slow, rf, syn["response_duration_s"], syn["source"], rng,
                                                     mapper, settings, trapezoid))
        rows.append({"set": "independent", "sediment": s["sediment_km"] > 0, **dict(zip(kinds, p, strict=True))})
    lay = S.Layering(**cfg["layering"])
    test = S.draw_parameters(syn["n_samples"], syn, syn["seed"])  # the run's synthetic test set
    refs = {m: load_model(m) for m in np.unique(test["model"])}
    for i in np.flatnonzero(test["label"] == 0)[: args.samples]:
        row = S._row(test, i)
        rng = np.random.default_rng([13, int(i)])
        layers = lay.apply(S.build_model(row, refs[row["model"]]))
        p = predict_station(module, per_event_images(layers, slow, rf, syn["response_duration_s"], syn["source"], rng,
                                                     mapper, settings, trapezoid))
        rows.append({"set": "xdisc test set", "sediment": row["sediment_km"] > 0, **dict(zip(kinds, p, strict=True))})
    df = pd.DataFrame(rows)
    print(f"structures without X, no noise, {N_EVENTS} events each; network {ckpt}")
    for (name, sed), g in df.groupby(["set", "sediment"]):
        print(f"{name:15s} {'sediment' if sed else 'none':8s} " + " | ".join(f"{k}: {rates(g[k])}" for k in kinds))


# ----------------------------------------------------------------------------- evidence

T_BINS = (-np.inf, 1.0, 2.0, 3.0, 4.0, 6.0, np.inf)


def stack_t(image: np.ndarray) -> np.ndarray:
    """t-value (depth,) of the inverse-variance weighted stack over slowness bins of one image (channels
    amplitude and noise), as :meth:`xdisc.cnn.model.XNet.derive` computes it, not clipped."""
    amp, noise = image[0].astype(float), np.maximum(image[1].astype(float), 1e-4)
    w = noise**-2.0
    return (amp * w).sum(axis=0) / np.sqrt(w.sum(axis=0))


def evidence(args) -> None:
    from xdisc.cnn.datasets import read_station_images
    from xdisc.core.artifacts import open_netcdf

    if len(args.network) != len(args.run):
        raise SystemExit("evidence: give as many --run as --network")
    rows, null = [], []
    for network, run in zip(args.network, args.run, strict=True):
        truth = pd.read_csv(network / "truth" / "truth.csv").set_index("station")
        verdicts = {m: pd.read_csv(run / "results" / "verdicts" / f"{m}.csv").set_index("station")["verdict"]
                    for m in ("cnn", "stacking")}
        paths = sorted((run / "results" / "images").glob("*.nc"))
        if not paths:
            continue
        with open_netcdf(paths[0]) as ds:  # one depth axis for every image of a run (its images settings)
            depths = ds["depth"].values.astype(float)
        window = (depths >= 250) & (depths <= 350)
        for path in paths:
            st = read_station_images(path)
            code = st["station"]
            if not len(st["images"]) or code not in truth.index:
                continue
            t, row = stack_t(st["images"][0]), truth.loc[code]
            if not row["x_present"]:
                null.append(t[window])
                continue
            x_depth = row["x_depth_km"] + 0.5 * np.nan_to_num(row["x_gradient_km"])
            near = np.abs(depths - x_depth) <= 10
            rows.append({"network": network.name, "station": code, "t_at_x": float(t[near].max()),
                         **{m: verdicts[m].get(code, "undetermined") for m in verdicts}})
    df = pd.DataFrame(rows)
    df["t"] = pd.cut(df["t_at_x"], T_BINS)
    print(f"{len(df)} X stations of {len(args.run)} run(s): verdicts by the stack t-value of image 0 at X's depth")
    for m in ("cnn", "stacking"):
        table = pd.crosstab(df["t"], df[m])
        table["found"] = (table.get("present", 0) / table.sum(axis=1)).round(2)
        print(f"{m}:\n{table.to_string()}")
    if null:
        v = np.concatenate(null)
        print(f"stations without X ({len(null)}), 250-350 km: median |t| {np.median(np.abs(v)):.2f} (0.674 for unit "
              f"noise), 95th percentile of |t| {np.percentile(np.abs(v), 95):.2f} (1.96)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("injected", help="ways of making the same X, the shipped network")
    a.add_argument("--samples", type=int, default=60)
    a.add_argument("--draws", type=int, default=4, help="station draws per sample")
    a.add_argument("--snr", type=float, nargs=2, default=(3.0, 10.0), help="per-trace SNR range")
    b = sub.add_parser("noise-free", help="an independent draw's clairvoyant networks, scored by a CNN stage")
    b.add_argument("--seed", type=int, required=True)
    b.add_argument("--network", type=Path, required=True)
    b.add_argument("--bound", type=Path, required=True, help="clairvoyant_bound.py's --out of this draw")
    b.add_argument("--run", type=Path, required=True, help="the draw's pipeline run (results/settings)")
    b.add_argument("--cnn", type=Path, help="folder with finetune.ckpt and station_thresholds.csv, or adapted.ckpt "
                   "and thr.csv (default: RUN/results/cnn)")
    c = sub.add_parser("sources", help="structures without X, one source per event")
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--run", type=Path, required=True, help="the draw's pipeline run (results/settings)")
    c.add_argument("--checkpoint", type=Path, help="default: RUN/results/cnn/finetune.ckpt")
    c.add_argument("--samples", type=int, default=300, help="structures without X from the run's test set")
    e = sub.add_parser("evidence", help="X's evidence in the runs' images, and the verdicts by it")
    e.add_argument("--network", type=Path, nargs="+", required=True, help="independent_network.py draws")
    e.add_argument("--run", type=Path, nargs="+", required=True, help="their runs, in the same order")
    args = ap.parse_args(argv)
    {"injected": injected, "noise-free": noise_free, "sources": sources, "evidence": evidence}[args.command](args)


if __name__ == "__main__":
    main()
