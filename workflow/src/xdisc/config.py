"""Configuration: the JSON schema (workflow/schemas/config.schema.yaml) is the single source
of keys, defaults and documentation; the CLI and the Snakefile validate against it."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

log = logging.getLogger(__name__)

# keys of cnn.adapt read only where the per-station thresholds are set (xdisc calibrate, xdisc evaluate): the
# Snakefile leaves them out of the settings of the steps before, so that a new rate reruns none of them
CNN_THRESHOLD_KEYS = ("present_probability", "false_alarm_rate", "miss_rate", "conformal_present")
# cnn.adapt keys that only the calibration draws read (left out of the adaptation's settings)
CALIBRATION_DRAW_KEYS = ("calibration_crust",)
# cnn.refine keys that only its fine-tuning reads (left out of the settings of its draws)
REFINE_FIT_KEYS = ("enabled", "folds", "epochs", "learning_rate", "batch_size", "max_stations")


class ConfigError(ValueError):
    """A configuration value is missing, misspelt or out of range."""


def schema_path() -> Path:
    """Path of the configuration schema (installed with the package as ``xdisc.schemas``)."""
    return Path(str(resources.files("xdisc.schemas") / "config.schema.yaml"))


def load_schema() -> dict:
    return yaml.safe_load(schema_path().read_text())


def fill_defaults(config: dict, schema: dict | None = None) -> dict:
    """Return a copy of ``config`` with every missing key set to the schema's default."""
    schema = load_schema() if schema is None else schema
    return _fill(copy.deepcopy(config), schema, schema)


