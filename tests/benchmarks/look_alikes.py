"""Look-alikes of X in the refined network's fine-tuning set, and what they do to the verdicts (not part of the
test suite). Results: docs/results/2026-12-07-look-alikes-balanced.md.

Each command reads finished pipeline runs (``--run``, with ``cnn.refine`` on) and, where it scores, the draws of
``independent_network.py`` they ran on (``--network``, in the same order, with the hidden ``truth/truth.csv``);
nothing in the runs is changed.

``fractions``: the fraction of look-alikes of X (a distractor below the X window, a low-velocity zone, sediment of
1.5 km or more: ``SyntheticSource.hard``) among the draws each fold's network learns from, by kind: the training
draws without and with X, the no-X calibration draws and the X draws. Read from the synthetic sets through each
draw's sample index, so that it also works on runs made before the draw files carried the flags.

``images``: the real stations' image 0 beside their own synthetic draws (no-X calibration draws and X draws, the
first 8 of each): the median over stations of the root mean square of the amplitude channel in depth bands, and
the noise channel. Real stations without X are compared with the no-X draws, stations with X with the X draws.

``stations``: per run, the CNN's right / X found / false alarms / undetermined, and X found and called absent at
the X stations whose crust or mantle holds a look-alike (sediment of 1.5 km or more, a low-velocity layer or a
jump at 370-390 km in the truth) against the others.

    python tests/benchmarks/look_alikes.py fractions --run /data/xs24-run
    python tests/benchmarks/look_alikes.py images --network /data/xs9 ... --run /data/xs9-run ...
    python tests/benchmarks/look_alikes.py stations --network /data/xs21 /data/xs21 --run /data/xs21-run /data/xs21-bal
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.metrics import roc_auc_score
from xdisc.cnn.synthetic_set import HARD_SEDIMENT_KM, is_look_alike

BANDS_KM = ((0, 60), (60, 200), (200, 400), (440, 630))


def look_alike_flags(path: Path) -> np.ndarray:
    """``SyntheticSource.hard`` of every sample of a synthetic set, from its parameter columns only."""
    with xr.open_dataset(path) as ds:
        return is_look_alike(ds["distractor"].values, ds["sediment_km"].values)


def fractions(run: Path) -> dict:
    train = look_alike_flags(run / "results/synthetic/pretrain.nc")
    test = look_alike_flags(run / "results/synthetic/test.nc")
    got = {"training draws without X": [], "training draws with X": [], "no-X calibration draws": [], "X draws": []}
    for f in sorted(glob.glob(str(run / "results/refine/draws/b*/*.nc"))):
        with xr.open_dataset(f) as ds:
            s, lab, xs = ds["train_sample"].values, ds["train_label"].values, ds["x_sample"].values
        cal = Path(f.replace("/refine/draws/", "/calibration/"))
        if cal.exists():
            with xr.open_dataset(cal) as ds:
                got["no-X calibration draws"] += list(test[ds["sample"].values])
        got["training draws without X"] += list(train[s[lab == 0]])
        got["training draws with X"] += list(train[s[lab == 1]])
        got["X draws"] += list(test[xs])
    return {k: (len(v), float(np.mean(v)) if v else float("nan")) for k, v in got.items()}


def _rms_bands(images: np.ndarray) -> np.ndarray:
    """(..., channel, bin, depth) -> (..., band): rms of the amplitude channel in BANDS_KM (2.5 km depth step)."""
    depth = np.arange(images.shape[-1]) * 2.5
    return np.stack([np.sqrt(np.mean(images[..., 0, :, :][..., (depth >= lo) & (depth < hi)] ** 2, axis=(-1, -2)))
                     for lo, hi in BANDS_KM], axis=-1)


def images(networks: list[Path], runs: list[Path]) -> pd.DataFrame:
    rows = []
    for net, run in zip(networks, runs, strict=True):
        truth = pd.read_csv(net / "truth/truth.csv").set_index("station")
        cal = {Path(f).stem: f for f in glob.glob(str(run / "results/calibration/b*/*.nc"))}
        ref = {Path(f).stem: f for f in glob.glob(str(run / "results/refine/draws/b*/*.nc"))}
        for st in truth.index:
            fi = run / "results/images" / f"{st}.nc"
            if not (fi.exists() and st in cal and st in ref):
                continue
            x = int(truth.loc[st, "x_present"])
            with xr.open_dataset(fi) as ds:
                real = ds["rf_image"].values[0]
            if x:
                with xr.open_dataset(ref[st]) as ds:
                    syn = ds["x_image"].values[:8]
            else:
                with xr.open_dataset(cal[st]) as ds:
                    syn = ds["image"].values[:8]
            for kind, rms, noise in (("real", _rms_bands(real), real[1, :, 100].mean()),
                                     ("draws", _rms_bands(syn).mean(0), syn[:, 1, :, 100].mean())):
                bands = {f"rms {lo}-{hi} km": float(r) for (lo, hi), r in zip(BANDS_KM, rms, strict=True)}
                rows.append({"x": x, "kind": kind, **bands, "noise": float(noise)})
    return pd.DataFrame(rows).groupby(["x", "kind"]).median()


def stations(networks: list[Path], runs: list[Path]) -> pd.DataFrame:
    rows = []
    for net, run in zip(networks, runs, strict=True):
        t = pd.read_csv(net / "truth/truth.csv").set_index("station")
        c = pd.read_csv(run / "results/verdicts/cnn.csv").set_index("station").join(
            t[["x_present", "sediment_km", "decoy"]])
        y, v = c["x_present"].values, c["verdict"].values
        alike = ((c["sediment_km"] >= HARD_SEDIMENT_KM) | c["decoy"].isin(["lvl", "j380"])).values
        truth = np.where(y == 1, "present", "absent")
        rows.append({"run": str(run), "right": int((v == truth).sum()),
                     "found": int(((v == "present") & (y == 1)).sum()),
                     "false alarms": int(((v == "present") & (y == 0)).sum()),
                     "undetermined": int((v == "undetermined").sum()),
                     "look-alike X": int((alike & (y == 1)).sum()),
                     "found there": int(((v == "present") & (y == 1) & alike).sum()),
                     "absent there": int(((v == "absent") & (y == 1) & alike).sum()),
                     "other X found": int(((v == "present") & (y == 1) & ~alike).sum()),
                     "AUC": round(float(roc_auc_score(y, c["verdict_probability"].fillna(0.5).values)), 3)})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fractions")
    f.add_argument("--run", type=Path, nargs="+", required=True)
    for name in ("images", "stations"):
        p = sub.add_parser(name)
        p.add_argument("--network", type=Path, nargs="+", required=True)
        p.add_argument("--run", type=Path, nargs="+", required=True)
    a = ap.parse_args(argv)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        if a.command == "fractions":
            for run in a.run:
                for kind, (n, frac) in fractions(run).items():
                    print(f"{run}  {kind:26s} {n:5d} draws, look-alikes {frac:.3f}")
        elif a.command == "images":
            print(images(a.network, a.run).round(4))
        else:
            print(stations(a.network, a.run).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
