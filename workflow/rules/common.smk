# Shared helpers of the workflow: configuration validation, paths, settings for the CLI.
import json

from snakemake.utils import validate

import xdisc.config

# JSON-schema validation (fills defaults), then xdisc's own checks (ordered ranges, nested defaults)
validate(config, schema=str(xdisc.config.schema_path()))
config.update(xdisc.config.validate(config))

RESULTS = config["results_dir"]


def results(*parts):
    """Path under the results folder (every output goes there)."""
    return "/".join([RESULTS, *parts])


def settings_json(*sections):
    """The validated config sections a CLI call needs, as one JSON argument (a change re-runs the rule)."""
    return json.dumps({section: config[section] for section in sections}, sort_keys=True)


RAW = config["data"]["raw_dir"]


def raw(*parts):
    """Path under the raw-data folder (downloads, extracted archive windows)."""
    return "/".join([RAW, *parts])


wildcard_constraints:
    network="[A-Z0-9]{1,2}",
    station="[A-Z0-9]{1,5}",


def selected_stations():
    """NET.STA codes from the station table written by checkpoint select_stations."""
    import csv

    table = checkpoints.select_stations.get().output.csv
    with open(table, newline="") as f:
        return [f"{row['network']}.{row['station']}" for row in csv.DictReader(f)]


def all_receiver_functions(wildcards):
    return [results("rf", f"{code}.nc") for code in selected_stations()]


def all_station_stacks(wildcards):
    return [results("stack", f"{code}.nc") for code in selected_stations()]