def _resolve(node: dict, root: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        target = root
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        merged = dict(target)
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged
    return node


def _fill(value, node: dict, root: dict):
    node = _resolve(node, root)
    if isinstance(value, dict) and "properties" in node:
        for key, sub in node["properties"].items():
            sub = _resolve(sub, root)
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _fill(value[key], sub, root)
    return value


def validate(config: dict, schema: dict | None = None) -> dict:
    """Fill defaults and validate: the schema (types, allowed values, bounds), then the relations
    between keys (ordered ranges, min < max, dates); raise :class:`ConfigError` naming every
    offending key and value. Pure: files named in the configuration are checked by
    :func:`check_inputs`."""
    schema = load_schema() if schema is None else schema
    filled = fill_defaults(config or {}, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    problems = [f"{'.'.join(str(p) for p in err.absolute_path) or '(top level)'}: {err.message}" for err in errors]
    # each tier only on what the one before accepted (a reversed range would give follow-up errors)
    if not problems:
        problems = _check_ranges(filled, schema, schema, [])
    if not problems:
        problems = _check_relations(filled)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
    for note in (image_grid_mismatch(filled), rotation_note(filled)):
        if note and note not in _WARNED:
            _WARNED.add(note)
            log.warning("%s", note)
    return filled


def rotation_note(cfg: dict) -> str | None:
    """LQT receiver functions are not what the CNN learned from: the synthetic receiver functions (and the
    shipped network) are radial ones (ZRT), and Q keeps a direct P of a fraction of L's, so that traces
    divided by it are larger. The warning, or None. (A warning: the stacking takes either.)"""
    if cfg["rf_processing"]["rotation"] != "LQT":
        return None
    return ("rf_processing.rotation is LQT: the CNN is trained on radial (ZRT) receiver functions, and Q "
            "receiver functions divided by their direct P are larger (median 1.26 times on an independent test "
            "network, docs/data.md); its calibration draws are rotated as the data, so its false alarms stay "
            "bounded, but prefer ZRT for the CNN's verdicts (the stacking takes either)")


_WARNED: set = set()


def image_grid_mismatch(cfg: dict) -> str | None:
    """Synthetic traces are snapped to the synthetic slowness grid: unless each image bin holds one
    grid slowness, synthetic images leave bins empty that real images fill (and the reverse), and the
    CNN meets real images unlike any it was trained on. The reason why not, or None. (A warning, not
    an error: small test configurations use short grids on purpose.)"""
    img, grid = cfg["images"], sorted(cfg["synthetics"]["slowness_s_per_km"])
    lo, hi = img["slowness_range_s_per_km"]
    n = img["n_slowness_bins"]
    width = (hi - lo) / n
    per_bin = [sum(lo + k * width <= g < lo + (k + 1) * width for g in grid) for k in range(n)]
    if all(c == 1 for c in per_bin):
        return None
    step = grid[1] - grid[0] if len(grid) > 1 else width
    return (f"images.slowness_range_s_per_km ({[lo, hi]}) in images.n_slowness_bins ({n}) bins holds "
            f"{per_bin} slownesses of synthetics.slowness_s_per_km ({grid}) per bin, not one each: synthetic "
            f"images leave some bins empty that real images fill; e.g. [{grid[0] - step / 2:g}, "
            f"{grid[-1] + step / 2:g}] with {len(grid)} bins (an evenly spaced grid)")


def _check_ranges(value, node, root, path) -> list[str]:
    """Ranges ([low, high]) must be ordered."""
    node = _resolve(node, root)
    if isinstance(value, list) and node.get("maxItems") == 2 and node.get("minItems") == 2 \
            and all(isinstance(v, (int, float)) for v in value):
        return [f"{'.'.join(path)}: range {value} has low > high"] if value[0] > value[1] else []
    out = []
    if isinstance(value, dict):
        for key, sub in node.get("properties", {}).items():
            if key in value:
                out += _check_ranges(value[key], sub, root, [*path, key])
    return out


def _get(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


def _check_relations(cfg: dict) -> list[str]:
    """Relations between keys that the schema cannot express; one line per problem."""
    out = []

    def need(ok: bool, a: str, relation: str, b: str, why: str = "") -> None:
        """``a relation b`` must hold; the message names both keys with their values."""
        if not ok:
            out.append(f"{a} ({_get(cfg, a)}) must be {relation} {b} ({_get(cfg, b)}){why}")

    ev = cfg["data"]["events"]
    need(ev["min_distance_deg"] < ev["max_distance_deg"], "data.events.min_distance_deg", "smaller than",
         "data.events.max_distance_deg")
    need(ev["min_magnitude"] <= ev["max_magnitude"], "data.events.min_magnitude", "at most",
         "data.events.max_magnitude")
    verdict = cfg["cnn"]["verdict"]
    need(verdict["present_probability"] > verdict["absent_probability"], "cnn.verdict.present_probability",
         "larger than", "cnn.verdict.absent_probability")
    crust = cfg["synthetics"]["crust"]
    if (crust["conrad_fraction"] is None) != (crust["conrad_vp_ratio"] is None):
        out.append(f"synthetics.crust.conrad_fraction ({crust['conrad_fraction']}) and "
                   f"synthetics.crust.conrad_vp_ratio ({crust['conrad_vp_ratio']}) must be set together, or neither")
    adapt = cfg["cnn"]["adapt"]
    if cfg["cnn"]["refine"]["enabled"] and not (adapt["enabled"] and adapt["calibration_noise"] == "redeconvolved"):
        out.append(f"cnn.refine.enabled needs cnn.adapt.enabled (now {adapt['enabled']}) and "
                   f"cnn.adapt.calibration_noise redeconvolved (now {adapt['calibration_noise']!r}): the refined "
                   "networks learn from and are calibrated on the draws deconvolved as each station's data")

    # dates: parsed as the downloader parses them (ISO 8601)
    times = {}
    for end in ("starttime", "endtime"):
        value = cfg["data"]["stations"][end]
        if value is None:
            if cfg["data"]["source"] == "fdsn":
                out.append(f"data.stations.{end} is not set: data.source fdsn needs the period whose stations and "
                           f"events are requested (ISO 8601, e.g. 2015-01-01)")
            continue
        try:
            times[end] = _parse_time(value)
        except ValueError:
            out.append(f"data.stations.{end} ({value!r}) is not a date or time (ISO 8601, e.g. 2011-01-01 or "
                       f"2011-01-01T12:00:00)")
    if len(times) == 2:
        need(times["starttime"] < times["endtime"], "data.stations.starttime", "earlier than",
             "data.stations.endtime")
    region = cfg["data"]["stations"]["region"]
    if region:
        for axis in ("latitude", "longitude"):
            need(region[f"min{axis}"] <= region[f"max{axis}"], f"data.stations.region.min{axis}", "at most",
                 f"data.stations.region.max{axis}")

    # the downloaded window must hold every window that receiver-function processing cuts from it
    proc = cfg["rf_processing"]
    first = min(proc["source_window_s"][0], proc["noise_window_s"][0])
    first_key = "rf_processing.source_window_s" if first == proc["source_window_s"][0] \
        else "rf_processing.noise_window_s"
    if cfg["data"]["window_before_p_s"] < -first:
        out.append(f"data.window_before_p_s ({cfg['data']['window_before_p_s']}) must be at least {-first}: "
                   f"{first_key} ({_get(cfg, first_key)}) starts {-first} s before P")
    if cfg["data"]["window_after_p_s"] < proc["source_window_s"][1]:
        out.append(f"data.window_after_p_s ({cfg['data']['window_after_p_s']}) must be at least "
                   f"{proc['source_window_s'][1]}: rf_processing.source_window_s ({proc['source_window_s']}) "
                   f"ends {proc['source_window_s'][1]} s after P")
    if cfg["receiver_function"]["time_before_p_s"] > -proc["source_window_s"][0]:
        out.append(f"receiver_function.time_before_p_s ({cfg['receiver_function']['time_before_p_s']}) must be at "
                   f"most {-proc['source_window_s'][0]}: rf_processing.source_window_s ({proc['source_window_s']}) "
                   f"starts {-proc['source_window_s'][0]} s before P")

    coda = cfg["images"]["noise_coda_s"]
    if coda is not None and not 0 < coda[0] < coda[1] <= cfg["receiver_function"]["time_after_p_s"]:
        out.append(f"images.noise_coda_s ({coda}) must lie after P and within receiver_function.time_after_p_s "
                   f"({cfg['receiver_function']['time_after_p_s']}), start before end")

    # the stacking windows lie inside the depth stack
    for window in ("x_window_km", "d410_window_km", "d660_window_km"):
        key = f"stacking.{window}"
        if cfg["stacking"][window][1] > cfg["stacking"]["max_depth_km"]:
            out.append(f"{key} ({cfg['stacking'][window]}) must end within the depth stack: at most "
                       f"stacking.max_depth_km ({cfg['stacking']['max_depth_km']})")

    # synthetics: distractors outside the X window (else negatives carry X), weights that can be drawn
    syn = cfg["synthetics"]
    x_km = syn["x"]["depth_km"]
    if syn["distractors"]["shallow_depth_km"][1] > x_km[0]:
        out.append(f"synthetics.distractors.shallow_depth_km ({syn['distractors']['shallow_depth_km']}) must end "
                   f"above the X window: at most {x_km[0]}, the top of synthetics.x.depth_km ({x_km})")
    if syn["distractors"]["deep_depth_km"][0] < x_km[1]:
        out.append(f"synthetics.distractors.deep_depth_km ({syn['distractors']['deep_depth_km']}) must start "
                   f"below the X window: at least {x_km[1]}, the bottom of synthetics.x.depth_km ({x_km})")
    for key in ("synthetics.x.styles", "synthetics.distractors.kinds"):
        if not sum(_get(cfg, key).values()) > 0:
            out.append(f"{key} ({_get(cfg, key)}): at least one weight must be larger than 0")
    if syn["noise"]["snr"][0] <= 0:
        out.append(f"synthetics.noise.snr ({syn['noise']['snr']}) must be larger than 0 (drawn log-uniformly)")
    return out


def _parse_time(value):
    """The time as :class:`obspy.UTCDateTime` (which the downloader uses); ValueError if it is none."""
    from obspy import UTCDateTime

    try:
        return UTCDateTime(value)
    except Exception as exc:  # noqa: BLE001 - UTCDateTime raises TypeError, ValueError, ... for a bad string
        raise ValueError(str(exc)) from None


def check_inputs(config: dict, base_dir: str | Path | None = None) -> None:
    """Files that a validated configuration names must exist: for ``data.source: local`` the waveform
    archive (SDS root, or a folder or glob of files), the StationXML and the QuakeML file. Relative
    paths are taken from ``base_dir`` (default: the working folder, where the jobs run). Raise
    :class:`ConfigError` naming every missing one with its key and path.

    cnn.labels are not checked here: they are inputs of the fine-tuning rule, so Snakemake itself
    stops before any job when one is missing."""
    import glob

    base = Path.cwd() if base_dir is None else Path(base_dir)

    def shown(name: str) -> str:
        """The path as written, and where that is when it is relative."""
        return name if Path(name).is_absolute() else f"{name} ({base / name})"

    data = config["data"]
    problems = []
    if data["source"] == "local":
        local = data["local"]
        waveforms = local["waveforms"]
        if not waveforms:
            problems.append("data.local.waveforms is not set (data.source is 'local')")
        elif local["format"] == "sds":
            if not (base / waveforms).is_dir():
                problems.append(f"data.local.waveforms: SDS root {shown(waveforms)} is not a folder")
        else:
            path = base / waveforms
            pattern = str(path / "*") if path.is_dir() else str(path)
            if not any(Path(f).is_file() for f in glob.glob(pattern)):
                problems.append(f"data.local.waveforms: no waveform files match {shown(waveforms)}"
                                f"{' (a folder: every file in it)' if path.is_dir() else ''}")
        for key, what in (("inventory", "StationXML file"), ("events", "QuakeML file")):
            if not local[key]:
                problems.append(f"data.local.{key} is not set (data.source is 'local')")
            elif not (base / local[key]).is_file():
                problems.append(f"data.local.{key}: {what} {shown(local[key])} does not exist")
    if problems:
        raise ConfigError("invalid configuration, input files missing:\n" + "\n".join(f"  {p}" for p in problems))


def load(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Read a YAML config file (or nothing), apply ``overrides`` (nested dict) and validate."""
    config = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        config = yaml.safe_load(path.read_text()) or {}
        if not isinstance(config, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
    if overrides:
        config = deep_merge(config, overrides)
    return validate(config)


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_hash(section) -> str:
    """Short stable hash of a config section (recorded in artifacts)."""
    return hashlib.sha256(json.dumps(section, sort_keys=True).encode()).hexdigest()[:16]


def held_out_synthetics(synthetics: dict) -> dict:
    """The ``synthetics`` section of the synthetic test set: its own seed (``seed`` + 1) and size
    (``n_test_samples``), everything else as given (a copy). The one rule by which the workflow makes its
    test set, the shipped network was scored (``snakemake ship_pretrained_cnn``) and the benchmarks make
    that canonical set again."""
    syn = copy.deepcopy(synthetics)
    syn.update(seed=syn["seed"] + 1, n_samples=syn["n_test_samples"])
    return syn
