"""Configuration: the JSON schema (workflow/schemas/config.schema.yaml) is the single source
of keys, defaults and documentation; the CLI and the Snakefile validate against it."""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path

import jsonschema
import yaml


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
    """Fill defaults and validate; raise :class:`ConfigError` naming the offending key."""
    schema = load_schema() if schema is None else schema
    filled = fill_defaults(config or {}, schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"  {where}: {err.message}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    _check_ranges(filled, schema, schema, [])
    return filled


def _check_ranges(value, node, root, path):
    """Ranges ([low, high]) must be ordered."""
    node = _resolve(node, root)
    if node.get("$ref") is None and isinstance(value, list) and node.get("maxItems") == 2 \
            and node.get("minItems") == 2 and all(isinstance(v, (int, float)) for v in value):
        if value[0] > value[1]:
            raise ConfigError(f"invalid configuration:\n  {'.'.join(path)}: range {value} has low > high")
    if isinstance(value, dict):
        for key, sub in node.get("properties", {}).items():
            if key in value:
                _check_ranges(value[key], sub, root, path + [key])


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
