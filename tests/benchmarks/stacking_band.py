"""Would the stacking verdict do better at longer periods? Restack a scored run after an extra low-pass.

The receiver functions of a pipeline run (``results/rf``) carry the Gaussian of
``receiver_function.gaussian_width_hz``. A second Gaussian exp(-w^2 / 4 a^2) on top of it gives the
receiver functions of a wider one (Gaussians compose: 1 / a_eff^2 = 1 / a_1^2 + 1 / a^2; exact for the
water level, close for the iterative deconvolution). Each station is restacked with the run's own
``stacking`` settings (``xdisc.stack.stacking.stack_station``) and its verdict scored against the truth
of an independent test network. An X spread over a 10-20 km gradient loses less of its amplitude at
longer periods; the price is a broader pulse in depth and slowness.

    python tests/benchmarks/stacking_band.py --network /data/xs1 --run /data/xs1-run --a 0 2.2 1.5 1.0 0.7

``--a 0``: no extra filter (the run's verdicts, restacked). About 25 s per value and draw on 2 cores.
Not part of CI. Results: docs/results/2026-12-03-band-and-injections.md.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd


def lowpass(rf: np.ndarray, dt: float, a: float) -> np.ndarray:
    """``rf`` (event, time) times the Gaussian exp(-w^2 / 4 a^2), the pipeline's
    :func:`~xdisc.core.deconvolution.gaussian_filter` of width a / (pi sqrt 2) Hz (zero-padded; a <= 0:
    unchanged)."""
    from xdisc.core.deconvolution import gaussian_filter

    if a <= 0:
        return rf
    n = rf.shape[-1]
    g = gaussian_filter(np.fft.rfftfreq(2 * n, dt), a / (np.pi * np.sqrt(2)))
    return np.fft.irfft(np.fft.rfft(rf, 2 * n, axis=-1) * g, 2 * n, axis=-1)[..., :n]


def verdict(path: Path, config: dict, a: float) -> dict:
    from xdisc.core.artifacts import usable_receiver_functions
    from xdisc.core.earthmodel import load_model
    from xdisc.stack import stacking

    cfg = config["stacking"]
    try:
        ds, keep, meta = usable_receiver_functions(path, cfg["use_qc"])
        t = ds["time"].values
        out = stacking.stack_station(lowpass(ds["rf"].values[keep].astype(float), t[1] - t[0], a), t,
                                     ds["slowness_s_per_km"].values[keep], ds["distance_deg"].values[keep],
                                     load_model(config["earth_model"]), cfg, event_ids=ds["event"].values[keep],
                                     station=meta)
    except (ValueError, KeyError, OSError) as e:
        return {"station": path.stem, "verdict": "undetermined", "reason": f"error: {e}"}
    return stacking.verdict_row(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", type=Path, required=True, help="the draw of independent_network.py make")
    parser.add_argument("--run", type=Path, required=True, help="its pipeline run (results/ inside)")
    parser.add_argument("--a", type=float, nargs="+", default=[0.0, 2.2, 1.0], help="Gaussian 'a' of the extra filter")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    config = json.loads((args.run / "results" / "settings" / "station.json").read_text())
    files = sorted((args.run / "results" / "rf").glob("*.nc"))
    truth = pd.read_csv(args.network / "truth" / "truth.csv")
    x = truth["x_present"].to_numpy() == 1
    gradient = (truth["x_gradient_km"].fillna(0) > 0).to_numpy()
    a1 = np.pi * np.sqrt(2) * config["receiver_function"]["gaussian_width_hz"]  # 0.5 Hz: Ligorria & Ammon a = 2.22
    print(f"{len(files)} stations; the run's Gaussian: {config['receiver_function']['gaussian_width_hz']} Hz")
    for a in args.a:
        with Pool(args.workers) as pool:
            rows = pool.map(partial(verdict, config=config, a=a), files)
        v = truth[["station"]].merge(pd.DataFrame(rows), on="station", how="left")["verdict"].fillna("undetermined")
        v = v.to_numpy()
        ok = ((v == "present") & x) | ((v == "absent") & ~x)
        found = (v == "present") & x
        a_eff = "-" if a <= 0 else f"{1 / np.sqrt(1 / a1 ** 2 + 1 / a ** 2):.2f}"
        print(f"extra a {a:4.1f} (a_eff {a_eff}): accuracy {ok.mean():.2f}, "
              f"false alarms {(v[~x] == 'present').mean():.2f}, "
              f"undetermined {(~np.isin(v, ['present', 'absent'])).mean():.2f}, X found {found.sum()}/{x.sum()} "
              f"(gradient {found[gradient].sum()}/{(x & gradient).sum()}, sharp {found[~gradient].sum()}/"
              f"{(x & ~gradient).sum()})", flush=True)


if __name__ == "__main__":
    main()
