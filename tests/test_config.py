"""Configuration schema: documented defaults, clear errors."""

from pathlib import Path

import pytest
import yaml
from xdisc import config as cfgmod

ROOT = Path(__file__).parents[1]


def _leaves(node, schema, path=""):
    for key, sub in node.get("properties", {}).items():
        sub = cfgmod._resolve(sub, schema)
        yield f"{path}{key}", sub
        if sub.get("type") == "object":  # (a nullable object such as data.stations.region has no inner defaults)
            yield from _leaves(sub, schema, f"{path}{key}.")


def test_every_key_has_description_and_default():
    schema = cfgmod.load_schema()
    keys = list(_leaves(schema, schema))
    assert len(keys) > 40
    for name, sub in keys:
        assert sub.get("description"), f"{name} has no description"
        assert "default" in sub, f"{name} has no default"


def test_defaults_and_shipped_config_validate():
    defaults = cfgmod.validate({})
    assert defaults["receiver_function"]["sampling_rate_hz"] == 10
    shipped = cfgmod.load(ROOT / "config" / "config.yaml")
    assert shipped["synthetics"]["models"] == ["ak135", "iasp91", "prem"]


@pytest.mark.parametrize("bad, where", [
    ({"synthetics": {"n_sample": 3}}, "n_sample"),
    ({"synthetics": {"n_samples": -3}}, "synthetics.n_samples"),
    ({"receiver_function": {"deconvolution": "magic"}}, "receiver_function.deconvolution"),
    ({"synthetics": {"x": {"depth_km": [350, 250]}}}, "synthetics.x.depth_km"),
    ({"synthetics": {"x": {"dvs": "big"}}}, "synthetics.x.dvs"),
    ({"synthetics": {"slowness_s_per_km": [0.5]}}, "synthetics.slowness_s_per_km"),
])
def test_bad_values_name_the_key(bad, where):
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.validate(bad)
    assert where in str(err.value)


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="does not exist"):
        cfgmod.load(tmp_path / "nope.yaml")
    f = tmp_path / "list.yaml"
    f.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(cfgmod.ConfigError, match="mapping"):
        cfgmod.load(f)


def test_readme_reference_is_current():
    from xdisc.cli import config_reference

    assert config_reference() in (ROOT / "README.md").read_text(), \
        "README's configuration reference is stale: regenerate it with `xdisc config --reference`"
