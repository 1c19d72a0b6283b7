"""Command-line interface: one subcommand per pipeline stage.

Snakemake rules call these commands; every science setting comes from the validated
configuration (``--config FILE``, ``--settings-file JSON`` and/or ``--settings JSON``), command-line
options override single values.

Start-up is kept light: this module imports only the standard library and xdisc's light modules
(configuration, labels); numpy, xarray, obspy, torch and matplotlib are imported by the command
that needs them (``xdisc --help`` or ``xdisc download ...`` never load torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from xdisc import config as cfgmod
from xdisc import labels as label_files
from xdisc.label_app import session as label_session

log = logging.getLogger("xdisc")


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)


def _add_config_arguments(p) -> None:
    """--config and --settings, read by :func:`_load_config`."""
    p.add_argument("--config", type=Path, help="YAML configuration (default: built-in defaults)")
    p.add_argument("--settings-file", type=Path, metavar="JSON",
                   help="file with a JSON object merged over the configuration (used by Snakemake rules)")
    p.add_argument("--settings", help="JSON object merged over the configuration (and over --settings-file)")


def _settings(args) -> dict:
    """The overrides of --settings-file, then --settings, merged (each must be a JSON object)."""
    out: dict = {}
    sources = []
    if getattr(args, "settings_file", None) is not None:
        if not args.settings_file.is_file():
            raise FileNotFoundError(f"settings file {args.settings_file} does not exist")
        sources.append(("--settings-file", args.settings_file.read_text()))
    if getattr(args, "settings", None):
        sources.append(("--settings", args.settings))
    for option, text in sources:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise cfgmod.ConfigError(f"{option}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise cfgmod.ConfigError(f"{option} must be a JSON object")
        out = cfgmod.deep_merge(out, value)
    return out


def _load_config(args) -> dict:
    return cfgmod.load(args.config, _settings(args))


def _progress(label: str):
    state = {"last": -1.0}

    def report(done: int, total: int, elapsed: float, unit: str = "samples"):
        if done < total and elapsed - state["last"] < 5.0:
            return
        state["last"] = elapsed
        rate = done / elapsed if elapsed > 0 else float("nan")
        eta = (total - done) / rate if rate > 0 else float("nan")
        log.info("%s: %d/%d %s (%.0f%%), %.1f %s/s, %.0f s left", label, done, total, unit,
                 100.0 * done / max(total, 1), rate, unit, eta)

    return report


# ----------------------------------------------------------------------------- synth

def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth", help="synthetic receiver functions (AK135/IASP91/PREM, with and without X)",
        description="Generate a synthetic receiver-function set from the configuration, or one model "
                    "for a quick look (give --x-depth or --no-x). Output: NetCDF with rf(sample, slowness, "
                    "time), label(sample) and every generating parameter.")
    p.add_argument("--out", required=True, type=Path, help="output NetCDF file")
    _add_config_arguments(p)
    p.add_argument("--n-samples", type=int, help="number of samples (synthetics.n_samples)")
    p.add_argument("--seed", type=int, help="random seed (synthetics.seed)")
    p.add_argument("--jobs", type=int, default=1, help="worker threads (default 1)")
    p.add_argument("--model", help="reference model: ak135, iasp91 or prem")
    p.add_argument("--model-file", type=Path, help="own 1-D model: .tvel, .nd or layer table (thickness_km vp vs rho)")
    p.add_argument("--slowness", type=float, action="append", help="slowness in s/km (repeatable)")
    p.add_argument("--no-noise", action="store_true", help="no noise and no augmentation")
    p.add_argument("--max-depth-km", type=float, help="half-space depth (layering.max_depth_km)")
    p.add_argument("--max-thickness-km", type=float, help="largest sub-layer thickness (layering.max_thickness_km)")
    p.add_argument("--max-velocity-step", type=float,
                   help="largest relative velocity step (layering.max_velocity_step)")
    p.add_argument("--no-flatten", action="store_true", help="flat layers, no earth-flattening transformation")
    single = p.add_argument_group("single model (quick look)")
    single.add_argument("--x-depth", type=float, help="depth of an X discontinuity (km): single-model mode")
    single.add_argument("--no-x", action="store_true", help="single-model mode without X")
    single.add_argument("--x-dvs", type=float, default=0.03, help="relative S jump of X (default 0.03)")
    single.add_argument("--x-dvp-ratio", type=float, default=0.5, help="dVp/dVs of X (default 0.5)")
    single.add_argument("--x-drho-ratio", type=float, default=0.3, help="drho/dVs of X (default 0.3)")
    single.add_argument("--x-gradient-km", type=float, default=0.0, help="width of the X jump (km, default 0 = sharp)")
    single.add_argument("--x-style", default="taper", choices=["taper", "constant", "layer"], help="how X is inserted")
    single.add_argument("--moho-km", type=float, help="crustal thickness (default: the model's own crust)")
    single.add_argument("--vpvs", type=float, default=1.75, help="crustal vp/vs when --moho-km is given")
    p.set_defaults(func=run_synth)


def _synth_overrides(args) -> dict:
    syn: dict = {}
    lay: dict = {}
    if args.n_samples is not None:
        syn["n_samples"] = args.n_samples
    if args.seed is not None:
        syn["seed"] = args.seed
    if args.model and args.model_file:
        raise cfgmod.ConfigError("give either --model or --model-file, not both")
    if args.model or args.model_file:
        syn["models"] = [str(args.model or args.model_file)]
    if args.slowness:
        syn["slowness_s_per_km"] = args.slowness
    if args.no_noise:
        syn["noise"] = {"enabled": False}
        syn["augmentation"] = {"spurious_probability": 0.0, "amplitude_jitter": 0.0, "time_shift_s": 0.0,
                               "trim_probability": 0.0}
    for key in ("max_depth_km", "max_thickness_km", "max_velocity_step"):
        if getattr(args, key) is not None:
            lay[key] = getattr(args, key)
    if args.no_flatten:
        lay["flatten"] = False
    out = {}
    if syn:
        out["synthetics"] = syn
    if lay:
        out["layering"] = lay
    return out


def run_synth(args) -> int:
    from xdisc.core.artifacts import write_netcdf
    from xdisc.synth.synthetics import make_dataset, single_parameters

    config = cfgmod.load(args.config, cfgmod.deep_merge(_settings(args), _synth_overrides(args)))
    params = None
    if args.x_depth is not None or args.no_x:
        params = single_parameters(config, args.x_depth, args.no_x, args.x_dvs, args.x_dvp_ratio, args.x_drho_ratio,
                                   args.x_gradient_km, args.x_style, args.moho_km, args.vpvs)
    n = config["synthetics"]["n_samples"] if params is None else 1
    log.info("synth: %d samples x %d slownesses, models %s, seed %d, %d thread(s)", n,
             len(config["synthetics"]["slowness_s_per_km"]), ", ".join(config["synthetics"]["models"]),
             config["synthetics"]["seed"], args.jobs)
    ds = make_dataset(config, n_jobs=args.jobs, progress=_progress("synth"), params=params)
    write_netcdf(ds, args.out)
    log.info("synth: wrote %s (%d samples, %d with X)", args.out, ds.sizes["sample"], int(ds["label"].sum()))
    return 0


# ----------------------------------------------------------------------------- download

def _add_download(sub) -> None:
    p = sub.add_parser(
        "download", help="events, stations and waveform windows (FDSN, local archive or embedded data)",
        description="Acquire the inputs named by the 'data' configuration. Run 'events' and 'stations' once, "
                    "then 'waveforms' per station or per batch of stations; an interrupted 'waveforms' run "
                    "resumes from each station's journal.")
    p.add_argument("what", choices=["events", "stations", "waveforms"])
    _add_config_arguments(p)
    p.add_argument("--out", type=Path, help="events: QuakeML file; stations: StationXML file; waveforms of several "
                                            "stations: the batch table (CSV, one row per station, written once "
                                            "all have finished)")
    p.add_argument("--out-csv", type=Path, help="stations: station table (CSV; skipped stations with the reason)")
    p.add_argument("--out-providers", type=Path, help="stations: what each provider answered (CSV)")
    p.add_argument("--station", nargs="+", metavar="NET.STA",
                   help="waveforms: the station (with --manifest), or several (with --manifest-dir and --out)")
    p.add_argument("--events", type=Path, help="waveforms: QuakeML from 'download events'")
    p.add_argument("--stations", type=Path, help="waveforms: station table from 'download stations'")
    p.add_argument("--out-dir", type=Path, help="waveforms: folder of the event windows (one miniSEED per event; "
                                                "default: the manifest path without its suffix)")
    p.add_argument("--manifest", type=Path, help="waveforms: manifest CSV (status of every request)")
    p.add_argument("--manifest-dir", type=Path,
                   help="waveforms, several stations: folder of their manifests (NET.STA.csv, windows in NET.STA/)")
    p.set_defaults(func=run_download)


def _station_row(table: Path, code: str) -> dict:
    return _station_rows(table, [code])[0]


def _station_rows(table: Path, codes: list[str]) -> list[dict]:
    """The rows of the station table of ``codes`` (NET.STA), in that order; a clear error for a code that
    is not there or was skipped."""
    import csv

    from xdisc.data.codes import selected

    for code in codes:
        if "." not in code:
            raise cfgmod.ConfigError(f"--station must be NET.STA, got {code!r}")
    with open(table, newline="") as f:
        rows = {f"{row['network']}.{row['station']}": row for row in csv.DictReader(f)}
    out = []
    for code in codes:
        row = rows.get(code)
        if row is None:
            raise cfgmod.ConfigError(f"station {code} is not in {table}")
        if not selected([row]):
            raise cfgmod.ConfigError(f"station {code} was skipped: {row.get('reason', '')}")
        out.append(row)
    return out


def _need(args, *names):
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise cfgmod.ConfigError(f"xdisc download {args.what} needs {', '.join(missing)}")


def run_download(args) -> int:
    from xdisc.core.artifacts import atomic_output, write_csv
    from xdisc.data import download as dl
    from xdisc.data.codes import selected

    config = _load_config(args)
    data_cfg = config["data"]
    if args.what == "events":
        _need(args, "out")
        cat = dl.get_events(data_cfg)
        with atomic_output(args.out) as tmp:
            cat.write(str(tmp), format="QUAKEML")
        log.info("download events: %d events (M >= %s) from %s -> %s", len(cat), data_cfg["events"]["min_magnitude"],
                 data_cfg["source"], args.out)
        return 0
    if args.what == "stations":
        _need(args, "out", "out_csv")
        inv, rows, report = dl.select_stations(data_cfg)
        if args.out_providers is not None:
            write_csv(report, dl.PROVIDER_FIELDS, args.out_providers)
        chosen = selected(rows)
        if not chosen:
            failed = "; ".join(f"{r['provider']}: {r['reason']}" for r in report if r["status"] == "error")
            skipped = "; ".join(f"{r['network']}.{r['station']}: {r['reason']}" for r in rows[:5])
            raise cfgmod.ConfigError("no usable station matches data.stations (check codes, channels, region and "
                                     "time range)" + (f"; providers failed: {failed}" if failed else "")
                                     + (f"; skipped: {skipped}" if skipped else ""))
        with atomic_output(args.out) as tmp:
            inv.write(str(tmp), format="STATIONXML")
        write_csv(rows, rows[0], args.out_csv)
        log.info("download stations: %d station(s): %s", len(chosen),
                 ", ".join(f"{r['network']}.{r['station']}" for r in chosen[:20]))
        if len(chosen) < len(rows):
            log.warning("download stations: %d station(s) skipped (see the reason column of %s)",
                        len(rows) - len(chosen), args.out_csv)
        return 0
    _need(args, "station", "events", "stations")
    from obspy import read_events

    rows = _station_rows(args.stations, args.station)
    events = read_events(str(args.events))
    if args.manifest_dir is None:
        _need(args, "manifest")
        if len(rows) > 1:
            raise cfgmod.ConfigError("xdisc download waveforms: several stations need --manifest-dir and --out")
        log.info("download waveforms %s from %s", args.station[0], rows[0].get("provider") or data_cfg["source"])
        result = dl.download_station(events, rows[0], data_cfg, args.out_dir or dl.waveform_folder(args.manifest),
                                     args.manifest, config["earth_model"],
                                     progress=_progress(f"download {args.station[0]}"))
        _log_station_download(args.station[0], result)
        return 0
    _need(args, "out")
    log.info("download waveforms: %d station(s) from %s", len(rows), data_cfg["source"])
    table = dl.download_batch(events, rows, data_cfg, args.manifest_dir, config["earth_model"],
                              progress=lambda code: _progress(f"download {code}"), report=_log_station_download)
    write_csv(table, dl.BATCH_FIELDS, args.out)
    log.info("download waveforms: %d station(s) done -> %s", len(table), args.out)
    return 0


def _log_station_download(code: str, result) -> None:
    for eid, why in result.skipped:
        log.info("download waveforms %s: event %s left out: %s", code, eid, why)
    summary = result.summary
    log.info("download waveforms %s: %d event window(s) from %s", code, len(result.requests), result.source)
    log.info("download waveforms %s: ok %d, nodata %d, error %d, rejected %d, already done %d", code,
             summary.ok, summary.nodata, summary.error, summary.rejected, summary.reused)


# ----------------------------------------------------------------------------- rf

def _add_rf_inputs(p) -> None:
    p.add_argument("--station", required=True, help="NET.STA")
    p.add_argument("--events", required=True, type=Path, help="QuakeML from 'download events'")
    p.add_argument("--stations", required=True, type=Path, help="station table from 'download stations'")
    p.add_argument("--inventory", required=True, type=Path, help="StationXML from 'download stations'")
    p.add_argument("--manifest", required=True, type=Path, help="manifest from 'download waveforms'")
    p.add_argument("--waveforms", type=Path,
                   help="folder of the event windows (default: the manifest path without its suffix)")


def _add_rf(sub) -> None:
    p = sub.add_parser("rf", help="P receiver functions of one station",
                       description="Rotate, deconvolve and quality-control the event windows of one station "
                                   "(from 'xdisc download waveforms'); rejected events stay in the output, "
                                   "flagged with their reason.")
    _add_rf_inputs(p)
    p.add_argument("--out", required=True, type=Path, help="output NetCDF")
    _add_config_arguments(p)
    p.set_defaults(func=run_rf)


def run_rf(args) -> int:
    _compute_rf(args, _load_config(args), args.out)
    return 0


def _compute_rf(args, config: dict, out: Path) -> None:
    from obspy import read_events, read_inventory

    from xdisc.core.artifacts import write_netcdf
    from xdisc.core.deconvolution import RFSettings
    from xdisc.data.download import waveform_folder
    from xdisc.data.receiver_functions import compute_station, event_table, load_items

    row = _station_row(args.stations, args.station)
    for path in (args.events, args.inventory, args.manifest):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
    inv = read_inventory(str(args.inventory))
    items = load_items(args.manifest, args.waveforms or waveform_folder(args.manifest))
    log.info("rf %s: %d event window(s)", args.station, len(items))
    rf = RFSettings(**config["receiver_function"])
    stations = config["data"]["stations"]
    ds = compute_station(items, inv, row, rf, config["rf_processing"], config["earth_model"],
                         event_table(read_events(str(args.events))), progress=_progress(f"rf {args.station}"),
                         sensor_order=(stations.get("channel"), stations.get("location")))
    write_netcdf(ds, out)
    log.info("rf %s: %d receiver functions, %d pass QC -> %s", args.station, ds.sizes["event"], ds.attrs["n_pass"],
             out)
    if ds.attrs["qc_note"]:
        log.warning("rf %s: %s", args.station, ds.attrs["qc_note"])


# ----------------------------------------------------------------------------- stack

def _add_stack(sub) -> None:
    p = sub.add_parser("stack", help="depth and slowness stacks of one station, bootstrap bounds, X verdict",
                       description="Moveout-correct the station's receiver functions to depth, stack them with "
                                   "bootstrap 95 %% bounds, build a vespagram and decide whether X is present.")
    p.add_argument("--rf", required=True, type=Path, help="receiver functions from 'xdisc rf'")
    p.add_argument("--out", required=True, type=Path, help="output NetCDF")
    p.add_argument("--figure", type=Path, help="figure of the station (PNG or PDF)")
    p.add_argument("--images", type=Path, metavar="NC",
                   help="also write the station's CNN images here (as 'xdisc images')")
    _add_config_arguments(p)
    p.set_defaults(func=run_stack)


def run_stack(args) -> int:
    _stack(args.rf, args.out, args.figure, args.images, _load_config(args))
    return 0


def _stack(rf: Path, out: Path, figure: Path | None, images: Path | None, config: dict) -> None:
    from xdisc.core.artifacts import write_netcdf
    from xdisc.stack.stacking import stack_file

    ds = stack_file(rf, config)
    station = {k: ds[k].item() for k in ("network", "station")}
    write_netcdf(ds, out)
    a = ds.attrs
    log.info("stack %s.%s: %d RFs, verdict %s%s%s", station["network"], station["station"], a["n_rf"], a["verdict"],
             f" at {a['x_depth_km']:.0f} km (amp {a['x_amp']:.3f})" if a["verdict"] == "present" else "",
             f" ({a['reason']})" if a["reason"] else "")
    if figure:
        from xdisc.report.figures import plot_station_stack

        plot_station_stack(ds, figure)
        log.info("stack: figure %s", figure)
    if images:
        _write_images(rf, images, config)


# ----------------------------------------------------------------------------- noise

def _add_noise(sub) -> None:
    p = sub.add_parser("noise", help="a station's receiver-function noise pool (CNN adaptation)",
                       description="For each usable event of the station: its transverse receiver function, divided "
                                   "by the radial direct P and scaled to the radial pre-P level, and its radial "
                                   "residual (the radial receiver function minus its neighbours in slowness): the "
                                   "noise that 'xdisc adapt' adds to synthetic signals (cnn.adapt.noise picks one).")
    p.add_argument("--rf", required=True, type=Path, help="receiver functions from 'xdisc rf'")
    p.add_argument("--out", required=True, type=Path, help="output NetCDF")
    _add_config_arguments(p)
    p.set_defaults(func=run_noise)


def run_noise(args) -> int:
    _write_noise(args.rf, args.out, _load_config(args))
    return 0


def _write_noise(rf: Path, out: Path, config: dict) -> None:
    from xdisc.core.artifacts import write_netcdf
    from xdisc.synth.noise_pool import noise_pool

    ds = noise_pool(rf, config["stacking"]["use_qc"])
    write_netcdf(ds, out)
    log.info("noise %s.%s: %d trace(s) -> %s", ds["network"].item(), ds["station"].item(), ds.sizes["trace"], out)


# ----------------------------------------------------------------------------- station

def _add_station(sub) -> None:
    p = sub.add_parser("station", help="one station's chain: receiver functions, stacks and verdict, CNN images, "
                                       "noise pool",
                       description="'xdisc rf', 'xdisc stack' (with --images) and 'xdisc noise' in one call (one "
                                   "workflow job per station: a global run plans 2 jobs per station, not 4). Writes "
                                   "the same files as those commands.")
    _add_rf_inputs(p)
    p.add_argument("--rf", required=True, type=Path, help="output NetCDF of the receiver functions")
    p.add_argument("--stack", required=True, type=Path, help="output NetCDF of the stacks and verdict")
    p.add_argument("--figure", type=Path, help="figure of the station (PNG or PDF)")
    p.add_argument("--images", type=Path, metavar="NC", help="output NetCDF of the station's CNN images")
    p.add_argument("--noise", type=Path, metavar="NC", help="output NetCDF of the station's noise pool")
    _add_config_arguments(p)
    p.set_defaults(func=run_station)


def run_station(args) -> int:
    config = _load_config(args)
    _compute_rf(args, config, args.rf)
    _stack(args.rf, args.stack, args.figure, args.images, config)
    if args.noise:
        _write_noise(args.rf, args.noise, config)
    return 0


def _write_verdict_table(rows: list[dict], columns, path: Path, label: str) -> None:
    from xdisc.core.verdicts import write_verdict_table

    counts = write_verdict_table(rows, columns, path)
    log.info("%s: %d station(s): %s -> %s", label, len(rows), counts, path)


def _add_verdicts(sub) -> None:
    p = sub.add_parser("verdicts", help="table of the stacking verdicts of all stations",
                       description="Collect the verdicts of 'xdisc stack' outputs into one CSV table.")
    p.add_argument("stacks", nargs="*", type=Path, help="outputs of 'xdisc stack'")
    p.add_argument("--out", required=True, type=Path, help="CSV table")
    p.set_defaults(func=run_verdicts)


def run_verdicts(args) -> int:
    from xdisc.core.artifacts import open_netcdf
    from xdisc.stack.stacking import TABLE_COLUMNS, verdict_row

    rows = [verdict_row(open_netcdf(path)) for path in args.stacks]
    _write_verdict_table(rows, TABLE_COLUMNS, args.out, "verdicts")
    return 0


# ----------------------------------------------------------------------------- images

def _add_images(sub) -> None:
    p = sub.add_parser("images", help="receiver-function images of one station (CNN input)",
                       description="Moveout-correct the station's QC-passed receiver functions to depth and stack "
                                   "them per slowness bin: image 0 from every receiver function, further images "
                                   "from seeded random subsets and back-azimuth quadrants.")
    p.add_argument("--rf", required=True, type=Path, help="receiver functions from 'xdisc rf'")
    p.add_argument("--out", required=True, type=Path, help="output NetCDF")
    _add_config_arguments(p)
    p.set_defaults(func=run_images)


def run_images(args) -> int:
    _write_images(args.rf, args.out, _load_config(args))
    return 0


def _write_images(rf: Path, out: Path, config: dict) -> None:
    from xdisc.cnn.images import ImageSettings, images_file
    from xdisc.core.artifacts import write_netcdf

    ds, n_used = images_file(rf, config)
    code = f"{ds['network'].item()}.{ds['station'].item()}"
    write_netcdf(ds, out)
    if ds.sizes["image"] == 0:
        log.warning("images %s: %d receiver functions < images.min_rf = %d: no image", code, n_used,
                    ImageSettings.from_config(config["images"]).min_rf)
    else:
        log.info("images %s: %d image(s) from %d receiver functions -> %s", code, ds.sizes["image"], n_used, out)


# ----------------------------------------------------------------------------- train / predict

def _add_train(sub) -> None:
    p = sub.add_parser("train", help="pretrain the CNN on synthetics, or fine-tune it on labelled real images",
                       description="pretrain: train XNet on synthetic station images drawn on the fly from a "
                                   "synthetic set (fresh noise each epoch), early stopping on a seeded validation "
                                   "split, temperature scaling, evaluation on a separately seeded test set. "
                                   "finetune: start from the pretrained checkpoint, station-grouped "
                                   "cross-validation on labelled real images, then a final fit on every label.")
    p.add_argument("stage", choices=["pretrain", "shipped", "finetune"],
                   help="shipped: copy the network that ships with xdisc and score it on --test (no training)")
    p.add_argument("--out", required=True, type=Path, help="output checkpoint (.ckpt)")
    p.add_argument("--metrics", required=True, type=Path, help="metrics JSON")
    p.add_argument("--synthetics", type=Path, help="synthetic set from 'xdisc synth' (pretrain; replay in finetune)")
    p.add_argument("--test", type=Path, help="pretrain: separately seeded synthetic test set")
    p.add_argument("--train-models", help="pretrain: comma-separated reference models to train on (cross-model test)")
    p.add_argument("--test-models", help="pretrain: comma-separated reference models to test on")
    p.add_argument("--pretrained", type=Path, help="finetune: checkpoint of 'xdisc train pretrain'")
    p.add_argument("--images", type=Path, nargs="*", default=[], help="finetune: station images from 'xdisc images'")
    p.add_argument("--labels", type=Path, nargs="*", help="finetune: label CSV files (default: cnn.labels)")
    p.add_argument("--stacking", type=Path, nargs="?", const=None,
                   help="finetune: stacking verdicts (results/verdicts/stacking.csv) for the weak labels of "
                        "cnn.finetune.weak_labels (needed when enabled)")
    p.add_argument("--summary", type=Path, help="finetune: HTML summary of the labels and cross-validation (report)")
    p.add_argument("--figures", type=Path, help="folder for the figures of this stage")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--workers", default="0",
                   help="data-loader worker processes that build images while torch trains (default 0; 'auto': "
                        "one per thread when --threads >= 2, torch then trains on one thread: building the images "
                        "takes most of the time)")
    _add_config_arguments(p)
    p.set_defaults(func=run_train)


def _models(arg: str | None) -> list[str] | None:
    return [m.strip() for m in arg.split(",") if m.strip()] if arg else None


def run_train(args) -> int:
    from xdisc.cnn import train

    config = _load_config(args)
    if args.stage == "shipped":
        from xdisc.cnn.shipped import use_shipped

        result = use_shipped(config, str(args.test) if args.test else None, args.out, args.metrics)
        if args.figures:
            from xdisc.report.ml_figures import plot_pretrain

            plot_pretrain(result, args.figures)
        return 0
    if args.stage == "pretrain":
        if args.synthetics is None:
            raise cfgmod.ConfigError("xdisc train pretrain needs --synthetics")
        workers = (args.threads if args.threads >= 2 else 0) if args.workers == "auto" else int(args.workers)
        threads = 1 if args.workers == "auto" else args.threads
        result = train.pretrain(config, str(args.synthetics), str(args.test) if args.test else None, args.out,
                                args.metrics, threads, _models(args.train_models), _models(args.test_models), workers)
        test = result.get("test", {})
        log.info("pretrain: %d epochs in %.0f s; test accuracy %.4f, AUC %.4f -> %s", result["epochs"],
                 result["fit_seconds"], test.get("accuracy", math.nan), test.get("roc_auc", math.nan), args.out)
        if args.figures:
            from xdisc.report.ml_figures import plot_pretrain

            plot_pretrain(result, args.figures)
        return 0
    if args.pretrained is None:
        raise cfgmod.ConfigError("xdisc train finetune needs --pretrained")
    labels = args.labels if args.labels is not None else [Path(p) for p in config["cnn"]["labels"]]
    result = train.finetune(config, args.pretrained, args.images, labels, args.out, args.metrics, args.threads,
                            str(args.synthetics) if args.synthetics else None, args.stacking)
    cv = result.get("cross_validation")
    log.info("finetune: %d labelled image(s) from %d station(s)%s -> %s", result["n_images"], len(result["stations"]),
             f"; grouped CV accuracy {cv['finetuned']['accuracy']:.3f} (pretrained only "
             f"{cv['pretrained_only']['accuracy']:.3f})" if cv else "", args.out)
    if args.summary:
        from xdisc.report.finetune import write_finetune_summary

        write_finetune_summary(result, args.summary)
    return 0


def _add_adapt(sub) -> None:
    p = sub.add_parser("adapt", help="adapt the CNN to the run's stations (their own noise; no labels)",
                       description="Fine-tune a pretrained checkpoint on synthetic X / no-X signals at the "
                                   "slownesses of each station's events plus that station's own receiver-function "
                                   "noise (pools from 'xdisc noise'); report how the pretrained and the adapted "
                                   "network score held-out own-noise stations (cnn.adapt).")
    p.add_argument("noise", nargs="*", type=Path, help="noise pools from 'xdisc noise' (one per station)")
    p.add_argument("--pretrained", required=True, type=Path, help="checkpoint of 'xdisc train pretrain'")
    p.add_argument("--synthetics", required=True, type=Path, help="synthetic set of pretraining (training signals)")
    p.add_argument("--test", required=True, type=Path, help="separately seeded synthetic set (held-out signals)")
    p.add_argument("--out", required=True, type=Path, help="adapted checkpoint (.ckpt)")
    p.add_argument("--metrics", required=True, type=Path, help="metrics JSON")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    _add_config_arguments(p)
    p.set_defaults(func=run_adapt)


def run_adapt(args) -> int:
    from xdisc.cnn.adapt import adapt

    adapt(_load_config(args), args.pretrained, str(args.synthetics), str(args.test), args.noise, args.out,
          args.metrics, args.threads)
    log.info("adapt: -> %s", args.out)
    return 0


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="each station's present / absent thresholds from its own noise",
                       description="Score own-noise stations of every station (synthetic test set signals, no X "
                                   "and X of dVs >= cnn.adapt.absent_dvs, plus the station's own noise) with the "
                                   "final model and write the station's thresholds: present at or above "
                                   "cnn.adapt.present_probability (or, where that is null, the conformal 1 - "
                                   "false_alarm_rate order statistic of its no-X scores), absent below the "
                                   "conformal miss_rate order statistic of its X scores.")
    p.add_argument("noise", nargs="*", type=Path, help="noise pools from 'xdisc noise' (one per station)")
    p.add_argument("--model", required=True, type=Path, help="the checkpoint that 'xdisc predict' uses")
    p.add_argument("--test", required=True, type=Path, help="separately seeded synthetic set (calibration signals)")
    p.add_argument("--out", required=True, type=Path, help="per-station thresholds (CSV)")
    p.add_argument("--metrics", required=True, type=Path, help="metrics JSON")
    p.add_argument("--draws", nargs="*", type=Path, default=[],
                   help="files or folders of 'xdisc calibration-draws': the no-X draws of those stations")
    p.add_argument("--refined", type=Path,
                   help="folder of 'xdisc refine' (cnn.refine): its stations are scored by their fold's network")
    p.add_argument("--refine-draws", nargs="*", type=Path, default=[],
                   help="with --refined: files or folders of 'xdisc refine-draws' (the stations' X draws)")
    _add_config_arguments(p)
    p.set_defaults(func=run_calibrate)
    p = sub.add_parser("calibration-draws", help="no-X calibration draws deconvolved as each station's data",
                       description="Per station: synthetic seismograms of no-X samples of the test set (extended "
                                   "sources) plus noise of the station's pre-P spectra at each event's SNR, "
                                   "deconvolved as 'xdisc rf' does and imaged; 'xdisc calibrate --draws' scores "
                                   "them for the present threshold (cnn.adapt.calibration_noise: redeconvolved).")
    p.add_argument("noise", nargs="*", type=Path, help="noise pools from 'xdisc noise' (one per station)")
    p.add_argument("--test", required=True, type=Path, help="the synthetic test set 'xdisc calibrate' uses")
    p.add_argument("--out", required=True, type=Path, help="folder: one NET.STA.nc per station")
    _add_config_arguments(p)
    p.set_defaults(func=run_calibration_draws)


def run_calibrate(args) -> int:
    from xdisc.cnn.adapt import calibrate

    calibrate(_load_config(args), args.model, str(args.test), args.noise, args.out, args.metrics, args.draws,
              args.refined, args.refine_draws)
    log.info("calibrate: -> %s", args.out)
    return 0


def run_calibration_draws(args) -> int:
    from xdisc.cnn.redecon import calibration_draws

    written = calibration_draws(_load_config(args), str(args.test), args.noise, args.out)
    log.info("calibration-draws: %d station(s) -> %s", len(written), args.out)
    return 0


def _add_refine(sub) -> None:
    p = sub.add_parser("refine-draws", help="X and training draws deconvolved as each station's data (cnn.refine)",
                       description="Per station: its X calibration draws (test set, dVs >= cnn.adapt.absent_dvs) and "
                                   "cnn.refine.training_stations training draws (pretraining set), synthetic "
                                   "seismograms plus noise of the station's pre-P spectra at each event's SNR, "
                                   "deconvolved as 'xdisc rf' does and imaged, for 'xdisc refine' and "
                                   "'xdisc calibrate --refined'.")
    p.add_argument("noise", nargs="*", type=Path, help="noise pools from 'xdisc noise' (one per station)")
    p.add_argument("--test", required=True, type=Path, help="the synthetic test set 'xdisc calibrate' uses")
    p.add_argument("--synthetics", required=True, type=Path, help="the synthetic set of pretraining")
    p.add_argument("--out", required=True, type=Path, help="folder: one NET.STA.nc per station")
    _add_config_arguments(p)
    p.set_defaults(func=run_refine_draws)
    p = sub.add_parser("refine", help="the run's network refined per fold of stations on their draws (cnn.refine)",
                       description="Split the stations with draws into cnn.refine.folds folds and fine-tune the "
                                   "run's network once per fold on the other folds' training, no-X and X draws "
                                   "(deconvolved as each station's data), so that no station is scored by a "
                                   "network that learnt its draws. Writes fold_K.ckpt and folds.csv.")
    p.add_argument("--model", required=True, type=Path, help="the run's network (results/cnn/finetune.ckpt)")
    p.add_argument("--draws", nargs="*", type=Path, default=[],
                   help="files or folders of 'xdisc calibration-draws' (no-X draws)")
    p.add_argument("--refine-draws", nargs="*", type=Path, default=[],
                   help="files or folders of 'xdisc refine-draws' (X and training draws)")
    p.add_argument("--out", required=True, type=Path, help="folder: fold_K.ckpt and folds.csv")
    p.add_argument("--metrics", required=True, type=Path, help="metrics JSON")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    _add_config_arguments(p)
    p.set_defaults(func=run_refine)


def run_refine_draws(args) -> int:
    from xdisc.cnn.refine import refinement_draws

    written = refinement_draws(_load_config(args), str(args.test), str(args.synthetics), args.noise, args.out)
    log.info("refine-draws: %d station(s) -> %s", len(written), args.out)
    return 0


def run_refine(args) -> int:
    from xdisc.cnn.refine import refine

    result = refine(_load_config(args), args.model, args.draws, args.refine_draws, args.out, args.metrics,
                    args.threads)
    log.info("refine: %d station(s) in %d fold(s) -> %s", result["stations"], result["folds"], args.out)
    return 0


def _add_detectability(sub) -> None:
    p = sub.add_parser("detectability", help="per-station injection tests: which X each method could have seen",
                       description="kernels: the earth model's X conversions over the configured grid (once per "
                                   "run). station: add them to one station's receiver functions and count how "
                                   "often each method says present (detection curves, dvs90, false-alarm rate). "
                                   "table: one CSV row per station file.")
    p.add_argument("what", choices=["kernels", "station", "table"])
    p.add_argument("files", nargs="*", type=Path,
                   help="table: the station files, or folders of them (every *.nc inside)")
    p.add_argument("--rf", type=Path, nargs="+",
                   help="station: receiver functions of one station or several ('xdisc rf'), judged one by one")
    p.add_argument("--kernels", type=Path, help="station: the run's kernels")
    p.add_argument("--model", type=Path,
                   help="station: the CNN checkpoint that 'xdisc predict' uses (none: stacking only)")
    p.add_argument("--calibration", type=Path, help="station: the per-station thresholds of 'xdisc calibrate'")
    p.add_argument("--refined", type=Path,
                   help="station: folder of 'xdisc refine' (cnn.refine): its stations are judged by their fold's "
                        "network, as 'xdisc predict --refined' judges them")
    p.add_argument("--test", type=Path,
                   help="station: synthetic set whose no-X samples carry the false-alarm draws (default: the earth "
                        "model's own receiver functions)")
    p.add_argument("--out", required=True, type=Path,
                   help="kernels: NetCDF; station: NetCDF (*.nc, one --rf) or a folder (one NET.STA.nc per --rf); "
                        "table: CSV")
    p.add_argument("--figure", type=Path, help="table: map of dvs90 and the detection curves (PNG or PDF)")
    _add_config_arguments(p)
    p.set_defaults(func=run_detectability)


def run_detectability(args) -> int:
    from xdisc import detectability as det
    from xdisc.core.artifacts import write_netcdf
    from xdisc.core.verdicts import write_table

    config = _load_config(args)
    if args.what == "kernels":
        write_netcdf(det.kernels_dataset(config), args.out)
    elif args.what == "station":
        if args.rf is None or args.kernels is None:
            raise SystemExit("xdisc detectability station needs --rf and --kernels")
        single = args.out.suffix == ".nc"
        if single and len(args.rf) > 1:
            raise SystemExit("xdisc detectability station: several --rf need a folder as --out, not a .nc file")
        from xdisc.cnn.folds import fold_checkpoints
        from xdisc.cnn.predict import check_networks, read_calibration

        refined, calibration = fold_checkpoints(args.refined), read_calibration(args.calibration)
        if args.model is not None:  # thresholds of one network are never compared with another's probability
            check_networks(calibration, refined)
        for k, rf in enumerate(args.rf, 1):
            ds = det.station_file(rf, args.kernels, config, args.model, calibration,
                                  _progress(f"detectability {rf.stem} ({k}/{len(args.rf)})"), args.test, refined)
            write_netcdf(ds, args.out if single else args.out / f"{rf.stem}.nc")
            summary = ", ".join(f"{m}: dvs90 {float(ds[f'dvs90_{m}']):.3f}, "
                                f"excluded {float(ds[f'excluded_dvs_{m}']):.3f}, "
                                f"false alarms {float(ds[f'false_alarm_rate_{m}']):.2f}"
                                for m in det.METHODS if f"dvs90_{m}" in ds)
            log.info("detectability %s: %s (%.1f s)", rf.stem, summary, ds.attrs["seconds"])
    else:
        files = det.station_files(args.files)
        write_table(det.table_rows(files), det.COLUMNS, args.out)
        if args.figure:
            from xdisc.report.ml_figures import plot_detectability, read_detectability_curves

            plot_detectability(read_detectability_curves(files), args.figure,
                               config["detectability"]["target_dvs"])
            log.info("detectability: figure %s", args.figure)
    log.info("detectability %s: -> %s", args.what, args.out)
    return 0


def _add_ship(sub) -> None:
    p = sub.add_parser("ship", help="make a trained checkpoint the pretrained network that ships with xdisc",
                       description="Write the weights and hyperparameters of a checkpoint of 'xdisc train pretrain' "
                                   "and its provenance (configuration, seed, versions, metrics, SHA-256) into the "
                                   "package (xdisc/cnn/shipped/), where cnn.pretrained: shipped finds them.")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint of 'xdisc train pretrain'")
    p.add_argument("--metrics", required=True, type=Path, help="its metrics JSON")
    p.add_argument("--out-dir", type=Path, help="folder (default: the package's xdisc/cnn/shipped)")
    _add_config_arguments(p)
    p.set_defaults(func=run_ship)


def run_ship(args) -> int:
    from xdisc.cnn.shipped import SHIPPED_DIR, ship

    ship(args.checkpoint, args.metrics, _load_config(args), args.out_dir or SHIPPED_DIR)
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="CNN probability of X and verdict per station",
                       description="Apply a trained checkpoint to every image of each station: probability of X "
                                   "(mean and spread over the station's images) and a verdict present / absent / "
                                   "undetermined from the thresholds in cnn.verdict.")
    p.add_argument("images", nargs="*", type=Path, help="station images from 'xdisc images'")
    p.add_argument("--model", required=True, type=Path, help="checkpoint from 'xdisc train' or 'xdisc adapt'")
    p.add_argument("--calibration", type=Path,
                   help="per-station thresholds from 'xdisc adapt' (default: the global ones of cnn.verdict)")
    p.add_argument("--refined", type=Path,
                   help="folder of 'xdisc refine' (cnn.refine): its stations are scored by their fold's network")
    p.add_argument("--out", required=True, type=Path, help="CSV table (results/verdicts/cnn.csv)")
    _add_config_arguments(p)
    p.set_defaults(func=run_predict)


def run_predict(args) -> int:
    from xdisc.cnn.folds import fold_networks
    from xdisc.cnn.module import load_classifier
    from xdisc.cnn.predict import PREDICTION_COLUMNS, check_networks, prediction_row, read_calibration

    config = _load_config(args)
    module = load_classifier(args.model)
    calibration = read_calibration(args.calibration)
    refined = fold_networks(args.refined)
    check_networks(calibration, refined)
    rows = []
    for path in args.images:
        try:
            rows.append(prediction_row(module, path, config["cnn"]["verdict"], calibration, refined))
        except (OSError, KeyError, ValueError) as exc:
            log.error("predict: %s left out: %s", path, exc)
    _write_verdict_table(rows, PREDICTION_COLUMNS, args.out, "predict")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="CNN and stacking on the same synthetic test stations (accuracy vs SNR, dVs)",
                       description="Turn every sample of the held-out synthetic test set into one station per SNR "
                                   "level (cnn.evaluation: receiver functions per station, SNR levels, samples) "
                                   "and decide X with the CNN "
                                   "and with the stacking method on the same traces: accuracy against SNR, "
                                   "detection rate against dVs, false positives, and both by the structure of the "
                                   "stations (Moho depth, depth and gradient of X, distractor).")
    p.add_argument("--model", required=True, type=Path, help="checkpoint from 'xdisc train'")
    p.add_argument("--test", required=True, type=Path, help="synthetic test set from 'xdisc synth'")
    p.add_argument("--out", required=True, type=Path, help="results JSON")
    p.add_argument("--figures", type=Path,
                   help="folder for accuracy_vs_snr.png, detection_vs_dvs.png and detection_by_structure.png")
    _add_config_arguments(p)
    p.set_defaults(func=run_evaluate)


def run_evaluate(args) -> int:
    from xdisc.cnn.module import load_classifier
    from xdisc.core.artifacts import write_json
    from xdisc.evaluate import evaluate_methods
    from xdisc.report.ml_figures import plot_evaluation

    config = _load_config(args)
    result = evaluate_methods(load_classifier(args.model), str(args.test), config, progress=_progress("evaluate"))
    write_json(result, args.out)
    for k, snr in enumerate(result["snr_levels"]):
        log.info("evaluate: SNR %4.1f: accuracy CNN %.3f, stacking %.3f", snr, result["cnn"]["accuracy"][k],
                 result["stacking"]["accuracy"][k])
    if args.figures:
        plot_evaluation(result, args.figures)
    return 0


# ----------------------------------------------------------------------------- demo

def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the synthetic demo network of the default run, and its score",
                       description="'make': write the demo archive (network SY beside the real CX.PB01: SDS, "
                                   "StationXML, QuakeML, truth.csv) to data.demo.folder. 'score': both methods' "
                                   "verdicts (stations.csv of 'xdisc compare') against truth.csv.")
    p.add_argument("what", choices=["make", "score"])
    _add_config_arguments(p)
    p.add_argument("--stations", type=Path, help="score: station table of 'xdisc compare'")
    p.add_argument("--truth", type=Path, help="score: truth table (default: the demo's truth.csv)")
    p.add_argument("--out", type=Path, help="score: summary (JSON)")
    p.add_argument("--figure", type=Path, help="score: table of the verdicts against the truth (PNG or PDF)")
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from xdisc.data.examples import demo_paths

    config = _load_config(args)
    demo = config["data"]["demo"]
    if args.what == "make":
        from xdisc.data.demo import make_demo

        info = make_demo(demo["folder"], demo, config)
        log.info("demo: %d synthetic stations (%d with X), %d synthetic + %d real events -> %s", info["stations"],
                 info["stations_with_x"], info["synthetic_events"], info["real_events"], demo["folder"])
        return 0
    from xdisc.report.truth_score import plot_score, score_table, write_score

    if args.stations is None or args.out is None:
        raise cfgmod.ConfigError("demo score needs --stations and --out")
    table, summary = score_table(args.stations, args.truth or demo_paths(demo["folder"])["truth"])
    write_score(summary, args.out)
    for method in ("stacking", "cnn"):
        s = summary[method]
        log.info("demo score %s: accuracy %s, false alarms %s, misses %s, undetermined %s", method,
                 _fmt(s["accuracy"]), _fmt(s["false_alarm_rate"]), _fmt(s["miss_rate"]),
                 _fmt(s["undetermined_fraction"]))
    if args.figure:
        plot_score(table, summary, args.figure)
    return 0


# ----------------------------------------------------------------------------- compare

def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="per-station agreement of the CNN and stacking verdicts",
                       description="Join the CNN and stacking verdict tables on station; write one table with "
                                   "both verdicts per station and a JSON summary (agreement and Cohen's kappa "
                                   "over the stations where both methods decided, confusion table, disagreeing "
                                   "stations).")
    p.add_argument("--cnn", required=True, type=Path, help="CNN verdicts (CSV from 'xdisc predict')")
    p.add_argument("--stacking", required=True, type=Path, help="stacking verdicts (CSV from 'xdisc verdicts')")
    p.add_argument("--out", required=True, type=Path, help="station table (CSV)")
    p.add_argument("--summary", required=True, type=Path, help="agreement summary (JSON)")
    p.add_argument("--figure", type=Path, help="map of the stations and confusion table (PNG or PDF)")
    p.add_argument("--detectability", type=Path,
                   help="per-station injection tests ('xdisc detectability table'): 'absent' where X of "
                        "--target-dvs would also have been called absent (excluded dVs above it) becomes "
                        "'not detectable'")
    p.add_argument("--target-dvs", type=float, default=0.03, help="detectability.target_dvs (default 0.03)")
    p.set_defaults(func=run_compare)


def run_compare(args) -> int:
    from xdisc.report.compare import compare_verdicts, write_outputs

    rows, summary = compare_verdicts(args.cnn, args.stacking, args.detectability, args.target_dvs)
    write_outputs(rows, summary, args.out, args.summary)
    log.info("compare: %d station(s), %d compared, agreement %s, kappa %s, %d disagree -> %s, %s",
             summary["n_stations"], summary["n_compared"], _fmt(summary["agreement"]), _fmt(summary["cohen_kappa"]),
             len(summary["disagreeing"]), args.out, args.summary)
    if args.figure:
        from xdisc.report.ml_figures import plot_agreement

        plot_agreement(rows, args.figure)
        log.info("compare: figure %s", args.figure)
    return 0


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


# ----------------------------------------------------------------------------- label

def _add_label(sub) -> None:
    p = sub.add_parser(
        "label", help="label station images by eye in a local web page (and import published tables)",
        description="Serve a labelling page on 127.0.0.1 (loopback only; the URL is printed): one page per station "
                    "image with the image (amplitude and significance vs slowness and depth), the station's depth "
                    "stack and the stacking verdict. Keys p present, a absent, u unsure, s skip save at once "
                    "(each label is appended to the label CSV and fsync-ed) and move to the next unlabelled "
                    "image; a restart resumes at the first image without a label. Label CSV columns: "
                    f"{','.join(label_files.COLUMNS)}; append-only, the latest row per (station, image) wins. "
                    "'xdisc label import TABLE.csv' appends station-wide labels from a published table instead.")
    p.add_argument("--images", type=Path, default=label_session.DEFAULT_IMAGES, metavar="DIR",
                   help=f"folder of the station images of 'xdisc images' (default {label_session.DEFAULT_IMAGES})")
    p.add_argument("--stacks", type=Path, default=label_session.DEFAULT_STACKS, metavar="DIR",
                   help=f"folder of the stacking results of 'xdisc stack' (default {label_session.DEFAULT_STACKS}; "
                        "a missing file shows 'no stacking result')")
    p.add_argument("--labels", type=Path, default=label_files.DEFAULT_LABELS, metavar="CSV",
                   help="label CSV to append to, created with its folder when missing "
                        f"(default {label_files.DEFAULT_LABELS})")
    p.add_argument("--labeller", metavar="NAME", help="your name or initials, written in every row (required)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port; the URL is printed)")
    p.add_argument("--open-browser", dest="open_browser", action="store_true", default=False,
                   help="open the page in the default web browser")
    p.add_argument("--no-browser", dest="open_browser", action="store_false",
                   help="only print the URL (default)")
    p.set_defaults(func=run_label)
    _add_label_import(p.add_subparsers(dest="label_command", metavar="import", required=False,
                                       title="import a published table instead (xdisc label import --help)"))


def _add_label_import(sub) -> None:
    p = sub.add_parser(
        "import", help="append station-wide labels from a published table",
        description="Append one row per station of a published table to the label CSV, with image '*' (every "
                    "image of the station; a per-image label overrides it), labeller = the source name and "
                    "source = the table's file name. TABLE.csv: comma, semicolon or tab separated, '#' lines "
                    "are comments; columns 'station' (NET.STA) and 'verdict' or 'label' (present/yes/y/1/x/true, "
                    "absent/no/n/0/nox/no-x/false, unsure/uncertain/?; case-insensitive); optional latitude, "
                    "longitude, bin, x_depth_km, reference (kept in the note). The whole table is checked first: "
                    "an unknown value, a bad station code or a station with two different verdicts is an error "
                    "naming its line, and nothing is appended.")
    p.add_argument("table", type=Path, metavar="TABLE.csv", help="published table (CSV)")
    # SUPPRESS: 'xdisc label --labels X import T' keeps X (a default here would override it)
    p.add_argument("--labels", type=Path, default=argparse.SUPPRESS, metavar="CSV",
                   help="label CSV to append to, created with its folder when missing "
                        f"(default {label_files.DEFAULT_LABELS})")
    p.add_argument("--source", metavar="NAME",
                   help="name of the source, written as labeller (default: the table's file name without suffix)")
    p.set_defaults(func=run_import)


def run_import(args) -> int:
    try:
        rows = label_files.import_table(args.table, args.labels, args.source)
    except (label_files.LabelError, OSError) as exc:
        log.error("label import: %s", exc)
        return 1
    counts = {v: sum(r["label"] == v for r in rows) for v in ("present", "absent", "unsure")}
    log.info("label import: %d station(s) from %s (%s) -> %s", len(rows), args.table, counts, args.labels)
    return 0


def run_label(args, ready=None) -> int:
    """Serve the labelling page until interrupted. ``ready(server)``, when given, is called once it listens."""
    from xdisc.label_app import serve

    return serve(args.images, args.labels, args.labeller, args.stacks, args.host, args.port, args.open_browser, ready)


# ----------------------------------------------------------------------------- plot

def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="figures made from finished artifacts (training curves, ...)",
                       description="Figures that read finished artifacts and recompute no science. "
                                   "training-curves: loss and accuracy per epoch of each training run named by "
                                   "its metrics JSON (from 'xdisc train'; runs without a curve are left out).")
    p.add_argument("figure", choices=["training-curves", "synthetic-examples"])
    p.add_argument("inputs", nargs="+", type=Path,
                   help="training-curves: metrics JSON files of 'xdisc train'; synthetic-examples: a synthetic set")
    p.add_argument("--out", required=True, type=Path, help="figure (PNG or PDF)")
    p.set_defaults(func=run_plot)


def run_plot(args) -> int:
    from xdisc.report.ml_figures import plot_training_curves, training_runs

    if args.figure == "synthetic-examples":
        from xdisc.core.artifacts import open_netcdf
        from xdisc.report.figures import plot_synthetic_examples

        plot_synthetic_examples(open_netcdf(args.inputs[0]), args.out)
        log.info("plot: %s", args.out)
        return 0
    runs, left_out = training_runs(args.inputs)
    for path, why in left_out:
        log.warning("plot: %s has no training curve (%s)", path, why)
    if not runs:
        from xdisc.report.ml_figures import plot_no_training

        plot_no_training([f"{Path(path).name}: {why}" for path, why in left_out], args.out)
        log.info("plot: %s (no training curve)", args.out)
        return 0
    plot_training_curves(runs, args.out)
    log.info("plot: %s (%s)", args.out, ", ".join(runs))
    return 0


# ----------------------------------------------------------------------------- config

def _add_config(sub) -> None:
    p = sub.add_parser("config", help="validate a configuration or print its reference",
                       description="Validate a YAML configuration (exit 1 with the offending keys), print "
                                   "the effective configuration, or print the reference of every key.")
    p.add_argument("file", nargs="?", type=Path, help="YAML configuration to validate")
    p.add_argument("--reference", action="store_true", help="print the Markdown reference of every key")
    p.set_defaults(func=run_config)


def run_config(args) -> int:
    import yaml

    if args.reference:
        print(config_reference())
        return 0
    config = cfgmod.load(args.file)
    print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0


def config_reference() -> str:
    """Markdown table of every configuration key, its default and description."""
    schema = cfgmod.load_schema()
    rows = ["| key | default | description |", "|---|---|---|"]

    def walk(node, prefix):
        for key, sub in node.get("properties", {}).items():
            sub = cfgmod._resolve(sub, schema)
            name = f"{prefix}{key}"
            if sub.get("type") == "object" and "properties" in sub:
                rows.append(f"| `{name}` | | {' '.join(sub.get('description', '').split())} |")
                walk(sub, name + ".")
            else:
                default = json.dumps(sub.get("default"))
                rows.append(f"| `{name}` | `{default}` | {' '.join(sub.get('description', '').split())} |")

    walk(schema, "")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- main

class _VersionAction(argparse.Action):
    """--version, looked up only when asked for (the package metadata lookup costs start-up time)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from xdisc import __version__

        print(f"xdisc {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xdisc", description="Map the mantle X-discontinuity from P receiver functions.")
    parser.add_argument("--version", action=_VersionAction, help="show the version and exit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_download(sub)
    _add_rf(sub)
    _add_stack(sub)
    _add_station(sub)
    _add_noise(sub)
    _add_verdicts(sub)
    _add_synth(sub)
    _add_images(sub)
    _add_train(sub)
    _add_adapt(sub)
    _add_calibrate(sub)
    _add_refine(sub)
    _add_detectability(sub)
    _add_ship(sub)
    _add_predict(sub)
    _add_evaluate(sub)
    _add_compare(sub)
    _add_demo(sub)
    _add_label(sub)
    _add_plot(sub)
    _add_config(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except (cfgmod.ConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
