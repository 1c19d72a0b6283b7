"""Benchmark: synthetic receiver functions per second, with the reference measured in the same run.

    python tests/benchmarks/bench_synthetics.py [--traces 288] [--repeat 3]

Prints, for one and two cores:
  * xdisc's forward model (surface R and Z of an incident plane P wave) on the layering and
    trace length of the issue's reference (61 layers, 4096 points at 0.1 s), and the same
    forward model forced to every frequency up to Nyquist (what telewavesim computes);
  * telewavesim 0.2.1 on the same layer stacks, one trace at a time (its API), and the ratio;
  * a straightforward per-trace loop of xdisc's own physics (float64, one trace per call);
  * complete synthetic receiver functions per second (forward + iterative deconvolution +
    model building) with the default configuration.
Cores are limited with sched_setaffinity; numpy's BLAS is held to one thread per worker.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from xdisc import config as cfgmod
from xdisc.core.deconvolution import gaussian_cutoff_hz
from xdisc.core.earthmodel import EARTH_RADIUS_KM, LayerStack, load_model
from xdisc.core.propagator import plane_wave_response
from xdisc.synth.synthetics import make_dataset

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/oracles (test helper, not the package)

DT, NPTS, N_LAYERS = 0.1, 4096, 61


def stack_61(jitter: float, rng) -> LayerStack:
    """AK135 to 700 km in 60 flattened layers over a half-space, velocities jittered per trace."""
    m = load_model("ak135")
    edges = np.linspace(0.0, 700.0, N_LAYERS)
    mid = np.r_[0.5 * (edges[1:] + edges[:-1]), 700.0]
    vals = m.at(mid, "below") * (1 + jitter * rng.standard_normal((mid.size, 1)))
    r = EARTH_RADIUS_KM - mid
    vals[:, :2] *= (EARTH_RADIUS_KM / r)[:, None]
    h = np.r_[EARTH_RADIUS_KM * np.log((EARTH_RADIUS_KM - edges[:-1]) / (EARTH_RADIUS_KM - edges[1:])), 0.0]
    return LayerStack(h, vals[:, 0], vals[:, 1], vals[:, 2], flattened=True)


def timed(fn, repeat):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def xdisc_forward(stacks, slowness, freqs, workers):
    h = np.stack([s.thickness_km for s in stacks])
    vp = np.stack([s.vp_km_s for s in stacks])
    vs = np.stack([s.vs_km_s for s in stacks])
    rho = np.stack([s.rho_g_cm3 for s in stacks])
    parts = np.array_split(np.arange(len(stacks)), workers)

    def run(idx):
        plane_wave_response(h[idx], vp[idx], vs[idx], rho[idx], slowness[idx], freqs)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, parts))


def per_trace_loop(stacks, slowness, freqs):
    for s, p in zip(stacks, slowness, strict=True):
        plane_wave_response(s.thickness_km[None], s.vp_km_s[None], s.vs_km_s[None], s.rho_g_cm3[None], [p], freqs,
                            dtype=np.float64, chunk_elements=freqs.size)


def telewavesim_loop(stacks, slowness):
    from oracles.telewavesim_ref import telewavesim_response

    for s, p in zip(stacks, slowness, strict=True):
        telewavesim_response(s.thickness_km, s.vp_km_s, s.vs_km_s, s.rho_g_cm3, p, DT, NPTS, return_raw=True)


def telewavesim_parallel(stacks, slowness, workers):
    """telewavesim in ``workers`` processes (its Fortran holds the model in module state)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    parts = np.array_split(np.arange(len(stacks)), workers)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(_tw_part, [([stacks[i] for i in idx], slowness[idx]) for idx in parts]))


def _tw_part(args):
    telewavesim_loop(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=288)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.traces
    stacks = [stack_61(0.01, rng) for _ in range(n)]
    slowness = rng.uniform(0.04, 0.08, n)
    freqs_all = np.fft.rfftfreq(NPTS, DT)
    cfg = cfgmod.validate({})
    width = cfg["receiver_function"]["gaussian_width_hz"]
    freqs = freqs_all[freqs_all <= gaussian_cutoff_hz(width)]
    print(f"layer stacks: {N_LAYERS} layers (incl. half-space), {NPTS} points at {DT} s; {n} traces; "
          f"Gaussian width {width} Hz -> {freqs.size} of {freqs_all.size} frequencies carry energy")
    try:
        import telewavesim  # noqa: F401 - only whether it is installed
        have_tw = True
    except ImportError:
        have_tw = False
        print("telewavesim not installed (bash tests/oracles/INSTALL_telewavesim.sh): no reference ratio")

    ref1 = None
    for cores in (1, 2):
        os.sched_setaffinity(0, set(range(cores)))
        t_band = timed(lambda cores=cores: xdisc_forward(stacks, slowness, freqs, cores), args.repeat)
        t_full = timed(lambda cores=cores: xdisc_forward(stacks, slowness, freqs_all, cores), args.repeat)
        print(f"\n{cores} core(s):")
        print(f"  xdisc forward (Gaussian band)        {n / t_band:8.1f} RF/s")
        print(f"  xdisc forward (all {freqs_all.size} frequencies)  {n / t_full:8.1f} RF/s")
        if cores == 1:
            sub = max(8, n // 8)
            t_loop = timed(lambda sub=sub: per_trace_loop(stacks[:sub], slowness[:sub], freqs), 1) * n / sub
            print(f"  per-trace loop of the same physics   {n / t_loop:8.1f} RF/s   "
                  f"(batched is {t_loop / t_band:.1f}x faster)")
        if have_tw:
            sub = max(8, n // 4)
            if cores == 1:
                t_tw = timed(lambda sub=sub: telewavesim_loop(stacks[:sub], slowness[:sub]), 1) * n / sub
                ref1 = t_tw
            else:
                t_tw = timed(lambda sub=sub, cores=cores: telewavesim_parallel(stacks[:sub], slowness[:sub], cores),
                             1) * n / sub
            print(f"  telewavesim 0.2.1 (same stacks)      {n / t_tw:8.1f} RF/s")
            print(f"  ratio xdisc / telewavesim            {t_tw / t_band:8.1f}x (band), {t_tw / t_full:.1f}x (all "
                  f"frequencies)")
    os.sched_setaffinity(0, set(range(os.cpu_count())))

    # complete synthetic receiver functions with the default configuration
    small = cfgmod.validate({"synthetics": {"n_samples": 64}})
    n_sl = len(small["synthetics"]["slowness_s_per_km"])
    print("\ncomplete synthetic RFs (default config: layering to 700 km, iterative deconvolution, augmentation):")
    for cores in (1, 2):
        os.sched_setaffinity(0, set(range(cores)))
        t = timed(lambda cores=cores: make_dataset(small, n_jobs=cores), 1)
        print(f"  {cores} core(s): {64 * n_sl / t:8.1f} RF/s ({64 / t:.1f} samples/s x {n_sl} slownesses)")
    os.sched_setaffinity(0, set(range(os.cpu_count())))
    del ref1


if __name__ == "__main__":
    main()
