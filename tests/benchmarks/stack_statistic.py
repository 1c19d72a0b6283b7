"""What limits the stacking verdict on an independent test network: the trace weights, or the crust's
reverberations? (Not part of the test suite.)

    python tests/benchmarks/stack_statistic.py weights --network /data/xs1 --run /data/xs1-run
    python tests/benchmarks/stack_statistic.py crust-model --network /data/xs1 --run /data/xs1-run [--source S]
    python tests/benchmarks/stack_statistic.py pairs --network /data/xs1 --run /data/xs1-run

Both read a network of ``independent_network.py make`` and a pipeline run on it (``independent_network.py
score --workdir``): the run's receiver-function files (results/rf/, quality-controlled ones only) and the
network's hidden truth.

``weights``: per station, the depth stack's t-value (weighted mean over events of the moveout-corrected
receiver functions, divided by its standard error) with five sets of per-trace weights: the pipeline's
(inverse pre-P variance, :func:`xdisc.core.deconvolution.noise_weights`), uniform, the truth's (the square
of each trace's vertical SNR in traces.csv: the weights an oracle would use), the inverse variance of the
last 20 s of the receiver function, and that of the transverse receiver function. Prints the AUC of the
largest t in 250-350 km between the stations with and without X, the X stations whose largest t exceeds
the 95th percentile of the stations without X, and the median t at X's true depth (within 7.5 km).

``crust-model``: the H-kappa crust of each station (:func:`xdisc.stack.stacking.crust_variables`, as the
stack files record it) is turned into a crust over a half-space (Vp the H-kappa's assumed crustal Vp,
Vs = Vp / kappa, density from Brocher's Nafe-Drake curve; half-space: the earth model's uppermost mantle),
its noise-free receiver function is computed at every event's slowness with xdisc's propagator and
deconvolution (:func:`xdisc.synth.synthetics.receiver_functions`), scaled by one factor per station
fitted (inverse-variance weighted least squares, clipped to 0-2) between 1.5 s and the Ps time of 230 km
(so before any X), and subtracted after 1.5 s. The receiver functions are then stacked with the defaults
of config/full.yaml (:func:`xdisc.stack.stacking.stack_station`). Prints both verdicts against the
truth, and the AUC of the largest depth-stack amplitude over the noise in 250-350 km, overall and per
class of the H-kappa Moho. ``--set key=value`` changes a stacking setting (YAML value). ``--source
true-crust`` / ``true-structure`` are oracles in its place: the station's true crust (sediment, upper and
lower crust over the uppermost mantle), or its whole true model without X (crust, mantle, 410 and 660 at
their depths, the decoy), drawn again from the network's seed and flattened as the network was made, then
modelled, scaled and subtracted the same way. What knowing the structure would be worth to the stack.

``pairs``: the run's two verdicts per station (results/verdicts/stations.csv; ``not detectable`` counts as
``absent``) against the truth, each alone and combined: where they agree or one is ``undetermined``, the
other's verdict; where one says ``present`` and the other ``absent``, undetermined, the CNN's or the
stacking's. How much a joint verdict would gain, and from where.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[2]
X_WINDOW_KM = (250.0, 350.0)
NEAR_TRUE_KM = 7.5
MOHO_CLASSES_KM = (0, 35, 50, 80)


def _stations(network: Path, run: Path, use_qc: bool = True):
    """(code, truth row, receiver-function dataset, mask of usable traces, station dict) per rf file."""
    from xdisc.core.artifacts import usable_receiver_functions

    truth = pd.read_csv(network / "truth" / "truth.csv").set_index("station")
    for path in sorted((run / "results" / "rf").glob("*.nc")):
        ds, keep, station = usable_receiver_functions(path, use_qc)
        code = f"{station['network']}.{station['station']}"
        yield code, truth.loc[code], ds, keep, station


def _t_values(in_depth: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean over events / its standard error, per depth."""
    w = np.where(np.isfinite(w), w, 0.0)
    mean = (w @ in_depth) / w.sum()
    se = np.sqrt((w**2) @ (in_depth - mean) ** 2) / w.sum()
    return mean / se


def _verdict_counts(v: pd.Series, x: pd.Series) -> str:
    """Accuracy (undetermined counts as wrong), false alarms, X found, X called absent and undetermined."""
    correct = ((v == "present") & x) | ((v == "absent") & ~x)
    return (f"accuracy {100 * correct.mean():.0f} %, false alarms {int(((v == 'present') & ~x).sum())}, X found "
            f"{int(((v == 'present') & x).sum())}, X called absent {int(((v == 'absent') & x).sum())}, undetermined "
            f"{int((~v.isin(['present', 'absent'])).sum())}")


