"""Configuration schema: documented defaults, clear errors."""

from pathlib import Path

import numpy as np
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
    # the full-size run, layered over it as its header says (snakemake --configfile config/full.yaml)
    full = cfgmod.load(ROOT / "config" / "config.yaml", yaml.safe_load((ROOT / "config" / "full.yaml").read_text()))
    assert full["synthetics"]["n_samples"] == 3000


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


@pytest.mark.parametrize("bad, named", [
    ({"data": {"events": {"min_distance_deg": 90, "max_distance_deg": 30}}},
     ["data.events.min_distance_deg (90) must be smaller than data.events.max_distance_deg (30)"]),
    ({"data": {"events": {"min_distance_deg": 40, "max_distance_deg": 40}}}, ["data.events.min_distance_deg (40)"]),
    ({"data": {"events": {"min_magnitude": 7, "max_magnitude": 6}}}, ["data.events.min_magnitude (7)", "(6)"]),
    ({"cnn": {"verdict": {"present_probability": 0.2, "absent_probability": 0.4}}},
     ["cnn.verdict.present_probability (0.2) must be larger than cnn.verdict.absent_probability (0.4)"]),
    ({"data": {"stations": {"starttime": "yesterday"}}}, ["data.stations.starttime ('yesterday')", "ISO 8601"]),
    ({"data": {"stations": {"endtime": "2011-13-45"}}}, ["data.stations.endtime ('2011-13-45')"]),
    ({"data": {"stations": {"starttime": "2012-01-01", "endtime": "2011-06-01"}}},
     ["data.stations.starttime (2012-01-01) must be earlier than data.stations.endtime (2011-06-01)"]),
    ({"data": {"stations": {"region": {"minlatitude": 10, "maxlatitude": -10, "minlongitude": 0,
                                       "maxlongitude": 5}}}}, ["data.stations.region.minlatitude (10)", "(-10)"]),
    ({"data": {"window_before_p_s": 20}}, ["data.window_before_p_s (20)", "rf_processing.noise_window_s"]),
    ({"data": {"window_after_p_s": 120}}, ["data.window_after_p_s (120)", "rf_processing.source_window_s"]),
    ({"receiver_function": {"time_before_p_s": 40}}, ["receiver_function.time_before_p_s (40)"]),
    ({"stacking": {"d660_window_km": [630, 850]}}, ["stacking.d660_window_km ([630, 850])", "(800)"]),
    ({"synthetics": {"distractors": {"shallow_depth_km": [200, 300]}}},
     ["synthetics.distractors.shallow_depth_km ([200, 300])", "synthetics.x.depth_km ([250, 350])"]),
    ({"synthetics": {"distractors": {"deep_depth_km": [300, 390]}}},
     ["synthetics.distractors.deep_depth_km ([300, 390])"]),
    ({"synthetics": {"x": {"styles": {"taper": 0, "constant": 0, "layer": 0}}}}, ["synthetics.x.styles"]),
    ({"synthetics": {"noise": {"snr": [0, 10]}}}, ["synthetics.noise.snr ([0, 10])"]),
    ({"images": {"noise_coda_s": [85, 150]}},
     ["images.noise_coda_s ([85, 150]) must lie after P and within receiver_function.time_after_p_s (120)"]),
    ({"images": {"noise_coda_s": [-5, 20]}}, ["images.noise_coda_s ([-5, 20])"]),
    ({"images": {"noise_coda_s": [100, 90]}}, ["images.noise_coda_s ([100, 90])", "start before end"]),
])
def test_contradictions_name_keys_and_values(bad, named):
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.validate(bad)
    for text in named:
        assert text in str(err.value)


def test_every_contradiction_is_reported_at_once():
    bad = {"data": {"events": {"min_distance_deg": 90, "max_distance_deg": 30},
                    "stations": {"starttime": "yesterday"}},
           "cnn": {"verdict": {"present_probability": 0.2}}}
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.validate(bad)
    lines = str(err.value).splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["data.events.min_distance_deg", "cnn.verdict.present_probability",
                                                  "data.stations.starttime"]


def test_iso_times_are_accepted():
    cfg = cfgmod.validate({"data": {"stations": {"starttime": "2011-01-01T12:30:00Z", "endtime": "20111231"}}})
    assert cfg["data"]["stations"]["endtime"] == "20111231"


def test_schema_is_draft_2020_12_as_snakemake_expects():
    import jsonschema

    schema = cfgmod.load_schema()
    assert schema["$schema"] == jsonschema.Draft202012Validator.META_SCHEMA["$schema"]
    jsonschema.Draft202012Validator.check_schema(schema)


def _local(tmp_path, **local):
    return cfgmod.validate({"data": {"source": "local", "local": local}})


def test_check_inputs_accepts_present_files_relative_to_base_dir(tmp_path):
    (tmp_path / "sds").mkdir()
    (tmp_path / "mseed").mkdir()
    (tmp_path / "mseed" / "a.mseed").write_bytes(b"")
    (tmp_path / "inv.xml").write_text("")
    (tmp_path / "ev.xml").write_text("")
    cfgmod.check_inputs(cfgmod.validate({}))  # embedded data: nothing to check
    for waveforms, fmt in (("sds", "sds"), ("mseed", "files"), ("mseed/*.mseed", "files"),
                           (str(tmp_path / "mseed"), "files")):
        cfg = _local(tmp_path, waveforms=waveforms, format=fmt, inventory="inv.xml", events=str(tmp_path / "ev.xml"))
        cfgmod.check_inputs(cfg, base_dir=tmp_path)


