"""What finished runs of independent test networks say about the CNN's verdicts (not part of the test suite).

Each command reads one or more draws of ``independent_network.py`` (``--network``: the draw, with its hidden
``truth/truth.csv``) and their pipeline runs (``--run``, in the same order) and prints a table; nothing in
the runs is changed. Results: docs/results/2026-12-06-fresh-checks-of-the-leads.md.

``adapt-at-test``: unsupervised test-time adaptation of the run's adapted network (``results/cnn/adapted.ckpt``)
on the run's own real station images (all of them, every image of every station, no labels): AdaBN (batch-norm
statistics recomputed on the real images) and TENT (Wang et al. 2021: the entropy of the calibrated
probabilities minimised over the batch-norm scales and shifts, ``--steps`` Adam steps of 128 images). The AUC
of image 0's probability against the truth, before and after. Seconds per run.

``fusion``: could the stacking's evidence add to the CNN's ranking? Leave-one-draw-out logistic regressions
of the truth on the CNN's station probabilities (``cnn.csv``: ``probability_all``, image 0's, which the verdict
uses, and ``probability``, the mean over the station's images; as logits) and the
stack's largest t-value and largest amplitude over its noise in 230-370 km (``results/stack``), with and
without the station's ringing, H-kappa Moho and number of receiver functions. An upper estimate (the
regressions learn from the independent network's own labels, which no run has): if it shows no gain, no
fusion learnt elsewhere will.

``in-domain``: how far could a network of the shipped architecture get if it were trained on the independent
network's own generator? The shipped network (``xdisc/cnn/shipped/xnet.ckpt``) fine-tuned, every layer, on
every image of the ``--network``/``--run`` draws with the truth's labels (and X's depth for its depth head;
``--stations`` picks that many stations at random for a learning curve; ``--from-scratch`` starts from untrained
weights of the same architecture), then scored on image 0 of the
``--test-network``/``--test-run`` draws, which it never saw: the AUC, and the share of stations right at
exactly 5 % false alarms (the 95th percentile of the test draws' own no-X stations: an oracle threshold,
no undetermined), beside the runs' own CNN (image 0's ``probability_all`` of their ``cnn.csv``) scored
alike. No run has such labels, so it bounds what training on synthetic stations that look like
these could reach with this network and these images. About 20 s per epoch per 600 stations on 2 cores.

``rebuilt``: image 0 of every station made again from the run's receiver functions (``results/rf``) with the
run's image settings (its configuration files over today's defaults), or with ``--images KEY=VALUE`` (YAML values;
e.g. ``noise_coda_s=null``, the default before 2026-12-08) over them, and
scored by ``--checkpoint`` networks (default: the shipped one; the runs' own ``pretrain``, ``adapted`` with
``--run-networks``): the AUC and the share right at exactly 5 % false alarms, per draw and pooled. What an
image option does to networks as they are, on stations another code made, without running the pipeline again
(a run with ``--stacking-only`` has the receiver functions too). Seconds per draw.

``labels`` / ``half``: the labels a user would give half a network. ``labels`` writes a label file
(``cnn.labels``) with every second station of the draw (sorted codes, first, third, ...) labelled from its
truth; after a run with it, ``half`` scores the other half's verdicts, the stations no label touched, for
each ``--run`` given (the run without labels first).

``anatomy``: the CNN's and the stacking's false alarms by the decoy, sediment, Moho depth and median SNR of
the stations without X; X found by X's style (``taper``: the 410 keeps its contrast, ``to410``: X takes it)
and how often the stacking sees the 410; and verdicts combined from both methods (where they agree or one is
``undetermined``, the other's; a conflict goes to ``undetermined``, the CNN, the stacking or ``present``).

    python tests/benchmarks/cnn_run_checks.py in-domain --network /data/xs30 ... --run /data/xs30-run ... \\
        --test-network /data/xs36 /data/xs37 --test-run /data/xs36-run /data/xs37-run
    python tests/benchmarks/cnn_run_checks.py rebuilt --network /data/xs30 ... --run /data/xs30-run ... \
        --images noise_coda_s=null
    python tests/benchmarks/cnn_run_checks.py labels --network /data/xs36 --out /data/xs36-lab/labels.csv
    python tests/benchmarks/cnn_run_checks.py half --network /data/xs36 --run /data/xs36-run /data/xs36-lab
    python tests/benchmarks/cnn_run_checks.py adapt-at-test --network /data/xs4 --run /data/xs4-run
    python tests/benchmarks/cnn_run_checks.py fusion --network /data/xs4 /data/xs5 ... --run /data/xs4-run ...
    python tests/benchmarks/cnn_run_checks.py anatomy --network /data/xs4 /data/xs5 ... --run /data/xs4-run ...
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
WINDOW_KM = (230.0, 370.0)  # the stacking's X search with its 20 km margin


def _pairs(a) -> list[tuple[Path, Path]]:
    if len(a.network) != len(a.run):
        raise SystemExit("give as many --run as --network, in the same order")
    return list(zip(a.network, a.run, strict=True))


def _truth(network: Path) -> pd.DataFrame:
    return pd.read_csv(network / "truth/truth.csv")


def _auc(y, p) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < np.sum(y) < len(y) else float("nan")


def adapt_at_test(a) -> None:
    import torch
    from xdisc.cnn.datasets import read_station_images
    from xdisc.cnn.module import XClassifier

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    print("| draw | stations | before | AdaBN | " + " | ".join(f"TENT {s} steps" for s in a.steps) + " |")
    for network, run in _pairs(a):
        names, images = [], []
        for path in sorted((run / "results/images").glob("*.nc")):
            st = read_station_images(path)
            if len(st["images"]):
                names.append(st["station"])
                images.append(torch.from_numpy(np.asarray(st["images"], np.float32)))
        y = _truth(network).set_index("station").loc[names, "x_present"].to_numpy() == 1
        first = torch.stack([im[0] for im in images])
        every = torch.cat(images)
        base = XClassifier.load_from_checkpoint(str(run / "results/cnn/adapted.ckpt"), map_location="cpu").eval()

        def auc(module, y=y, first=first) -> float:
            module.eval()
            with torch.no_grad():
                return _auc(y, module.probability(first).numpy())

        norms = lambda m: [x for x in m.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]  # noqa: E731
        row = [auc(base)]
        ada = copy.deepcopy(base)
        for bn in norms(ada):  # cumulative averages over every real image
            bn.reset_running_stats()
            bn.momentum = None
        ada.train()
        with torch.no_grad():
            for i in range(0, len(every), 200):
                ada(every[i:i + 200])
        row.append(auc(ada))
        for steps in a.steps:
            tent = copy.deepcopy(base)
            tent.train()  # batch statistics, as TENT uses them; the head's dropout stays off
            for m in tent.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.eval()
            for p in tent.parameters():
                p.requires_grad_(False)
            params = [p for bn in norms(tent) for p in bn.parameters()]
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.Adam(params, lr=1e-3)
            gen = torch.Generator().manual_seed(a.seed)
            for _ in range(steps):
                batch = every[torch.randperm(len(every), generator=gen)[:128]]
                q = torch.sigmoid(tent(batch) / float(tent.temperature))
                entropy = -(q * torch.log(q + 1e-8) + (1 - q) * torch.log(1 - q + 1e-8)).mean()
                opt.zero_grad()
                entropy.backward()
                opt.step()
            row.append(auc(tent))
        print(f"| {network.name} | {len(names)} | " + " | ".join(f"{v:.3f}" for v in row) + " |", flush=True)


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-5, 1 - 1e-5)
    return np.log(p / (1 - p))


def fusion(a) -> None:
    import xarray as xr
    from sklearn.linear_model import LogisticRegression

    rows = []
    for network, run in _pairs(a):
        cnn = pd.read_csv(run / "results/verdicts/cnn.csv").set_index("station")
        truth = _truth(network).set_index("station")
        for path in sorted((run / "results/stack").glob("*.nc")):
            code = path.stem
            if code not in cnn.index:
                continue
            with xr.open_dataset(path) as ds:
                depth, stack = ds["depth"].values, ds["depth_stack"].values
                sd = np.maximum((stack - ds["depth_stack_lower"].values) / 1.645, 1e-6)  # one-sided 95 % bound
                inside = (depth >= WINDOW_KM[0]) & (depth <= WINDOW_KM[1])
                noise = np.nanmedian(sd[(depth >= 200) & (depth <= 800)])
                row = {"draw": network.name, "y": int(truth.loc[code, "x_present"]),
                       "stack_t": np.nanmax((stack / sd)[inside]), "stack_amp": np.nanmax(stack[inside]) / noise,
                       "ringing": float(ds.attrs.get("ringing_r0", np.nan)),
                       "moho": float(ds.attrs.get("moho_km", np.nan)), "n_rf": float(ds.attrs["n_rf"])}
            row["cnn"] = _logit(cnn.loc[code, "probability"])  # the mean over the station's images
            row["cnn_all"] = _logit(cnn.loc[code, "probability_all"])  # image 0: every receiver function
            rows.append(row)
    df = pd.DataFrame(rows).replace([np.inf, -np.inf], np.nan)
    df = df.fillna(df.median(numeric_only=True))
    sets = {"CNN: image 0 (the verdict's)": ["cnn_all"], "CNN: the mean over its images": ["cnn"],
            "CNN: both": ["cnn", "cnn_all"],
            "stack only": ["stack_t", "stack_amp"], "CNN + stack": ["cnn", "cnn_all", "stack_t", "stack_amp"],
            "CNN + stack + crust": ["cnn", "cnn_all", "stack_t", "stack_amp", "ringing", "moho", "n_rf"]}
    draws = list(dict.fromkeys(df["draw"]))
    print("| features | pooled AUC | mean per draw | " + " | ".join(draws) + " |")
    for name, cols in sets.items():
        out = np.zeros(len(df))
        for d in draws:  # leave one draw out
            held = (df["draw"] == d).to_numpy()
            x = df[cols].to_numpy()
            mu, sd = x[~held].mean(0), x[~held].std(0) + 1e-9
            fit = LogisticRegression(max_iter=2000).fit((x[~held] - mu) / sd, df["y"][~held])
            out[held] = fit.predict_proba((x[held] - mu) / sd)[:, 1]
        per = [_auc(df["y"][df["draw"] == d], out[(df["draw"] == d).to_numpy()]) for d in draws]
        print(f"| {name} | {_auc(df['y'], out):.3f} | {np.mean(per):.3f} | "
              + " | ".join(f"{v:.3f}" for v in per) + " |")


def _verdicts(network: Path, run: Path) -> pd.DataFrame:
    cnn = pd.read_csv(run / "results/verdicts/cnn.csv")[["station", "verdict"]].rename(columns={"verdict": "cnn"})
    stack = pd.read_csv(run / "results/verdicts/stacking.csv").rename(columns={"verdict": "stacking"})
    stack = stack[["station", "stacking", "reason", "d410_km"]].rename(columns={"d410_km": "seen_d410_km"})
    out = cnn.merge(stack, on="station").merge(_truth(network), on="station")
    out["draw"] = network.name
    return out


def _score(v: np.ndarray, y: np.ndarray) -> str:
    """Right / false alarms / undetermined as independent_network.py scores them, and X found."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from independent_network import _rates  # beside this script

    r = _rates(y, v)
    return (f"{100 * r['accuracy']:.1f} % | {100 * r['false_alarm']:.1f} % | {100 * r['undetermined']:.1f} % | "
            f"{((v == 'present') & y).sum()} |")


