"""How much X signal do the held-out synthetic test images hold? A clairvoyant ceiling for the CNN.

    python tests/benchmarks/cnn_ceiling.py --test OUT/test.nc --checkpoint OUT/pretrain.ckpt \
        [--config config/full.yaml] [--noise-pool OUT/real_noise.nc] [--json OUT/ceiling.json]

(``OUT`` from tests/benchmarks/cnn_targets.py). Not part of the test suite.

For every test sample with X the script re-simulates its *twin*: the same model, crust, 410/660,
distractors and everything else, without X. Both go through the same station draw as the CNN's
held-out test images (same random stream: same distances, noise, spurious pulses, trimming), so
the difference of the two images' amplitude channels is the X signal itself, and the image's
noise channel is its standard error. Per sample

    d' = max over depth z in 200-400 km of sqrt( sum over slowness bins (delta_b(z) / sigma_b(z))^2 )

is the detectability of X for a clairvoyant detector that knows X's depth and amplitude and
reads the image there (for a Gaussian pulse in noise of the same shape this is the matched
filter). Between a sample and its twin, that detector is right with probability Phi(d'/2); the
mean over the test set is its accuracy. The noise channel knows only the pre-P noise; a second
d' uses the residual that is really there in 200-400 km instead (twin image minus the noise-free
image of the same slownesses: noise, spurious pulses, jitter, shifts), per bin the larger of the
two. It ignores the look-elsewhere cost of an unknown depth
and the distractors, so it is an optimistic estimate of what any classifier of these images
can reach, not a proof. The CNN's accuracy (its held-out test images, same thresholds) is
reported per d' class next to it, which tells whether the CNN misses X that is there or X that is
buried in noise.

Two detectors that do *not* know X's depth bracket the CNN from the other side (both score the
largest t-value of the inverse-variance weighted stack over the slowness bins, SCAN_KM deep):
the *scan detector* reads the test images as they are, like a conventional depth-stack pick (also
divided by a robust scale of the stack in 450-620 km); the *known-structure scan* first subtracts
the noise-free image of the twin, so it knows the crust, the multiples and the distractors and
pays only for the unknown depth and the noise. Their accuracies use a threshold fitted on the
other half of the samples (even / odd rows).

A third detector knows even more and still not the depth: the *known-signal scan* knows the crust
(it subtracts the noise-free twin image) and the X signal's shape and strength (the noise-free
image with X minus the one without), and slides that template along depth over every position
that keeps X in SCAN_KM, scoring the largest noise-weighted correlation (a matched filter whose
only unknown is the depth). The difference between its accuracy and the clairvoyant's is the
price of not knowing where X is; anything below it that a classifier loses is the price of not
knowing the structure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import xarray as xr
from xdisc import config as cfgmod
from xdisc.cnn import datasets
from xdisc.cnn.images import DepthMapper, ImageSettings, build_image
from xdisc.cnn.module import load_classifier, logits_of
from xdisc.core import metrics
from xdisc.core.deconvolution import RFSettings
from xdisc.core.earthmodel import load_model
from xdisc.synth.stations import StationDraw, synthetic_station
from xdisc.synth.synthetics import PARAMETER_DOCS, Layering, simulate

D_CLASSES = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, np.inf)


def phi(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x, float) / math.sqrt(2.0)))


def twin_parameters(ds: xr.Dataset, rows: np.ndarray) -> dict:
    """The generating parameters of samples ``rows`` with X removed (label 0, no jump)."""
    p = {k: ds[k].values[rows] for k in PARAMETER_DOCS if k in ds}
    p["label"] = np.zeros(rows.size, np.int8)
    return p


WINDOW_KM = (200.0, 400.0)
SCAN_KM = (240.0, 360.0)  # X depths (synthetics.x.depth_km default) plus half a pulse either side
SCALE_KM = (450.0, 620.0)  # between the 410 and the 660: no X, no discontinuity in the models


def stack_t(img: np.ndarray) -> np.ndarray:
    """t-value of the inverse-variance weighted stack over slowness bins at each depth (the
    CNN's derived channel before clipping)."""
    amp, noise = img[0], np.maximum(img[1], 1e-4)
    w = noise**-2.0
    return (amp * w).sum(axis=0) / np.sqrt(w.sum(axis=0))


def _largest_in(t: np.ndarray, depths: np.ndarray, window: tuple) -> float:
    return float(t[(depths >= window[0]) & (depths <= window[1])].max())


def scan_peak(amplitude: np.ndarray, noise: np.ndarray, depths: np.ndarray) -> float:
    """Largest stack t-value over SCAN_KM of an amplitude channel with its noise channel."""
    return _largest_in(stack_t(np.stack([amplitude, noise])), depths, SCAN_KM)


def scan_statistics(img: np.ndarray, depths: np.ndarray) -> tuple[float, float]:
    """A conventional detector that does not know X's depth: the largest stack t-value over
    SCAN_KM, raw and divided by a robust scale of the stack t-values in SCALE_KM (which carries
    the residual that the noise channel misses: spurious pulses, jitter, shifts)."""
    t = stack_t(img)
    peak = _largest_in(t, depths, SCAN_KM)
    ref = t[(depths >= SCALE_KM[0]) & (depths <= SCALE_KM[1])]
    scale = 1.4826 * float(np.median(np.abs(ref - np.median(ref))))
    return peak, peak / max(scale, 1e-6)


def crossfit_accuracy(y: np.ndarray, score: np.ndarray) -> float:
    """Accuracy with the threshold fitted on the other half of the samples (even/odd rows), so
    the threshold is not tuned on the samples it is scored on."""
    idx = np.arange(y.size)
    right = 0
    for part in (0, 1):
        fit, use = idx % 2 == part, idx % 2 != part
        cands = np.unique(score[fit])
        accs = [np.mean((score[fit] >= c) == (y[fit] == 1)) for c in cands]
        thr = cands[int(np.argmax(accs))]
        right += int(np.sum((score[use] >= thr) == (y[use] == 1)))
    return right / y.size


def known_signal_scan(residual: np.ndarray, template: np.ndarray, noise: np.ndarray, depths: np.ndarray,
                      x_depth_km: float, search: bool = True) -> float:
    """Largest noise-weighted correlation of ``residual`` (bin, depth: image minus the noise-free
    image without X) with ``template`` (the noise-free X signal) shifted along depth so that X
    (at ``x_depth_km`` in the template) stays in SCAN_KM, divided by the template's weighted norm
    (so that it is the matched-filter output in units of the noise). ``search=False``: the
    template where it is (X's depth known: the clairvoyant's matched filter)."""
    step = float(depths[1] - depths[0])
    w = 1.0 / np.maximum(noise, 1e-4) ** 2
    lo = int(np.floor((SCAN_KM[0] - x_depth_km) / step)) if search else 0
    hi = int(np.ceil((SCAN_KM[1] - x_depth_km) / step)) if search else 0
    best = -np.inf
    for k in range(lo, hi + 1):
        shifted = np.roll(template, k, axis=1)
        if k > 0:
            shifted[:, :k] = 0.0
        elif k < 0:
            shifted[:, k:] = 0.0
        norm = np.sqrt(np.sum(shifted**2 * w))
        if norm > 0:
            best = max(best, float(np.sum(residual * shifted * w) / norm))
    return best


def detectability(img_x: np.ndarray, img_twin: np.ndarray, depths: np.ndarray,
                  sigma: np.ndarray | None = None) -> float:
    """d' of the X signal (amplitude difference / standard error, summed over bins in quadrature);
    ``sigma`` (bin,): a noise level per bin instead of the image's noise channel."""
    sel = (depths >= WINDOW_KM[0]) & (depths <= WINDOW_KM[1])
    delta = img_x[0][:, sel] - img_twin[0][:, sel]
    sig = img_x[1][:, sel] if sigma is None else sigma[:, None]
    return float(np.sqrt(np.sum((delta / sig) ** 2, axis=0)).max())


def residual_sigma(img_twin: np.ndarray, img_clean: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """Per bin: the larger of the rms residual (noisy minus noise-free) in the window and the mean
    noise channel there; bins without data get infinity."""
    sel = (depths >= WINDOW_KM[0]) & (depths <= WINDOW_KM[1])
    rms = np.sqrt(np.mean((img_twin[0][:, sel] - img_clean[0][:, sel]) ** 2, axis=1))
    sig = np.maximum(rms, img_twin[1][:, sel].mean(axis=1))
    return np.where(rms > 0, sig, np.inf)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", type=Path, required=True, help="synthetic test set (xdisc synth, seed + 1)")
    ap.add_argument("--checkpoint", type=Path, required=True, help="pretrained CNN (xdisc train pretrain)")
    ap.add_argument("--config", type=Path, help="configuration the test set and CNN were made with")
    ap.add_argument("--noise-pool", type=Path, help="real noise pool: test images with real noise instead")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cfg = cfgmod.load(args.config)
    rf, lay = RFSettings(**cfg["receiver_function"]), Layering(**cfg["layering"])
    settings = ImageSettings.from_config(cfg["images"])
    draw = StationDraw.from_config(cfg["synthetics"], cfg["cnn"])
    pool = None
    if args.noise_pool:
        from xdisc.synth.synthetics import load_noise_pool

        pool = load_noise_pool(str(args.noise_pool), rf)
        draw = StationDraw(**{**draw.__dict__, "real_noise_fraction": 1.0})
    seed = cfg["cnn"]["seed"] + 2  # the held-out test images of xdisc train pretrain
    src = datasets.SyntheticSource.read(args.test)
    module = load_classifier(args.checkpoint)
    data = datasets.SyntheticImages(src, np.arange(src.label.size), settings, draw, cfg["earth_model"], seed,
                                    fixed=True, noise_pool=pool)
    logits, y = logits_of(module, data)
    pred = (1.0 / (1.0 + np.exp(-logits / float(module.temperature)))) >= 0.5
    scans = np.array([scan_statistics(data[i][0].numpy(), settings.depths_km) for i in range(y.size)])

    with xr.open_dataset(args.test) as ds:
        rows = np.flatnonzero(ds["label"].values == 1)
        twin_p = twin_parameters(ds, rows)
        slowness = ds["slowness"].values.astype(float)
        dvs, grad = ds["x_dvs"].values, ds["x_gradient_km"].values
        x_depth = ds["x_depth_km"].values
        distractor = ds["distractor"].values.astype(str)
    print(f"simulating {rows.size} twins without X ...", flush=True)
    twins = simulate(twin_p, slowness, rf, lay, cfg["synthetics"]["response_duration_s"], n_jobs=args.threads)
    mapper = DepthMapper(load_model(cfg["earth_model"]), settings.depths_km)
    quiet = StationDraw(**{**draw.__dict__, "spurious_probability": 0.0, "amplitude_jitter": 0.0,
                           "time_shift_s": 0.0, "trim_probability": 0.0, "real_noise_fraction": 0.0})
    dprime = np.full(src.label.size, np.nan)
    dprime_res = np.full(src.label.size, np.nan)
    known = np.full((src.label.size, 2), np.nan)  # known-structure scan: (with X, its twin)
    matched = np.full((src.label.size, 2, 2), np.nan)  # known-signal scan: (with X, its twin) x (scan, known depth)
    for k, i in enumerate(rows):
        imgs = []
        for clean, d, snr in ((src.clean[i], draw, None), (twins[k], draw, None), (twins[k], quiet, 1e9),
                              (src.clean[i], quiet, 1e9)):
            rng = np.random.default_rng([seed, 10**6, int(i)])  # SyntheticImages' fixed draw of sample i
            traces, slow = synthetic_station(clean, src.grid_slowness, src.time_s, src.dt, src.gaussian_width_hz,
                                             d, rng, snr=snr, noise_pool=pool if snr is None else None,
                                             model_name=cfg["earth_model"])
            imgs.append(build_image(traces, src.time_s, slow, mapper, settings)[0])
        assert np.allclose(imgs[0], data[int(i)][0].numpy(), atol=1e-5), "not the CNN's test image"
        dprime[i] = detectability(imgs[0], imgs[1], settings.depths_km)
        dprime_res[i] = detectability(imgs[0], imgs[1], settings.depths_km,
                                      residual_sigma(imgs[1], imgs[2], settings.depths_km))
        known[i] = [scan_peak(img[0] - imgs[2][0], img[1], settings.depths_km) for img in imgs[:2]]
        template = imgs[3][0] - imgs[2][0]
        matched[i] = [[known_signal_scan(img[0] - imgs[2][0], template, img[1], settings.depths_km, x_depth[i],
                                         search) for search in (True, False)] for img in imgs[:2]]

    x = y == 1
    clair_tpr = phi(dprime[x] / 2.0)
    summary = {"test": str(args.test), "checkpoint": str(args.checkpoint), "noise": "real" if pool is not None
               else "coloured", "n": int(y.size), "n_x": int(x.sum()),
               "cnn_accuracy": float(np.mean(pred == y)), "cnn_tpr": float(pred[x].mean()),
               "cnn_false_positive_rate": float(pred[~x].mean()),
               "clairvoyant_accuracy": float(np.mean(clair_tpr)),
               "median_dprime": float(np.median(dprime[x])),
               "clairvoyant_accuracy_residual_noise": float(np.mean(phi(dprime_res[x] / 2.0))),
               "median_dprime_residual_noise": float(np.median(dprime_res[x]))}
    print(f"CNN: accuracy {summary['cnn_accuracy']:.3f} (TPR {summary['cnn_tpr']:.3f}, false positives "
          f"{summary['cnn_false_positive_rate']:.3f}); clairvoyant single-depth detector: accuracy "
          f"{summary['clairvoyant_accuracy']:.3f}; median d' {summary['median_dprime']:.2f}; with the residual "
          f"noise: accuracy {summary['clairvoyant_accuracy_residual_noise']:.3f}, median d' "
          f"{summary['median_dprime_residual_noise']:.2f}")
    summary["cnn_auc"] = metrics.roc_auc(y, logits)
    summary["cnn_accuracy_crossfit_threshold"] = crossfit_accuracy(y, logits)
    print(f"CNN: AUC {summary['cnn_auc']:.3f}, accuracy {summary['cnn_accuracy_crossfit_threshold']:.3f} "
          "with the threshold fitted on the other half of the test set")
    for k, name in enumerate(("scan_detector", "scan_detector_normalised")):
        summary[name] = {"auc": metrics.roc_auc(y, scans[:, k]),
                         "accuracy_crossfit_threshold": crossfit_accuracy(y, scans[:, k])}
        print(f"{name.replace('_', ' ')} (largest stack t-value over {SCAN_KM[0]:.0f}-{SCAN_KM[1]:.0f} km"
              f"{', over its robust scale in 450-620 km' if k else ''}): AUC {summary[name]['auc']:.3f}, "
              f"accuracy {summary[name]['accuracy_crossfit_threshold']:.3f} (threshold fitted on the other half)")
    kx = known[x]
    ky = np.r_[np.ones(len(kx), int), np.zeros(len(kx), int)]
    summary["known_structure_scan"] = {"auc": metrics.roc_auc(ky, np.r_[kx[:, 0], kx[:, 1]]),
                                       "accuracy_crossfit_threshold": crossfit_accuracy(ky, np.r_[kx[:, 0], kx[:, 1]])}
    print(f"known-structure scan (subtracts the noise-free image without X, largest stack t-value over "
          f"{SCAN_KM[0]:.0f}-{SCAN_KM[1]:.0f} km; each X sample against its twin): AUC "
          f"{summary['known_structure_scan']['auc']:.3f}, accuracy "
          f"{summary['known_structure_scan']['accuracy_crossfit_threshold']:.3f} (threshold fitted on the other half)")
    mx = matched[x]
    for j, name in enumerate(("known_signal_scan", "known_signal_known_depth")):
        my = np.r_[mx[:, 0, j], mx[:, 1, j]]
        summary[name] = {"auc": metrics.roc_auc(ky, my), "accuracy_crossfit_threshold": crossfit_accuracy(ky, my)}
        print(f"{name.replace('_', ' ')} (knows the structure and X's signal, "
              f"{'not its depth: matched filter slid over ' + str(SCAN_KM) + ' km' if j == 0 else 'and its depth'}; "
              f"each X sample against its twin): AUC {summary[name]['auc']:.3f}, accuracy "
              f"{summary[name]['accuracy_crossfit_threshold']:.3f} (threshold fitted on the other half)")
    for key, dp in (("classes", dprime), ("classes_residual_noise", dprime_res)):
        summary[key] = []
        print(f"by d' ({'pre-P noise' if key == 'classes' else 'residual noise'}):")
        print(f"{'d prime':>10} {'n':>4} {'CNN TPR':>8} {'clairv.':>8} {'dVs %':>6} {'grad km':>8}")
        for lo, hi in itertools.pairwise(D_CLASSES):
            s = x & (dp >= lo) & (dp < hi)
            if not s.any():
                continue
            row = {"dprime": [lo, hi], "n": int(s.sum()), "cnn_tpr": float(pred[s].mean()),
                   "clairvoyant_tpr": float(phi(dp[s] / 2.0).mean()),
                   "median_dvs": float(np.median(dvs[s])), "median_gradient_km": float(np.median(grad[s]))}
            summary[key].append(row)
            print(f"{lo:4.0f}-{hi:<5.0f} {row['n']:4d} {row['cnn_tpr']:8.3f} {row['clairvoyant_tpr']:8.3f} "
                  f"{100 * row['median_dvs']:6.1f} {row['median_gradient_km']:8.1f}")
    summary["false_positive_by_distractor"] = {}
    for kind in np.unique(distractor[~x]):
        s = ~x & (distractor == kind)
        summary["false_positive_by_distractor"][kind] = float(pred[s].mean())
        print(f"no X, distractor {kind}: CNN false positives {100 * pred[s].mean():.1f} % (n={s.sum()})")
    for cut in (2.0, 4.0):
        s = x & (dprime >= cut)
        summary[f"share_x_dprime_below_{cut:.0f}"] = float(np.mean(dprime[x] < cut))
        summary[f"cnn_accuracy_x_dprime_ge_{cut:.0f}_and_no_x"] = float(
            np.mean(np.r_[pred[s], ~pred[~x]]))
        print(f"X with d' < {cut:.0f}: {100 * np.mean(dprime[x] < cut):.1f} %; CNN accuracy on X with d' >= {cut:.0f} "
              f"and every no-X sample: {summary[f'cnn_accuracy_x_dprime_ge_{cut:.0f}_and_no_x']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
