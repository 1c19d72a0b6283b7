"""Benchmark: the injection tests' vespagram rows, xdisc's phase recurrence against the exponentials.

    python tests/benchmarks/bench_detectability.py [--events 45 200] [--repeat 3]

``xdisc.detectability.StackingDraws.vespagram_rows`` shifts each event's receiver function by
u (distance - reference) for every relative slowness u of the vespagram. It makes the phase factors
exp(2 pi i f u d) by one complex product per u from the one before (the u are evenly spaced). The
reference is the direct form that xdisc used until 2026-12-04 and that ``xdisc.stack.stacking.vespagram``
still uses: one complex exponential per element. Both run here on the same synthetic station (the earth
model's receiver functions at the injection grid's slownesses with the project's synthetic noise, as
``tests/test_detectability.py`` makes them), one thread, best of ``--repeat``. It prints the seconds for
one call of each, their ratio, and the largest difference of the rows relative to their largest value.
A station's injection tests call ``vespagram_rows`` 77 times with the default grid (measured
2026-12-04: 20.5 s -> 8.3 s for XS.S001 of the third independent draw, 45 receiver functions).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def _station(n_rf: int):
    from xdisc import config as cfgmod
    from xdisc import detectability as D
    from xdisc.core.deconvolution import RFSettings, normalise_by_p
    from xdisc.core.earthmodel import load_model
    from xdisc.core.moveout import distance_for_slowness
    from xdisc.synth.stations import StationDraw, synthetic_station
    from xdisc.synth.synthetics import Layering

    cfg = cfgmod.validate({})
    model = load_model(cfg["earth_model"])
    rf = RFSettings(**cfg["receiver_function"])
    grid = D.InjectionGrid(depths_km=(300.0,), gradients_km=(0.0,), dvs=(0.03,))
    _, base = D.x_kernels(model, grid, rf, Layering(**cfg["layering"]))
    draw = StationDraw(spurious_probability=0.0, trim_probability=0.0)
    traces, p = synthetic_station(base, np.asarray(grid.kernel_slowness_s_per_km), rf.time_axis(), rf.dt,
                                  rf.gaussian_width_hz, draw, np.random.default_rng(1), n_rf=n_rf, snr=(5.0, 20.0))
    t = rf.time_axis()
    norm = normalise_by_p(traces, t)
    stacking = {**cfg["stacking"], "crust": {**cfg["stacking"]["crust"], "depth_conversion": False}}
    return D.StackingDraws(norm, np.zeros_like(norm), t, p, distance_for_slowness(p, cfg["earth_model"]), model,
                           stacking), norm


def _direct(draws, traces: np.ndarray) -> np.ndarray:
    """The rows with one complex exponential per element (the reference)."""
    n = draws.time_s.size
    nfft = int(2 ** np.ceil(np.log2(2 * n)))
    f = np.fft.rfftfreq(nfft, draws.time_s[1] - draws.time_s[0])
    spec = np.fft.rfft(np.nan_to_num(traces), nfft)
    shift = draws.rel_s[:, None] * (draws.distance - draws.ref_dist)[None, :]
    out = np.empty((draws.rel_s.size, traces.shape[0], draws.window.size))
    for k, s in enumerate(shift):
        out[k] = np.fft.irfft(spec * np.exp(2j * np.pi * f[None, :] * s[:, None]), nfft)[:, draws.window]
    return out


def _best(fn, args: tuple, repeat: int) -> tuple[float, np.ndarray]:
    fn(*args)
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="+", default=[45, 200], help="receiver functions per station")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"{'events':>7} {'direct s':>9} {'recurrence s':>13} {'ratio':>6} {'max rel diff':>13}")
    for n in args.events:
        draws, norm = _station(n)
        t_ref, ref = _best(_direct, (draws, norm), args.repeat)
        t_new, new = _best(draws.vespagram_rows, (norm,), args.repeat)
        diff = float(np.abs(new - ref).max() / np.abs(ref).max())
        print(f"{n:7d} {t_ref:9.3f} {t_new:13.3f} {t_ref / t_new:6.2f} {diff:13.2e}")


if __name__ == "__main__":
    main()