def anatomy(a) -> None:
    df = pd.concat([_verdicts(n, r) for n, r in _pairs(a)], ignore_index=True)
    y = df["x_present"].to_numpy() == 1
    no_x = df[~y].assign(cnn_fa=lambda d: d["cnn"] == "present", stack_fa=lambda d: d["stacking"] == "present")
    print(f"{len(df)} stations of {df['draw'].nunique()} draws, {len(no_x)} without X")

    def by(key, title):
        g = no_x.groupby(key, observed=True)
        print(f"\n| {title} | stations | CNN false alarms | stacking false alarms |\n|---|---|---|---|")
        for k, part in g:
            n = len(part)
            print(f"| {k} | {n} | {part['cnn_fa'].sum()} ({100 * part['cnn_fa'].mean():.1f} %) | "
                  f"{part['stack_fa'].sum()} ({100 * part['stack_fa'].mean():.1f} %) |")

    by("decoy", "decoy")
    by(no_x["sediment_km"] > 0, "sediment")
    by(pd.cut(no_x["moho_km"], [0, 30, 40, 54, 80]), "Moho (km)")
    by(pd.cut(no_x["median_snr_z"], [0, 5, 8, 12, 20, 1000]), "median SNR of the vertical")
    fa = no_x[no_x["cnn_fa"]]
    for decoy in ("j220", "j380"):
        part = no_x[no_x["decoy"] == decoy]
        print(f"\n{decoy}: median SNR {part[part['cnn_fa']]['median_snr_z'].median():.1f} at the CNN's false alarms, "
              f"{part[~part['cnn_fa']]['median_snr_z'].median():.1f} elsewhere")
    print(f"CNN false alarms: median SNR {fa['median_snr_z'].median():.1f} "
          f"(stations without X: {no_x['median_snr_z'].median():.1f})")
    with_x = df[y]
    print("\n| X style | X stations | CNN present | stacking present | stacking undetermined "
          "| 410 seen by the stacking |\n|---|---|---|---|---|---|")
    for style, part in with_x.groupby("x_style"):
        print(f"| {style} | {len(part)} | {100 * (part['cnn'] == 'present').mean():.1f} % | "
              f"{100 * (part['stacking'] == 'present').mean():.1f} % | "
              f"{100 * (part['stacking'] == 'undetermined').mean():.1f} % | "
              f"{100 * np.isfinite(part['seen_d410_km']).mean():.1f} % |")
    print(f"| no X | {len(no_x)} | | | {100 * (no_x['stacking'] == 'undetermined').mean():.1f} % | "
          f"{100 * np.isfinite(no_x['seen_d410_km']).mean():.1f} % |")
    und = df[df["stacking"] == "undetermined"]
    print(f"stacking undetermined: {len(und)}, {int((und['x_present'] == 1).sum())} of them with X; "
          f"'d410 not seen' {int(und['reason'].str.startswith('d410 not seen').sum())}")

    norm = {"present": "present", "absent": "absent"}
    c = df["cnn"].map(norm).fillna("undetermined").to_numpy()
    s = df["stacking"].map(norm).fillna("undetermined").to_numpy()
    agree = (c == s) | (s == "undetermined")
    rules = {"CNN": c, "stacking": s}
    for name, conflict in (("undetermined", "undetermined"), ("the CNN", None), ("the stacking", "stack"),
                           ("present", "present")):
        pick = c if conflict is None else s if conflict == "stack" else np.full(len(c), conflict)
        rules[f"conflict -> {name}"] = np.where(agree, c, np.where(c == "undetermined", s, pick))
    vetoed = (c == "present") & (s == "absent")
    rules["CNN, its present turned absent where the stacking says absent"] = np.where(vetoed, "absent", c)
    print("\n| rule | right | false alarms | undetermined | X found |\n|---|---|---|---|---|")
    for name, v in rules.items():
        print(f"| {name} | {_score(v, y)}")