def _separation(table: pd.DataFrame, column: str) -> tuple[float, float]:
    """AUC of ``column`` (X against no X) and the X stations above the no-X stations' 95th percentile."""
    x = table["x"].astype(bool)
    auc = roc_auc_score(x, table[column])
    threshold = np.quantile(table.loc[~x, column], 0.95)
    return auc, float((table.loc[x, column] > threshold).mean())


def weights(a) -> int:
    from xdisc.core.deconvolution import noise_sigma, normalise_by_p
    from xdisc.core.earthmodel import load_model
    from xdisc.core.moveout import to_depth

    traces = pd.read_csv(a.network / "truth" / "traces.csv", dtype={"event": str})
    snr = {(f"XS.{r.station}", r.event): r.snr_z for r in traces.itertuples()}
    model = load_model("ak135")
    depths = np.arange(0.0, 800.1, 2.5)
    window = (depths >= X_WINDOW_KM[0]) & (depths <= X_WINDOW_KM[1])
    names = ("pipeline", "uniform", "truth SNR^2", "late coda", "transverse")
    rows = []
    for code, truth, ds, keep, _ in _stations(a.network, a.run):
        if keep.sum() < 3:
            continue
        t = ds["time"].values
        norm = normalise_by_p(ds["rf"].values[keep], t)
        in_depth = to_depth(norm, t, ds["slowness_s_per_km"].values[keep], model, depths)
        z = np.array([snr.get((code, str(e)), np.nan) for e in ds["event"].values[keep]])
        p_amp = ds["rf"].values[keep][:, [int(np.argmin(np.abs(t)))]]
        transverse = ds["rf_transverse"].values[keep] / p_amp
        late = np.nanstd(norm[:, t > t[-1] - 20.0], axis=1)
        across = np.nanstd(transverse[:, (t > 2.0)], axis=1)
        sigma = noise_sigma(norm, t)
        w = dict(zip(names, (1.0 / sigma**2, np.ones(keep.sum()), np.nan_to_num(z) ** 2,
                             1.0 / np.maximum(late, 0.02) ** 2, 1.0 / np.maximum(across, 0.02) ** 2), strict=True))
        row = {"station": code, "x": bool(truth["x_present"])}
        if np.all(z > 0):  # how well each noise estimate tracks the trace's SNR
            log_z = np.log(z)
            row["corr pre-P"] = float(np.corrcoef(np.log(sigma), log_z)[0, 1])
            row["corr late"] = float(np.corrcoef(np.log(np.maximum(late, 0.02)), log_z)[0, 1])
        for name in names:
            tv = _t_values(in_depth, w[name])
            row[f"max {name}"] = float(np.nanmax(tv[window]))
            if row["x"]:
                near = np.abs(depths - float(truth["x_depth_km"])) <= NEAR_TRUE_KM
                row[f"true {name}"] = float(np.nanmax(tv[near]))
        rows.append(row)
    table = pd.DataFrame(rows)
    print(f"{len(table)} stations of {a.network} ({int(table.x.sum())} with X), run {a.run}; correlation of the "
          "logarithms of noise and trace SNR over a station's events, median: "
          f"pre-P {table['corr pre-P'].median():.2f}, late coda {table['corr late'].median():.2f}")
    for name in names:
        auc, found = _separation(table, f"max {name}")
        print(f"  weights {name:12s} AUC of the largest t in 250-350 km {auc:.3f}; X above the no-X 95th "
              f"percentile {100 * found:.0f} %; median t at X's depth {table[f'true {name}'].median():.2f}")
    return 0


def crust_over_half_space(h_km: float, kappa: float, vp_km_s: float, mantle: np.ndarray):
    """A homogeneous crust over the half-space ``mantle`` (vp, vs, rho), not flattened."""
    from xdisc.core.earthmodel import LayerStack

    v = vp_km_s
    rho = 1.6612 * v - 0.4721 * v**2 + 0.0671 * v**3 - 0.0043 * v**4 + 0.000106 * v**5  # Brocher (2005)
    return LayerStack(np.array([h_km, 0.0]), np.array([v, mantle[0]]), np.array([v / kappa, mantle[1]]),
                      np.array([rho, mantle[2]]), flattened=False)