@pytest.mark.parametrize("local, named", [
    ({"waveforms": "archive", "format": "sds"}, ["data.local.waveforms: SDS root archive", "is not a folder"]),
    ({"waveforms": "mseed/*.sac", "format": "files"}, ["data.local.waveforms: no waveform files match mseed/*.sac"]),
    ({"waveforms": "empty", "format": "files"}, ["data.local.waveforms: no waveform files match empty"]),
    ({"waveforms": None}, ["data.local.waveforms is not set"]),
    ({"inventory": "nope.xml"}, ["data.local.inventory: StationXML file nope.xml"]),
    ({"events": None}, ["data.local.events is not set"]),
    ({"events": "/no/such/events.xml"}, ["data.local.events: QuakeML file /no/such/events.xml does not exist"]),
])
def test_check_inputs_names_key_and_path(tmp_path, local, named):
    (tmp_path / "sds").mkdir()
    (tmp_path / "mseed").mkdir()
    (tmp_path / "mseed" / "a.mseed").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    (tmp_path / "inv.xml").write_text("")
    (tmp_path / "ev.xml").write_text("")
    good = {"waveforms": "sds", "format": "sds", "inventory": "inv.xml", "events": "ev.xml"}
    cfg = _local(tmp_path, **{**good, **local})
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.check_inputs(cfg, base_dir=tmp_path)
    for text in named:
        assert text in str(err.value)
    assert len(str(err.value).splitlines()) == 2  # only the broken key


def test_check_inputs_uses_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "sds").mkdir()
    (tmp_path / "inv.xml").write_text("")
    (tmp_path / "ev.xml").write_text("")
    cfg = _local(tmp_path, waveforms="sds", format="sds", inventory="inv.xml", events="ev.xml")
    monkeypatch.chdir(tmp_path)
    cfgmod.check_inputs(cfg)
    monkeypatch.chdir(tmp_path / "sds")
    with pytest.raises(cfgmod.ConfigError, match=r"data\.local\.inventory"):
        cfgmod.check_inputs(cfg)


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="does not exist"):
        cfgmod.load(tmp_path / "nope.yaml")
    f = tmp_path / "list.yaml"
    f.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(cfgmod.ConfigError, match="mapping"):
        cfgmod.load(f)


def test_readme_reference_is_current():
    from xdisc.cli import config_reference

    assert config_reference() in (ROOT / "config" / "README.md").read_text(), \
        "config/README.md's configuration reference is stale: regenerate it with `xdisc config --reference`"


def test_image_bins_are_the_cells_of_the_synthetic_slowness_grid():
    """Synthetic traces are snapped to the synthetic grid: with one grid slowness per image bin,
    synthetic and real images fill the same bins (the old [0.04, 0.08] left the last bin empty in
    every synthetic image, filled in real ones); a mismatch is reported, naming both keys."""
    from xdisc.cnn.images import ImageSettings

    cfg = cfgmod.validate({})
    assert cfgmod.image_grid_mismatch(cfg) is None
    settings = ImageSettings.from_config(cfg["images"])
    grid = np.array(cfg["synthetics"]["slowness_s_per_km"])
    np.testing.assert_allclose(settings.bin_centres, grid, atol=1e-12)
    old = cfgmod.validate({"images": {"slowness_range_s_per_km": [0.04, 0.08]}})
    note = cfgmod.image_grid_mismatch(old)
    for part in ("images.slowness_range_s_per_km", "synthetics.slowness_s_per_km", "[0.0375, 0.0825]"):
        assert part in note


def test_lqt_rotation_warns_that_the_cnn_learned_radial_receiver_functions(caplog):
    assert cfgmod.rotation_note(cfgmod.validate({})) is None
    cfgmod._WARNED.clear()
    with caplog.at_level("WARNING", logger="xdisc.config"):
        cfgmod.validate({"rf_processing": {"rotation": "LQT"}})
    assert "rf_processing.rotation is LQT" in caplog.text and "prefer ZRT for the CNN" in caplog.text


def test_time_range_is_optional_except_for_fdsn():
    """No default period: a local archive of any year is read as it is; FDSN requests need one."""
    cfg = cfgmod.validate({"data": {"source": "local"}})
    assert cfg["data"]["stations"]["starttime"] is None and cfg["data"]["stations"]["endtime"] is None
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.validate({"data": {"source": "fdsn", "stations": {"endtime": "2020-12-31"}}})
    lines = str(err.value).splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["data.stations.starttime"]
    assert "fdsn" in lines[0]


def test_the_synthetic_test_set_has_its_own_seed_and_size_and_leaves_the_config_alone():
    cfg = cfgmod.load(None)
    syn = cfgmod.held_out_synthetics(cfg["synthetics"])
    assert syn["seed"] == cfg["synthetics"]["seed"] + 1
    assert syn["n_samples"] == cfg["synthetics"]["n_test_samples"] != cfg["synthetics"]["n_samples"]
    assert {k: v for k, v in syn.items() if k not in ("seed", "n_samples")} == \
        {k: v for k, v in cfg["synthetics"].items() if k not in ("seed", "n_samples")}
    syn["x"]["depth_km"][0] = 0.0  # a copy: the run's own section is untouched
    assert cfg["synthetics"]["x"]["depth_km"][0] == 250
