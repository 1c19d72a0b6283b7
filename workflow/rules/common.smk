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