def crust_response(layers, slowness: np.ndarray, rf_settings) -> np.ndarray:
    """Noise-free receiver functions of ``layers`` at each slowness (0.001 s/km bins), divided by direct P."""
    from xdisc.core.deconvolution import normalise_by_p
    from xdisc.synth.synthetics import receiver_functions

    keys = np.round(np.asarray(slowness) / 0.001).astype(int)
    unique = np.unique(keys)
    out = normalise_by_p(receiver_functions([layers], unique * 0.001, rf_settings)[0], rf_settings.time_axis())
    return out[np.searchsorted(unique, keys)]


def _drawn_parameters(network: Path) -> dict:
    """Each station's model parameters, drawn again from the network's seed (truth.csv holds only some)."""
    import json

    import independent_network  # beside this script

    info = json.loads((network / "truth" / "network.json").read_text())
    stations, _ = independent_network.draw_network(int(info["stations"]), int(info["seed"]))
    return {s["station"]: s for s in stations}


def true_layers(params: dict, what: str):
    """The station's true model without X, flattened as the network was made (an oracle):
    ``true-crust`` its crust (sediment, upper and lower crust) over the uppermost mantle as a half-space,
    ``true-structure`` everything but X (crust, mantle, 410 and 660 at their depths, the decoy)."""
    import independent_network as net
    from xdisc.core.earthmodel import LayerStack

    p = {**params, "x_present": False}
    rows = net.flat_layers(p)
    if what == "true-crust":
        top = np.concatenate([[0.0], np.cumsum(rows[:-1, 0])])
        moho_f = net.R_EARTH_KM * np.log(net.R_EARTH_KM / (net.R_EARTH_KM - p["moho_km"]))
        crust = top < moho_f - 1e-6
        rows = np.vstack([rows[crust], rows[np.flatnonzero(~crust)[0]]])
        rows[-1, 0] = 0.0
    return LayerStack(rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy(), rows[:, 3].copy(), flattened=True)


def crust_model(a) -> int:
    from xdisc import config as cfgmod
    from xdisc.core.deconvolution import RFSettings, noise_weights, normalise_by_p
    from xdisc.core.earthmodel import load_model
    from xdisc.core.moveout import delay_table
    from xdisc.stack.stacking import stack_station

    config = cfgmod.validate(yaml.safe_load((ROOT / "config" / "full.yaml").read_text()) or {})
    cfg = config["stacking"]
    for item in a.set or []:
        key, value = item.split("=", 1)
        cfg[key] = yaml.safe_load(value)
    rf_settings = RFSettings(**config["receiver_function"])
    model = load_model(config["earth_model"])
    mantle = model.at(np.array([model.moho_km() + 0.1]), "below")[0]
    truth_params = {} if a.source == "hk" else _drawn_parameters(a.network)
    rows, t0 = [], time.perf_counter()
    for code, truth, ds, keep, station in _stations(a.network, a.run, cfg["use_qc"]):
        t = ds["time"].values
        rf, slowness = ds["rf"].values[keep], ds["slowness_s_per_km"].values[keep]
        distance = ds["distance_deg"].values[keep]
        before = stack_station(rf, t, slowness, distance, model, cfg, station=station)
        row = {"station": code, "x": bool(truth["x_present"]), "hk_moho_km": before.attrs["moho_km"],
               "before": before.attrs["verdict"], "after": before.attrs["verdict"]}
        after = before
        if keep.sum() >= cfg["min_rf"] and np.isfinite(before.attrs["moho_km"]):
            norm = normalise_by_p(rf, t)
            if a.source == "hk":
                layers = crust_over_half_space(before.attrs["moho_km"], before.attrs["vpvs"],
                                               before.attrs["crust_vp_km_s"], mantle)
            else:
                layers = true_layers(truth_params[code.split(".")[1]], a.source)
            predicted = crust_response(layers, slowness, rf_settings)
            w = noise_weights(norm, t)[:, None]
            end = float(delay_table(model, [230.0], [np.median(slowness)])[0, 0]) - 1.0
            fit = (t > 1.5) & (t < end)
            scale = float(np.clip(np.sum(w * norm[:, fit] * predicted[:, fit]) / np.sum(w * predicted[:, fit] ** 2),
                                  0.0, 2.0))
            cleaned = norm - np.where(t > 1.5, scale * predicted, 0.0)
            after = stack_station(cleaned, t, slowness, distance, model, cfg, station=station)
            row.update(after=after.attrs["verdict"], scale=scale)
        for name, st in (("before", before), ("after", after)):
            d = st["depth"].values
            noise = np.nanmedian(st["depth_stack_std"].values[d >= 200])
            inside = (d >= X_WINDOW_KM[0]) & (d <= X_WINDOW_KM[1])
            row[f"max t {name}"] = float(np.nanmax(st["depth_stack"].values[inside]) / noise)
            if row["x"]:
                near = np.abs(d - float(truth["x_depth_km"])) <= NEAR_TRUE_KM
                row[f"true t {name}"] = float(np.nanmax(st["depth_stack"].values[near]) / noise)
        rows.append(row)
    table = pd.DataFrame(rows)
    x = table.x
    print(f"{len(table)} stations of {a.network} ({int(x.sum())} with X), run {a.run} "
          f"({time.perf_counter() - t0:.0f} s; median fitted scale {table['scale'].median():.2f})")
    for name in ("before", "after"):
        auc, _ = _separation(table.dropna(subset=[f"max t {name}"]), f"max t {name}")
        print(f"  {name:6s} {_verdict_counts(table[name], x)}; AUC of the largest t in 250-350 km {auc:.3f}")
    table["moho class"] = pd.cut(table.hk_moho_km, MOHO_CLASSES_KM)
    for cls, group in table.dropna(subset=["max t before", "max t after"]).groupby("moho class", observed=True):
        if group.x.nunique() < 2:
            continue  # a class without stations with (or without) X has no separation to show
        med = group.groupby("x")[["max t before", "max t after"]].median()
        aucs = [_separation(group, f"max t {n}")[0] for n in ("before", "after")]
        print(f"  H-kappa Moho {cls}: {len(group)} stations, AUC {aucs[0]:.3f} -> {aucs[1]:.3f}; median largest t "
              f"without X {med.loc[False].iloc[0]:.2f} -> {med.loc[False].iloc[1]:.2f}, with X "
              f"{med.loc[True].iloc[0]:.2f} -> {med.loc[True].iloc[1]:.2f}; median t at X's depth "
              f"{group['true t before'].median():.2f} -> {group['true t after'].median():.2f}")
    if a.table:
        table.to_csv(a.table, index=False)
    return 0


