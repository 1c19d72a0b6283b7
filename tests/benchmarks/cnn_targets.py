"""Targets of the CNN detector, measured (not part of the test suite).

    python tests/benchmarks/cnn_targets.py --out /tmp/cnn_targets [--config config/full.yaml] [--threads 2]

Steps (each prints its numbers; a JSON summary goes to OUT/targets.json):
1. synthetic training and test sets (``xdisc synth`` code, sizes from the config; the test set
   has seed + 1), reused when present in OUT;
2. pretraining (``xdisc train pretrain`` code) timed on this machine; held-out test accuracy,
   ROC AUC, accuracy per reference model;
3. the test set's signals embedded in *real* pre-P noise of the embedded station CX.PB01
   (rf package example data: N and E windows ending >= 5 s before P, deconvolved like the
   receiver functions; 3 events have enough data before P) instead of coloured noise. With
   ``--train-real-noise F`` a fraction F of the training stations takes real noise too: the
   transverse receiver functions of the other events (``--train-noise transverse``) or the
   pre-P windows of the first test event (``pre-p``; the test keeps the other two). With
   ``--noise-controls`` the same test three more times, to tell what in the real noise costs accuracy: the real
   traces phase-randomised (each keeps its amplitude spectrum and loses its bursts and tails: Gaussian noise
   of the real spectra), the real traces clipped at twice their standard deviation (their phases kept, their
   bursts cut) and as many traces of the training generator's coloured noise (the pool's size alone);
4. cross-model generalisation: train on two reference models, test on the third;
5. detection limit, CNN against stacking on the *same* stations: for each dVs, ``--stations``
   synthetic stations with X and as many without (50 RFs each, default noise); the CNN detects
   at the threshold that gives 5 % false positives on the stations without X, stacking when its
   verdict is 'present'. The smallest dVs detected at >= 90 % is each method's limit.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from xdisc import config as cfgmod
from xdisc.cnn import datasets, train
from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
from xdisc.cnn.module import load_classifier, logits_of
from xdisc.core import metrics
from xdisc.core.artifacts import write_netcdf
from xdisc.core.deconvolution import RFSettings
from xdisc.core.earthmodel import load_model
from xdisc.core.moveout import distance_for_slowness
from xdisc.stack.stacking import stack_station
from xdisc.synth.stations import SLOWNESS_GRID, StationDraw, clean_grid, station_parameters, synthetic_station
from xdisc.synth.synthetics import Layering, _row, build_model, make_dataset

DVS = (0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06)


STATION_LAT_LON = (-21.04, -69.49)  # CX.PB01


def _example_data(rf: RFSettings):
    """The rf package's CX.PB01 example: waveforms band-passed (0.03-2 Hz) and resampled to the
    receiver-function rate, the events, and a TauP model."""
    import rf as rfpkg
    from obspy import read, read_events
    from obspy.taup import TauPyModel

    base = Path(rfpkg.__file__).parent / "example"
    st = read(str(base / "example_data.mseed"))
    st.detrend("linear").taper(0.05).filter("bandpass", freqmin=0.03, freqmax=2.0, corners=4, zerophase=True)
    st.resample(rf.sampling_rate_hz)
    return st, read_events(str(base / "example_events.xml")), TauPyModel("ak135")


def _p_time(taup, origin):
    from obspy.geodetics import locations2degrees

    arr = taup.get_travel_times(origin.depth / 1000.0, locations2degrees(origin.latitude, origin.longitude,
                                                                          *STATION_LAT_LON),
                                ["P", "Pdiff", "PKiKP", "PKIKP"])
    return origin.time + arr[0].time if arr else None


def _pool_of_windows(rf: RFSettings, srcs: list, rsps: list, names: list, out: Path, source: str,
                     after_p_s: tuple = (-np.inf, np.inf)) -> Path:
    """Deconvolve response windows with their source windows (5 s Hann tapers, the receiver-function
    settings), keep ``after_p_s`` after P, scale each row to zero mean and unit std, write the pool."""
    from xdisc.core.deconvolution import deconvolve

    n_src = len(srcs[0])
    win = np.ones(n_src)
    win[:50], win[-50:] = np.hanning(100)[:50], np.hanning(100)[50:]
    res = deconvolve(np.array(srcs) * win, np.array(rsps) * win, rf.dt, rf.deconvolution, rf.gaussian_width_hz,
                     time_before_p_s=rf.time_before_p_s, n_out=n_src, water_level=rf.water_level,
                     max_iterations=rf.max_iterations, min_fit_change_percent=rf.min_fit_change_percent)
    t = np.arange(n_src) * rf.dt - rf.time_before_p_s
    pool = res.rf[:, (t >= after_p_s[0]) & (t <= after_p_s[1])]
    pool = (pool - pool.mean(1, keepdims=True)) / pool.std(1, keepdims=True)
    ds = xr.Dataset({"noise": (("trace", "time"), pool.astype(np.float32), {"units": "1"}),
                     "window": ("trace", np.array(names, dtype=object))},
                    attrs={"sampling_rate_hz": rf.sampling_rate_hz, "source": source})
    write_netcdf(ds, out)
    return out


def _p_windows(rf: RFSettings, components: str = "Z"):
    """Per event of the CX.PB01 example whose P lies inside records of every one of ``components``
    (vertical first) with room for the -30..150 s window: (origin, its name = origin time to the
    second, the stream, {component: that window}, the vertical trace, P's sample in it)."""
    st, cat, taup = _example_data(rf)
    n_src = round(180.0 * rf.sampling_rate_hz)
    pre = round(30.0 * rf.sampling_rate_hz)
    for ev in cat:
        o = ev.preferred_origin() or ev.origins[0]
        tp = _p_time(taup, o)
        traces = {c: [tr for tr in st.select(channel=f"BH{c}")
                      if tp is not None and tr.stats.starttime < tp < tr.stats.endtime] for c in components}
        if not all(traces.values()):
            continue
        z = traces["Z"][0]
        ip = round((tp - z.stats.starttime) * rf.sampling_rate_hz)
        cut = {c: trs[0].data[ip - pre:ip - pre + n_src].astype(float) for c, trs in traces.items()}
        if ip - pre < 0 or min(w.size for w in cut.values()) < n_src:
            continue
        yield o, o.time.isoformat()[:19], st, cut, z, ip


def real_noise_pool(rf: RFSettings, out: Path, step_s: float = 10.0) -> Path:
    """Real pre-P noise of CX.PB01 (rf package example data: 13 events, 9-minute windows) turned
    into receiver-function noise the way real data are: band-passed (0.03-2 Hz), resampled, and
    deconvolved (same method and settings as the receiver functions) with the event's own vertical
    P window (-30..150 s) as source and a pre-P window of the N or E component (ending >= 5 s before
    P; windows every ``step_s``) as response. Rows: (event, component, window), 180 s long, so that
    receiver-function-length windows of them start anywhere in the first 50 s."""
    srcs, rsps, names = [], [], []
    for _, name, st, cut, z, ip in _p_windows(rf):
        n_src = cut["Z"].size
        for tr in st.select(channel="BH[NE]"):
            if abs(tr.stats.starttime - z.stats.starttime) > 1.0:
                continue
            last = ip - round(5.0 * rf.sampling_rate_hz) - n_src  # the window ends 5 s before P
            for a in range(0, last + 1, round(step_s * rf.sampling_rate_hz)):
                srcs.append(cut["Z"])
                rsps.append(tr.data[a:a + n_src].astype(float))
                names.append(f"{name} {tr.stats.channel} +{a / rf.sampling_rate_hz:.0f}s")
    return _pool_of_windows(rf, srcs, rsps, names, out, "CX.PB01 (rf package example data): pre-P N/E windows "
                            "deconvolved with the event's vertical P window, like receiver functions")


def transverse_noise_pool(rf: RFSettings, out: Path, exclude: set[str], after_p_s: tuple = (3.0, 140.0)) -> Path:
    """Transverse receiver functions of CX.PB01 (rf package example data) as a noise pool: a 1-D
    isotropic Earth puts no P-to-S conversion on T, so what the deconvolution leaves there is noise
    (microseism, P coda, scattering), processed exactly like the radial receiver functions. Each
    event's T component (rotated with the back azimuth) is deconvolved with its vertical P window
    (-30..150 s, as in :func:`real_noise_pool`) and kept from ``after_p_s[0]`` (direct P and
    near-P energy left out) to ``after_p_s[1]`` after P. Events whose origin time starts with one of
    ``exclude`` (the real-noise test events) are left out."""
    from obspy.geodetics import gps2dist_azimuth

    srcs, rsps, names = [], [], []
    for o, name, _, cut, _, _ in _p_windows(rf, "ZNE"):
        if name in exclude:
            continue
        baz = np.radians(gps2dist_azimuth(*STATION_LAT_LON, o.latitude, o.longitude)[1])
        srcs.append(cut["Z"])
        rsps.append(-cut["E"] * np.cos(baz) + cut["N"] * np.sin(baz))  # T, as receiver_functions.prepare_events
        names.append(f"{name} T")
    return _pool_of_windows(rf, srcs, rsps, names, out, f"CX.PB01 (rf package example data): transverse receiver "
                            f"functions, {after_p_s[0]:g}-{after_p_s[1]:g} s after P", after_p_s)


def phase_randomised(pool: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """``copies`` versions of every trace of ``pool`` (trace, time; NaN padding at the end kept) with the same
    amplitude spectrum and uniformly random phases: stationary Gaussian noise of each trace's spectrum, without
    its bursts and heavy tails."""
    out = np.full((copies * pool.shape[0], pool.shape[1]), np.nan)
    for k, row in enumerate(np.tile(pool, (copies, 1))):
        n = int(np.isfinite(row).cumprod().sum())
        spec = np.fft.rfft(row[:n] - row[:n].mean())
        phase = np.exp(2j * np.pi * rng.random(spec.size))
        phase[0] = 1.0
        if n % 2 == 0:
            phase[-1] = np.sign(phase[-1].real) or 1.0  # the Nyquist bin of an even length stays real
        out[k, :n] = np.fft.irfft(np.abs(spec) * phase, n)
    return out


def generator_pool(cfg: dict, rf: RFSettings, n_traces: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n_traces`` traces of the training generator's coloured noise (``synthetics.noise``: a colour exponent
    and a microseism peak drawn per trace from the configured ranges), ``length`` samples each."""
    from xdisc.synth.augment import coloured_noise

    noise = cfg["synthetics"]["noise"]
    rows = [coloured_noise(rng, length, rf.dt, rf.gaussian_width_hz, rng.uniform(*noise["colour_exponent"]),
                           (rng.uniform(*noise["microseism_amplitude"]), rng.uniform(*noise["microseism_hz"])))
            for _ in range(n_traces)]
    return np.array(rows)


def evaluate_set(module, src, cfg, seed, noise_pool=None, models=None) -> dict:
    keep = np.arange(src.label.size) if models is None else np.flatnonzero(np.isin(src.model, models))
    draw = StationDraw.from_config(cfg["synthetics"], cfg["cnn"])
    if noise_pool is not None:
        draw = StationDraw(**{**draw.__dict__, "real_noise_fraction": 1.0})
    data = datasets.SyntheticImages(src, keep, ImageSettings.from_config(cfg["images"]), draw, cfg["earth_model"],
                                    seed, fixed=True, noise_pool=noise_pool)
    logits, y = logits_of(module, data)
    return train.evaluate(logits, y, float(module.temperature))


def detection_limit(module, cfg, n_stations: int, n_rf: int, seed: int) -> dict:
    rf, lay = RFSettings(**cfg["receiver_function"]), Layering(**cfg["layering"])
    refs = {m: load_model(m) for m in ("ak135", "iasp91", "prem")}
    settings = ImageSettings.from_config(cfg["images"])
    mapper = DepthMapper(load_model(cfg["earth_model"]), settings.depths_km)
    draw = StationDraw.from_config(cfg["synthetics"], cfg["cnn"])
    time_s = rf.time_axis()

    def stations(dvs, s):
        p = station_parameters(n_stations, dvs, s)
        grids = clean_grid([build_model(_row(p, i), refs[p["model"][i]]) for i in range(n_stations)], rf, lay)
        rng = np.random.default_rng([s, 3])
        probs, verdicts = [], []
        for i in range(n_stations):
            traces, slow = synthetic_station(grids[i], SLOWNESS_GRID, time_s, rf.dt, rf.gaussian_width_hz, draw, rng,
                                             n_rf=n_rf, model_name=p["model"][i])
            img = build_image(traces, time_s, slow, mapper, settings)[0]
            with torch.no_grad():  # logits: probabilities saturate at 1.0 and would tie at the threshold
                probs.append(float(module(torch.from_numpy(img[None]))[0]))
            a = stack_station(traces, time_s, slow, distance_for_slowness(slow, p["model"][i]),
                              refs[cfg["earth_model"]],
                              cfg["stacking"]).attrs
            verdicts.append(a["verdict"])
        return np.array(probs), np.array(verdicts)

    p0, v0 = stations(None, seed)
    threshold = float(np.quantile(p0, 0.95))
    rows = {"no_x": {"cnn_false_positive": float(np.mean(p0 > threshold)),
                     "stacking_false_positive": float(np.mean(v0 == "present")), "cnn_threshold": threshold}}
    print(f"  no X: CNN logit threshold {threshold:.3f} (5 % FPR), stacking false positives "
          f"{100 * np.mean(v0 == 'present'):.1f} %")
    for k, dvs in enumerate(DVS):
        p1, v1 = stations(dvs, seed + 10 * (k + 1))
        y = np.r_[np.zeros(p0.size), np.ones(p1.size)]
        rows[f"{dvs:.3f}"] = {"cnn_tpr_at_5pct_fpr": float(np.mean(p1 > threshold)),
                              "cnn_auc": float(metrics.roc_auc(y, np.r_[p0, p1])),
                              "stacking_detected": float(np.mean(v1 == "present"))}
        r = rows[f"{dvs:.3f}"]
        print(f"  dVs {100 * dvs:4.1f} %: CNN TPR {100 * r['cnn_tpr_at_5pct_fpr']:5.1f} % (AUC {r['cnn_auc']:.3f}), "
              f"stacking {100 * r['stacking_detected']:5.1f} %")

    def limit(key):
        return next((d for d in DVS if rows[f"{d:.3f}"][key] >= 0.9), None)

    rows["cnn_limit_dvs"] = limit("cnn_tpr_at_5pct_fpr")
    rows["stacking_limit_dvs"] = limit("stacking_detected")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", type=Path, help="configuration (default: built-in defaults)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--stations", type=int, default=100, help="stations per dVs row of the detection limit")
    ap.add_argument("--skip", nargs="*", default=[], choices=["crossmodel", "limit", "realnoise"])
    ap.add_argument("--model", type=Path, help="score this checkpoint (e.g. the shipped network) instead of "
                    "pretraining one; the test set is OUT/test.nc, made when absent (no cross-model step)")
    ap.add_argument("--train-real-noise", type=float, default=0.0,
                    help="fraction of training stations with real CX.PB01 noise (see --train-noise); the real-noise "
                         "test uses only events that training never saw")
    ap.add_argument("--noise-controls", action="store_true",
                    help="score the real-noise test also with the real traces phase-randomised (10 versions of each), "
                         "clipped at twice their standard deviation, and with as many traces of the training "
                         "generator's noise")
    ap.add_argument("--train-noise", choices=["transverse", "pre-p"], default="transverse",
                    help="real training noise: transverse receiver functions of the events that are not in the "
                         "real-noise test (default), or the pre-P windows of the first test event (the test then "
                         "keeps the other events)")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    cfg = cfgmod.load(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    rf = RFSettings(**cfg["receiver_function"])
    summary: dict = {"config": str(args.config), "threads": args.threads}
    train_nc, test_nc = args.out / "train.nc", args.out / "test.nc"
    if args.model is not None:
        args.skip = sorted(set(args.skip) | {"crossmodel"})
    if not train_nc.exists() and args.model is None:
        t0 = time.perf_counter()
        write_netcdf(make_dataset(cfg, n_jobs=args.threads), train_nc)
        print(f"synthetic training set: {cfg['synthetics']['n_samples']} samples in {time.perf_counter() - t0:.0f} s")
    if not test_nc.exists():
        tcfg = {**cfg, "synthetics": cfgmod.held_out_synthetics(cfg["synthetics"])}
        write_netcdf(make_dataset(tcfg, n_jobs=args.threads), test_nc)
    workers = args.threads if args.threads >= 2 else 0  # as 'xdisc train --workers auto'
    pool_path = real_noise_pool(rf, args.out / "real_noise.nc")
    with xr.open_dataset(pool_path) as ds:
        pool_events = np.array([str(w)[:19] for w in ds["window"].values])
    test_rows = np.arange(pool_events.size)  # rows of the real pre-P pool used by the real-noise test
    if args.train_real_noise > 0 and args.model is None:
        if args.train_noise == "transverse":  # every event that is not a test event
            train_path = transverse_noise_pool(rf, args.out / "transverse_noise_train.nc", set(pool_events))
        else:  # pre-P windows of the first event for training, the other events for the test
            first = pool_events == pool_events[0]
            test_rows = np.flatnonzero(~first)
            with xr.open_dataset(pool_path) as ds:
                write_netcdf(ds.isel(trace=np.flatnonzero(first)).load(), args.out / "real_noise_train.nc")
            train_path = args.out / "real_noise_train.nc"
        cfg = cfgmod.deep_merge(cfg, {"synthetics": {"noise": {"real_noise_file": str(train_path),
                                                               "real_noise_fraction": args.train_real_noise}}})
        summary["train_real_noise"] = {"fraction": args.train_real_noise, "kind": args.train_noise,
                                       "file": str(train_path)}
    if args.model is None:
        t0 = time.perf_counter()
        res = train.pretrain(cfg, str(train_nc), str(test_nc), args.out / "pretrain.ckpt", args.out / "pretrain.json",
                             threads=1 if workers else args.threads, num_workers=workers)
        summary["pretrain_seconds"] = time.perf_counter() - t0
        summary["pretrain"] = {k: res[k] for k in ("epochs", "fit_seconds", "temperature", "train_samples")}
        summary["test"] = {k: v for k, v in res["test"].items() if k not in ("confusion",)}
        print(f"pretrain: {res['epochs']} epochs, {summary['pretrain_seconds']:.0f} s in all; test accuracy "
              f"{res['test']['accuracy']:.4f}, AUC {res['test']['roc_auc']:.4f}, per model {res['test']['per_model']}")
    summary["model"] = str(args.model or args.out / "pretrain.ckpt")
    module = load_classifier(summary["model"])
    src = datasets.SyntheticSource.read(test_nc)
    if args.model is not None:  # a given checkpoint: the canonical test set as pretraining scores it (seed + 2)
        summary["test"] = {k: v for k, v in evaluate_set(module, src, cfg, cfg["cnn"]["seed"] + 2).items()
                           if k != "confusion"}
        print(f"canonical test set: accuracy {summary['test']['accuracy']:.4f}, AUC {summary['test']['roc_auc']:.4f}")
    if "realnoise" not in args.skip:
        from xdisc.synth.synthetics import load_noise_pool

        pool = load_noise_pool(str(pool_path), rf)[test_rows]  # events never seen in training
        summary["real_noise"] = evaluate_set(module, src, cfg, cfg["cnn"]["seed"] + 2, noise_pool=pool)
        summary["real_noise"]["pool_traces"] = int(pool.shape[0])
        print(f"real pre-P noise ({pool.shape[0]} traces of CX.PB01): "
              f"accuracy {summary['real_noise']['accuracy']:.4f}, "
              f"AUC {summary['real_noise']['roc_auc']:.4f}")
        if args.noise_controls:
            rng = np.random.default_rng(cfg["cnn"]["seed"] + 3)
            controls = {"phase_randomised": phase_randomised(pool, 10, rng),
                        "clipped_2sd": np.clip(pool, -2.0 * np.nanstd(pool, axis=1, keepdims=True),
                                               2.0 * np.nanstd(pool, axis=1, keepdims=True)),
                        "generator_same_count": generator_pool(cfg, rf, pool.shape[0], pool.shape[1], rng)}
            summary["real_noise_controls"] = {}
            for name, control in controls.items():
                r = evaluate_set(module, src, cfg, cfg["cnn"]["seed"] + 2, noise_pool=control)
                summary["real_noise_controls"][name] = {**r, "pool_traces": int(control.shape[0])}
                print(f"  control, {name.replace('_', ' ')} ({control.shape[0]} traces): accuracy "
                      f"{r['accuracy']:.4f}, AUC {r['roc_auc']:.4f}")
    if "crossmodel" not in args.skip:
        summary["cross_model"] = {}
        for held in ("ak135", "iasp91", "prem"):
            train_models = [m for m in ("ak135", "iasp91", "prem") if m != held]
            r = train.pretrain(cfg, str(train_nc), str(test_nc), args.out / f"cross_{held}.ckpt",
                                  args.out / f"cross_{held}.json", threads=1 if workers else args.threads,
                                  train_models=train_models, test_models=[held], num_workers=workers)
            summary["cross_model"][held] = {"accuracy": r["test"]["accuracy"], "roc_auc": r["test"]["roc_auc"]}
            print(f"cross-model: train {'+'.join(train_models)}, test {held}: accuracy {r['test']['accuracy']:.4f}, "
                  f"AUC {r['test']['roc_auc']:.4f}")
    if "limit" not in args.skip:
        print(f"detection limit ({args.stations} stations per row, 50 RFs, default noise):")
        summary["detection_limit"] = detection_limit(module, cfg, args.stations, 50, 500)
        print(f"  limit (>= 90 %): CNN {summary['detection_limit']['cnn_limit_dvs']}, "
              f"stacking {summary['detection_limit']['stacking_limit_dvs']}")
    (args.out / "targets.json").write_text(json.dumps(summary, indent=2, default=float))


if __name__ == "__main__":
    main()