def _labelled_images(pairs) -> tuple:
    """Every image of the runs' stations: images, label, X depth (NaN without X), whether it is image 0."""
    from xdisc.cnn.datasets import read_station_images

    xs, ys, depth, first, station = [], [], [], [], []
    for network, run in pairs:
        truth = _truth(network).set_index("station")
        for path in sorted((run / "results/images").glob("*.nc")):
            st = read_station_images(path)
            row = truth.loc[st["station"]]
            for j, image in enumerate(st["images"]):
                xs.append(image)
                ys.append(int(row.x_present))
                depth.append(float(row.x_depth_km) if row.x_present == 1 else np.nan)
                first.append(j == 0)
                station.append(f"{network.name}:{st['station']}")
    if not xs:
        raise SystemExit("no images in the runs' results/images")
    return (np.stack(xs).astype(np.float32), np.array(ys), np.array(depth), np.array(first), np.array(station))


def _at_five_percent(p: np.ndarray, y: np.ndarray) -> float:
    """Share of stations right with the threshold that lets exactly 5 % of the no-X stations through."""
    null = np.sort(p[y == 0])
    threshold = null[int(np.ceil(0.95 * len(null))) - 1]
    return float(np.mean((p > threshold) == (y == 1)))


def in_domain(a) -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from xdisc.cnn.module import load_classifier

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y, depth, _, station = _labelled_images(_pairs(a))
    if a.stations:
        keep = np.random.default_rng(a.seed).permutation(np.unique(station))[:a.stations]
        sel = np.isin(station, keep)
        x, y, depth, station = x[sel], y[sel], depth[sel], station[sel]
    if len(a.test_network) != len(a.test_run):
        raise SystemExit("give as many --test-run as --test-network, in the same order")
    tx, ty, _, tfirst, _ = _labelled_images(list(zip(a.test_network, a.test_run, strict=True)))
    tx, ty = tx[tfirst], ty[tfirst]
    module = load_classifier(REPO / "workflow/src/xdisc/cnn/shipped/xnet.ckpt")
    if a.from_scratch:  # the shipped architecture, its weights drawn afresh
        from xdisc.cnn.module import XClassifier

        module = XClassifier(**module.hparams)

    def scored(label: str, trained: bool = True) -> None:
        module.eval()
        with torch.no_grad():
            p = np.concatenate([torch.sigmoid(module.net(torch.from_numpy(tx[i:i + 256]))).numpy()
                                for i in range(0, len(tx), 256)])
        n = len(np.unique(station)) if trained else "-"
        print(f"| {label} | {n} | {_auc(ty, p):.3f} | {100 * _at_five_percent(p, ty):.1f} % |", flush=True)

    print(f"test: {len(ty)} stations ({int(ty.sum())} with X) of {', '.join(n.name for n in a.test_network)}")
    print("| network | training stations | AUC | right at 5 % false alarms |\n|---|---|---|---|")
    runs = [pd.read_csv(r / "results/verdicts/cnn.csv").set_index("station")[["probability_all"]]
            .join(_truth(n).set_index("station").x_present) for n, r in zip(a.test_network, a.test_run, strict=True)]
    p_run = np.concatenate([v.probability_all.to_numpy() for v in runs])
    y_run = np.concatenate([v.x_present.to_numpy() for v in runs]) == 1
    print(f"| the runs' own CNN (cnn.csv, image 0) | - | {_auc(y_run, p_run):.3f} | "
          f"{100 * _at_five_percent(p_run, y_run):.1f} % |")
    scored("untrained" if a.from_scratch else "shipped", trained=False)
    warnings.filterwarnings("ignore", message=".*self.trainer.*")  # model_step logs; no Trainer here
    for p in module.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(module.parameters(), lr=a.learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
    data = TensorDataset(torch.from_numpy(x), torch.from_numpy(y.astype(np.float32)),
                         torch.from_numpy(depth.astype(np.float32)))
    gen = torch.Generator().manual_seed(a.seed)
    for epoch in range(a.epochs):
        module.train()
        for batch in DataLoader(data, batch_size=64, shuffle=True, generator=gen):
            loss = module.model_step(batch)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if (epoch + 1) % 3 == 0 or epoch + 1 == a.epochs:
            scored(f"trained on the draws' own labels, {epoch + 1} epochs")


def _rebuilt_images(rf_path: Path, config: dict):
    """Image 0 of one station's receiver functions as ``xdisc images`` makes it with ``config`` (and only that
    image: no subsets, no back-azimuth sectors); None when the station has too few for an image."""
    from xdisc import config as cfgmod
    from xdisc.cnn.images import images_file

    ds, _ = images_file(rf_path, cfgmod.deep_merge(config, {"images": {"images_per_station": 1,
                                                                      "min_rf_per_sector": 0}}))
    return ds["rf_image"].values[0] if ds.sizes["image"] else None


def _run_settings(run: Path) -> dict:
    """The configuration files a run was made with (``run.json``'s ``--configfile`` list, as
    ``independent_network.py score`` writes it), merged in order; {} without them."""
    import json

    import yaml
    from xdisc import config as cfgmod

    command = json.loads((run / "run.json").read_text())["command"] if (run / "run.json").exists() else []
    files = []
    if "--configfile" in command:
        for arg in command[command.index("--configfile") + 1:]:
            if arg.startswith("--"):
                break
            files.append(arg)
    merged: dict = {}
    for name in files:
        merged = cfgmod.deep_merge(merged, yaml.safe_load((run / name).read_text()) or {})
    return merged


def rebuilt(a) -> None:
    import torch
    import yaml
    from xdisc import config as cfgmod
    from xdisc.cnn.module import load_classifier

    torch.set_num_threads(a.threads)
    over = {}
    for item in a.images:
        key, _, value = item.partition("=")
        over[key] = yaml.safe_load(value)
    nets = {Path(c).name: load_classifier(c) for c in a.checkpoint}
    rows = []
    for network, run in _pairs(a):
        config = cfgmod.load(None, overrides=cfgmod.deep_merge(_run_settings(run), {"images": over}))
        own = {}
        for k in ("pretrain", "adapted") if a.run_networks else ():
            if not (run / "results/cnn" / f"{k}.ckpt").is_file():
                raise SystemExit(f"{run} has no results/cnn/{k}.ckpt (a --stacking-only run?): "
                                 "leave out --run-networks")
            own[k] = load_classifier(run / "results/cnn" / f"{k}.ckpt")
        truth = _truth(network).set_index("station")
        for path in sorted((run / "results/rf").glob("*.nc")):
            image = _rebuilt_images(path, config) if path.stem in truth.index else None
            if image is None:
                continue
            x = torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32))
            with torch.no_grad():
                scores = {name: float(m(x).reshape(-1)[0]) for name, m in {**nets, **own}.items()}
            rows.append({"draw": network.name, "y": int(truth.loc[path.stem, "x_present"]), **scores})
    if not rows:
        raise SystemExit("no station of the runs has receiver functions enough for an image")
    df = pd.DataFrame(rows)
    names = [c for c in df.columns if c not in ("draw", "y")]
    print(f"image 0 rebuilt with images {over or 'as in the runs'}: AUC / right at 5 % false alarms")
    print("| draws | stations | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for label, g in [*df.groupby("draw"), ("all", df)]:
        cells = [f"{_auc(g.y, g[n]):.3f} / {100 * _at_five_percent(g[n].values, g.y.values):.1f} %" for n in names]
        print(f"| {label} | {len(g)} | " + " | ".join(cells) + " |")


def _codes(network: Path) -> list[str]:
    return sorted(_truth(network).station)


def labels(a) -> None:
    truth = _truth(a.network).set_index("station")
    labelled = _codes(a.network)[::2]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w") as f:
        f.write("station,image,label,labeller,time,note,source\n")
        for code in labelled:
            label = "present" if truth.loc[code, "x_present"] == 1 else "absent"
            f.write(f"{code},*,{label},truth,,independent_network.py truth,cnn_run_checks.py labels\n")
    print(f"{len(labelled)} station labels -> {a.out}")


def half(a) -> None:
    truth = _truth(a.network).set_index("station").loc[_codes(a.network)[1::2]]
    y = truth.x_present.to_numpy() == 1
    print(f"{len(y)} unlabelled stations ({int(y.sum())} with X) of {a.network.name}")
    print("| run | method | right | X found | false alarms | undetermined | AUC |\n|---|---|---|---|---|---|---|")
    for run in a.run:
        for method in ("cnn", "stacking"):
            v = pd.read_csv(run / f"results/verdicts/{method}.csv").set_index("station").reindex(truth.index)
            verdict = v.verdict.fillna("undetermined").to_numpy()
            auc = f"{_auc(y, v.probability_all.to_numpy()):.3f}" if method == "cnn" else ""
            right = np.sum(((verdict == "present") & y) | ((verdict == "absent") & ~y))
            found, false = np.sum((verdict == "present") & y), np.sum((verdict == "present") & ~y)
            unsure = np.sum(verdict == "undetermined")
            print(f"| {run.name} | {method} | {right} | {found} | {false} | {unsure} | {auc} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in (("adapt-at-test", "AdaBN and TENT on the run's real images"),
                       ("fusion", "the stacking's evidence beside the CNN's"),
                       ("anatomy", "false alarms, X style, combined verdicts"),
                       ("in-domain", "the shipped network trained on the draws' own labels"),
                       ("rebuilt", "image 0 made again from the runs' receiver functions, scored by networks"),
                       ("half", "the verdicts of the stations that `labels` left unlabelled")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--network", type=Path, nargs="+" if name != "half" else None, required=True,
                       help="independent_network.py draws")
        p.add_argument("--run", type=Path, nargs="+", required=True, help="their runs, in the same order")
        if name in ("adapt-at-test", "in-domain"):
            p.add_argument("--seed", type=int, default=0)
        if name in ("adapt-at-test", "in-domain", "rebuilt"):
            p.add_argument("--threads", type=int, default=2)
        if name == "rebuilt":
            p.add_argument("--images", nargs="*", default=[], metavar="KEY=VALUE",
                           help="image settings over the runs' (YAML values, e.g. noise_coda_s=null)")
            p.add_argument("--checkpoint", type=Path, nargs="+",
                           default=[REPO / "workflow/src/xdisc/cnn/shipped/xnet.ckpt"], help="networks to score")
            p.add_argument("--run-networks", action="store_true", help="also the runs' pretrain and adapted networks")
        if name == "adapt-at-test":
            p.add_argument("--steps", type=int, nargs="+", default=[5, 20], help="TENT steps")
        if name == "in-domain":
            p.add_argument("--test-network", type=Path, nargs="+", required=True, help="draws to score")
            p.add_argument("--test-run", type=Path, nargs="+", required=True, help="their runs, in the same order")
            p.add_argument("--stations", type=int, default=0, help="train on this many stations (0: all)")
            p.add_argument("--epochs", type=int, default=6)
            p.add_argument("--learning-rate", type=float, default=3e-4)
            p.add_argument("--from-scratch", action="store_true", help="the shipped architecture, untrained")
    p = sub.add_parser("labels", help="a label file for every second station of a draw, from its truth")
    p.add_argument("--network", type=Path, required=True, help="an independent_network.py draw")
    p.add_argument("--out", type=Path, required=True, help="the label CSV to write")
    a = ap.parse_args(argv)
    {"adapt-at-test": adapt_at_test, "fusion": fusion, "anatomy": anatomy, "in-domain": in_domain,
     "rebuilt": rebuilt, "labels": labels, "half": half}[a.command](a)


if __name__ == "__main__":
    main()