def pairs(a) -> int:
    truth = pd.read_csv(a.network / "truth" / "truth.csv").set_index("station")
    table = pd.read_csv(a.run / "results" / "verdicts" / "stations.csv").set_index("station")
    x = truth.loc[table.index, "x_present"].astype(bool)
    cnn, stacking = (table[f"{m}_verdict"].replace("not detectable", "absent") for m in ("cnn", "stacking"))

    def show(v: pd.Series, name: str) -> None:
        print(f"  {name:44s} {_verdict_counts(v, x)}")

    print(f"{len(table)} stations of {a.network} ({int(x.sum())} with X), run {a.run}")
    show(cnn, "CNN")
    show(stacking, "stacking")
    for conflict in ("undetermined", "CNN", "stacking"):
        joint = []
        for c, s in zip(cnn, stacking, strict=True):
            if c == s or s == "undetermined":
                joint.append(c)
            elif c == "undetermined":
                joint.append(s)
            else:
                joint.append({"CNN": c, "stacking": s}.get(conflict, "undetermined"))
        show(pd.Series(joint, index=table.index), f"joint, present against absent: {conflict}")
    print(pd.crosstab([x.rename("X"), cnn.rename("CNN")], stacking.rename("stacking")))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("weights", "crust-model", "pairs"):
        p = sub.add_parser(name)
        p.add_argument("--network", required=True, type=Path, help="folder of independent_network.py make")
        p.add_argument("--run", required=True, type=Path, help="pipeline run on it (score --workdir)")
        if name == "crust-model":
            p.add_argument("--set", nargs="*", help="stacking settings key=value (YAML values)")
            p.add_argument("--table", type=Path, help="per-station CSV")
            p.add_argument("--source", choices=("hk", "true-crust", "true-structure"), default="hk",
                           help="what is modelled and subtracted: the H-kappa crust (default), or, as oracles, "
                                "the true crust or the whole true structure without X (from the network's seed)")
    a = ap.parse_args(argv)
    return {"weights": weights, "crust-model": crust_model, "pairs": pairs}[a.command](a)


if __name__ == "__main__":
    raise SystemExit(main())
