"""Earthquake source time functions for synthetic receiver functions (``synthetics.source``).

A receiver function is the radial trace deconvolved by the vertical one. In theory the source cancels;
in practice the deconvolution (iterative or water level, with its Gaussian filter) cannot restore the
frequencies where the source spectrum is small. An impulsive source hides this, an extended one does
not: behind sediments a 2-6 s source leaves residues of 20-50 % of P in the first 10 s and several % in
the X window, in noise-free data. Synthetic sets that train a detector of a 2-5 % arrival need them.

A source here is the moment-rate function of 1 to ``max_subevents`` triangular sub-events within a total
duration (log-uniform), optionally followed by the surface reflections pP (reversed) and sP. Its spectrum
multiplies the vertical and radial responses of one trace (one event) before deconvolution. Each draw
comes from its own random stream (seed, sample, slowness), so datasets are reproducible and a draw does
not depend on how samples are batched.
"""

from __future__ import annotations

import numpy as np

SOURCE_STREAM = 3  # rng stream id: numpy default_rng([seed, SOURCE_STREAM, sample])


def draw_source(rng: np.random.Generator, cfg: dict) -> dict | None:
    """One source: sub-event onsets/widths/weights (s) and depth phases; None for an impulse."""
    if rng.random() >= cfg["probability"]:
        return None
    lo, hi = cfg["duration_s"]
    duration = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    k = int(rng.integers(1, cfg["max_subevents"] + 1))
    width = duration * rng.uniform(0.3, 1.0, k)
    onset = rng.uniform(0.0, 1.0, k) * (duration - width)
    onset[0] = 0.0
    weight = rng.uniform(0.3, 1.0, k)
    src = {"duration_s": duration, "onset_s": onset, "width_s": width, "weight": weight / weight.sum(),
           "pp_delay_s": np.nan, "pp_amplitude": 0.0, "sp_delay_s": np.nan, "sp_amplitude": 0.0}
    if rng.random() < cfg["depth_phase_probability"]:
        a, b = cfg["pp_delay_s"]
        delay = float(np.exp(rng.uniform(np.log(a), np.log(b))))
        src.update(pp_delay_s=delay, pp_amplitude=float(rng.uniform(*cfg["pp_amplitude"])),
                   sp_delay_s=delay * float(rng.uniform(1.1, 1.4)), sp_amplitude=float(rng.uniform(0.0, 0.6)))
    return src


def source_spectrum(src: dict | None, freqs_hz: np.ndarray) -> np.ndarray:
    """Spectrum of ``src`` (1 at 0 Hz; time zero at the onset of P): sum of triangle spectra
    w sinc^2(f w / 2) e^{-2 pi i f (t0 + w / 2)} / w normalised, times (1 + a_pP e^{-2 pi i f t_pP} + ...)."""
    f = np.asarray(freqs_hz, float)
    if src is None:
        return np.ones(f.size, complex)
    spec = np.zeros(f.size, complex)
    for t0, w, a in zip(src["onset_s"], src["width_s"], src["weight"], strict=True):
        spec += a * np.sinc(f * w / 2) ** 2 * np.exp(-2j * np.pi * f * (t0 + w / 2))
    echoes = np.ones(f.size, complex)
    for amp, delay in ((src["pp_amplitude"], src["pp_delay_s"]), (src["sp_amplitude"], src["sp_delay_s"])):
        if np.isfinite(delay) and amp != 0:
            echoes += amp * np.exp(-2j * np.pi * f * delay)
    return spec * echoes


def sample_sources(seed: int, sample: int, n_slowness: int, cfg: dict) -> list[dict | None]:
    """The sources of one sample's traces (one per slowness), from the stream (seed, 3, sample)."""
    rng = np.random.default_rng([seed, SOURCE_STREAM, sample])
    return [draw_source(rng, cfg) for _ in range(n_slowness)]


def mean_duration(sources: list[dict | None]) -> float:
    """Mean duration of the extended sources of a sample (NaN when all are impulses)."""
    d = [s["duration_s"] for s in sources if s is not None]
    return float(np.mean(d)) if d else float("nan")
