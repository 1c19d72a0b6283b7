"""The synthetic set: structure, provenance, determinism, labels, augmentation."""

import numpy as np
import pytest
import xarray as xr
from xdisc import config as cfgmod
from xdisc.core.artifacts import write_netcdf
from xdisc.synth import augment
from xdisc.synth.synthetics import draw_parameters, make_dataset

SMALL = {"synthetics": {"n_samples": 8, "slowness_s_per_km": [0.05, 0.07]}}


@pytest.fixture(scope="module")
def small_config():
    return cfgmod.validate(SMALL)


@pytest.fixture(scope="module")
def small_set(small_config):
    return make_dataset(small_config, n_jobs=1)


def test_structure_units_and_provenance(small_set, tmp_path):
    ds = small_set
    assert ds["rf"].dims == ("sample", "slowness", "time")
    assert ds.sizes == {"sample": 8, "slowness": 2, "time": 1301}
    assert ds["time"].attrs["units"] == "s" and ds["slowness"].attrs["units"] == "s km-1"
    for name, var in ds.data_vars.items():
        assert "long_name" in var.attrs, name
    for key in ("Conventions", "title", "source", "history", "references", "seed", "config_hash",
                "version_numpy", "version_obspy", "version_xdisc"):
        assert key in ds.attrs, key
    path = write_netcdf(ds, tmp_path / "s.nc")
    back = xr.open_dataset(path)
    np.testing.assert_array_equal(back["rf"].values, ds["rf"].values)
    assert list(back["model"].values) == list(ds["model"].values)
    assert not list(tmp_path.glob("*.part"))


def test_labels_and_parameters(small_config):
    cfg = small_config["synthetics"]
    p = draw_parameters(400, cfg, 7)
    assert p["label"].mean() == pytest.approx(cfg["x_fraction"], abs=0.01)
    pos = p["label"] == 1
    assert np.all((p["x_depth_km"][pos] >= 250) & (p["x_depth_km"][pos] <= 350))
    assert np.all(np.isnan(p["x_depth_km"][~pos])) and np.all(p["x_dvs"][~pos] == 0)
    assert np.all((p["x_dvs"][pos] >= 0.01) & (p["x_dvs"][pos] <= 0.06))
    assert np.all(p["x_dvp"][pos] < p["x_dvs"][pos])
    assert set(np.unique(p["model"])) == {"ak135", "iasp91", "prem"}
    assert set(np.unique(p["x_style"][pos])) == {"taper", "constant", "layer"}
    # distractors carry no label information
    has_d = p["distractor"] != "none"
    assert abs(has_d[pos].mean() - has_d[~pos].mean()) < 0.1
    assert np.all((p["moho_km"] >= 20) & (p["moho_km"] <= 70))
    assert np.all((p["snr"] >= 3) & (p["snr"] <= 30))


def test_deterministic_and_independent_of_threads(small_config, small_set):
    again = make_dataset(small_config, n_jobs=2)
    np.testing.assert_array_equal(again["rf"].values, small_set["rf"].values)
    other = make_dataset(cfgmod.validate({"synthetics": dict(SMALL["synthetics"], seed=1)}), n_jobs=1)
    assert not np.allclose(other["rf"].values, small_set["rf"].values)


def test_draw_does_not_depend_on_the_order_of_weight_mappings(small_config):
    """The Snakemake rules pass settings as JSON with sorted keys, the YAML file keeps its own order:
    the same configuration must draw the same models either way."""
    import json

    cfg = small_config["synthetics"]
    shuffled = json.loads(json.dumps(cfg))
    shuffled["x"]["styles"] = dict(reversed(list(cfg["x"]["styles"].items())))
    shuffled["distractors"]["kinds"] = dict(reversed(list(cfg["distractors"]["kinds"].items())))
    assert list(shuffled["x"]["styles"]) != list(cfg["x"]["styles"])
    a, b = draw_parameters(300, cfg, 5), draw_parameters(300, shuffled, 5)
    for key in ("x_style", "distractor", "x_dvs", "distractor_depth_km"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_noise_and_augmentation(small_set):
    ds = small_set
    t = ds["time"].values
    clean, noisy = ds["rf_clean"].values, ds["rf"].values
    assert np.all(np.isfinite(noisy)) and np.all(np.isfinite(clean))
    assert not np.allclose(clean, noisy)
    # every noisy sample has noise before P, where the clean trace is (almost) silent
    pre = (t < -3) & (t > -8)
    added = (noisy - clean)[:, :, pre].std(axis=(1, 2))
    amp = np.abs(clean[:, :, np.abs(t) <= 1]).max(axis=(1, 2))
    untrimmed = ~np.isfinite(ds["trim_end_s"].values)  # trimming zeroes the pre-P window too
    assert untrimmed.sum() >= 3
    assert np.all((added > amp / ds["snr"].values / 20)[untrimmed])


def test_noise_scaled_to_snr_and_band_limited():
    rng = np.random.default_rng(0)
    t = np.arange(-10, 120.01, 0.1)
    noise = augment.coloured_noise(rng, (50, t.size), 0.1, 0.5, exponent=1.0)
    np.testing.assert_allclose(noise.std(axis=-1), 1.0, rtol=1e-6)
    spec = np.abs(np.fft.rfft(noise, axis=-1)) ** 2
    f = np.fft.rfftfreq(t.size, 0.1)
    assert spec[:, f > 2.0].sum() < 1e-3 * spec.sum()  # (leakage from cropping only)
    rf = np.zeros((50, t.size))
    rf[:, np.argmin(np.abs(t))] = 0.4
    noisy = augment.add_noise(rf, noise, 8.0, t)
    np.testing.assert_allclose((noisy - rf).std(axis=-1), 0.4 / 8.0, rtol=1e-6)


def test_noise_free_when_disabled():
    cfg = cfgmod.validate({"synthetics": {"n_samples": 3, "slowness_s_per_km": [0.06],
                                          "noise": {"enabled": False},
                                          "augmentation": {"spurious_probability": 0, "amplitude_jitter": 0,
                                                           "time_shift_s": 0, "trim_probability": 0}}})
    ds = make_dataset(cfg)
    np.testing.assert_allclose(ds["rf"].values, ds["rf_clean"].values, atol=1e-7)
    assert np.all(np.isinf(ds["snr"].values))


def test_temporal_trimming_zeroes_outside_window():
    t = np.arange(-10, 120.01, 0.1)
    x = np.ones((2, t.size))
    y = augment.trim_window(x, t, -4.0, 85.0)
    assert np.all(y[:, t < -4.0] == 0) and np.all(y[:, t > 85.0] == 0)
    assert np.all(y[:, (t > -2.0) & (t < 83.0)] == 1)


def test_real_noise_pool(tmp_path, small_config):
    rng = np.random.default_rng(3)
    pool = rng.standard_normal((20, 3000)) * 5 + 2
    path = tmp_path / "noise.nc"
    xr.Dataset({"noise": (("trace", "time"), pool)}, attrs={"sampling_rate_hz": 10.0}).to_netcdf(path)
    cfg = cfgmod.validate({"synthetics": {"n_samples": 4, "slowness_s_per_km": [0.06],
                                          "noise": {"real_noise_file": str(path), "real_noise_fraction": 1.0}}})
    ds = make_dataset(cfg)
    assert set(ds["noise_kind"].values) == {"real"}
    bad = tmp_path / "noise5.nc"
    xr.Dataset({"noise": (("trace", "time"), pool)}, attrs={"sampling_rate_hz": 5.0}).to_netcdf(bad)
    cfg_bad = cfgmod.validate({"synthetics": {"n_samples": 2, "slowness_s_per_km": [0.06],
                                              "noise": {"real_noise_file": str(bad), "real_noise_fraction": 1.0}}})
    with pytest.raises(ValueError, match=r"5\.0 Hz"):
        make_dataset(cfg_bad)


def test_constant_style_keeps_part_of_the_410(small_config):
    """Style 'constant' shrinks the 410; the generator keeps at least 40 % of its jump."""
    from xdisc.core.earthmodel import load_model
    from xdisc.synth.synthetics import _row, build_model, s_jump_410

    cfg = cfgmod.validate({"synthetics": {"x_fraction": 1.0, "x": {"dvs": [0.05, 0.06],
                                                                   "styles": {"taper": 0, "constant": 1, "layer": 0}}}})
    p = draw_parameters(30, cfg["synthetics"], 3)
    for i in range(30):
        row = _row(p, i)
        ref = load_model(row["model"])
        built = build_model(row, ref)
        assert s_jump_410(built) >= 0.4 * row["d410_strength"] * s_jump_410(ref) - 1e-6, (row["model"], row["x_dvs"])
        assert row["x_dvs"] <= 0.06 and row["x_dvp"] < row["x_dvs"]


def test_scale_jump_changes_the_410_alone():
    """d410_strength scales the 410's jump (all three of vp, vs, rho) and tapers back to the
    reference 40 km below it; nothing above the 410 or below the taper moves."""
    from xdisc.core.earthmodel import load_model
    from xdisc.synth.synthetics import s_jump_410, scale_jump

    ref = load_model("ak135")
    for factor in (0.4, 1.3):
        m = scale_jump(ref, 410.0, factor)
        assert s_jump_410(m) == pytest.approx(factor * s_jump_410(ref), rel=1e-9)
        a, b = ref.at(410.0, "above")[0], ref.at(410.0, "below")[0]
        np.testing.assert_allclose(m.at(410.0, "below")[0] - a, factor * (b - a), rtol=1e-9)
        z = np.array([5.0, 200.0, 409.9, 450.1, 600.0])
        np.testing.assert_allclose(m.at(z), ref.at(z), rtol=1e-12)
        upper = [d[d < 1000.0] for d in (m.discontinuities_km(), ref.discontinuities_km())]
        np.testing.assert_array_equal(*upper)


def test_the_410_does_not_tell_whether_x_is_there():
    """X of style constant weakens the 410; negatives get weak 410s too (d410_strength, and deep
    distractors of style constant, like a jump at 380 km lasting to the 410), so a weak 410 is no
    shortcut to the label: a third or more of the samples with a weak 410 have no X (without these
    parameters, none had)."""
    from xdisc.core.earthmodel import load_model
    from xdisc.synth.synthetics import _row, build_model, s_jump_410

    cfg = cfgmod.validate({"synthetics": {"distractors": {"probability": 0.5}}})["synthetics"]
    p = draw_parameters(300, cfg, 11)
    refs = {name: load_model(name) for name in cfg["models"]}
    deep_constant = (p["distractor"] == "deep") & (p["distractor_style"] == "constant")
    assert deep_constant.sum() >= 10 and set(np.unique(p["distractor_style"])) == {"constant", "none", "taper"}
    jump = np.array([s_jump_410(build_model(_row(p, i), refs[p["model"][i]])) for i in range(300)])
    ref_jump = np.array([s_jump_410(refs[m]) for m in p["model"]])
    weak = jump < 0.6 * ref_jump
    assert weak[p["label"] == 0].mean() > 0.15  # negatives with a weak 410 are common
    assert (p["label"][weak] == 0).mean() > 0.33, (p["label"][weak] == 0).mean()
    # a deep constant distractor takes its jump off the 410 (but leaves 40 % of it at least)
    i = np.flatnonzero(deep_constant)
    assert np.all(jump[i] < p["d410_strength"][i] * ref_jump[i])
    assert np.all(jump[i] >= 0.4 * p["d410_strength"][i] * ref_jump[i] - 1e-6)


def test_a_perturbed_mantle_moves_the_deep_conversions_and_adds_no_discontinuity():
    """synthetics.upper_mantle: the S velocity changes by dvs_top just below the Moho, linearly to
    dvs_410 at the 410 and by dvs_410 below it (P by dvp_ratio times as much, density not); the crust
    and every discontinuity's depth stay, no discontinuity is added, and the 410 and 660
    conversions arrive earlier in a fast mantle and later in a slow one (by more than 0.5 s here)."""
    from xdisc.core.earthmodel import load_model
    from xdisc.core.moveout import delay_table
    from xdisc.synth.synthetics import perturb_mantle

    ref = load_model("ak135")
    fast = perturb_mantle(ref, 0.03, 0.01, 0.5, 410.0)
    upper = [d[d < 1000.0] for d in (fast.discontinuities_km(), ref.discontinuities_km())]
    np.testing.assert_array_equal(*upper)
    np.testing.assert_allclose(fast.at([1000.0, 2000.0]), ref.at([1000.0, 2000.0]))
    np.testing.assert_allclose(fast.at([10.0, 30.0]), ref.at([10.0, 30.0]))  # the crust
    np.testing.assert_allclose(fast.at(35.0, "below")[0] / ref.at(35.0, "below")[0], [1.015, 1.03, 1.0])
    np.testing.assert_allclose(fast.at(222.5)[0] / ref.at(222.5)[0], [1.01, 1.02, 1.0], rtol=1e-3)
    for z in (409.0, 411.0, 600.0):
        np.testing.assert_allclose(fast.at(z)[0] / ref.at(z)[0], [1.005, 1.01, 1.0], rtol=1e-3)
    assert perturb_mantle(ref, 0.0, 0.0, 0.5, 410.0) is ref
    # a model without a Moho cannot take the change: a clear error that names the setting to turn off
    from xdisc.config import ConfigError
    from xdisc.core.earthmodel import EarthModel

    flat = EarthModel("flat", [0.0, 1000.0], [6.0, 6.0], [3.5, 3.5], [2.8, 2.8])
    with pytest.raises(ConfigError, match=r"no Moho.*synthetics\.upper_mantle.*\[0, 0\]"):
        perturb_mantle(flat, 0.02, 0.01, 0.5, 410.0)
    assert perturb_mantle(flat, 0.0, 0.0, 0.5, 410.0) is flat
    slow = perturb_mantle(ref, -0.03, -0.01, 0.5, 410.0)
    delays = {name: delay_table(m, np.array([410.0, 660.0]), np.array([0.06]))[0]
              for name, m in (("ref", ref), ("fast", fast), ("slow", slow))}
    assert np.all(delays["fast"] < delays["ref"] - 0.5) and np.all(delays["slow"] > delays["ref"] + 0.5)


def test_the_mantle_perturbation_is_drawn_for_every_sample_and_leaves_the_other_columns():
    """upper_mantle is drawn after every other column, so the draws before it keep their values;
    it is drawn alike with and without X; [0, 0] leaves the reference mantle."""
    cfg = cfgmod.validate({})["synthetics"]
    p = draw_parameters(400, cfg, 5)
    off = cfgmod.validate({"synthetics": {"upper_mantle": {"dvs_below_moho": [0, 0], "dvs_at_410": [0, 0]}}})
    q = draw_parameters(400, off["synthetics"], 5)
    for key in p:
        if not key.startswith("mantle_"):
            np.testing.assert_array_equal(np.asarray(p[key]).astype(str), np.asarray(q[key]).astype(str))
    assert np.all(q["mantle_dvs_top"] == 0) and np.all(q["mantle_dvs_410"] == 0)
    for lab in (0, 1):
        top = p["mantle_dvs_top"][p["label"] == lab]
        assert top.min() < -0.02 and top.max() > 0.02 and abs(top.mean()) < 0.005


def test_a_layered_crust_is_drawn_last_and_stored_with_the_samples():
    """synthetics.crust.conrad_fraction / conrad_vp_ratio: drawn after every other column (the other
    columns keep their values), within their ranges, stored in the set, and the crust of each sample is
    then two layers with the Conrad where drawn; set one without the other: a configuration error."""
    from xdisc.core.earthmodel import load_model
    from xdisc.synth.synthetics import build_model

    base = cfgmod.validate({})["synthetics"]
    layered = cfgmod.validate({"synthetics": {"crust": {"conrad_fraction": [0.3, 0.7],
                                                        "conrad_vp_ratio": [1.0, 1.2]}}})["synthetics"]
    p, q = draw_parameters(200, base, 7), draw_parameters(200, layered, 7)
    assert "conrad_fraction" not in p
    for key in p:
        np.testing.assert_array_equal(np.asarray(p[key]).astype(str), np.asarray(q[key]).astype(str))
    assert q["conrad_fraction"].min() >= 0.3 and q["conrad_fraction"].max() <= 0.7
    assert q["conrad_vp_ratio"].min() >= 1.0 and q["conrad_vp_ratio"].max() <= 1.2
    i = int(np.argmax(q["sediment_km"] == 0))
    row = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in q.items()}
    m = build_model(row, load_model(row["model"]))
    conrad = row["conrad_fraction"] * row["moho_km"]
    assert min(abs(m.discontinuities_km() - conrad)) < 1e-9
    ratio = m.at(conrad, "below")[0, 0] / m.at(conrad, "above")[0, 0]
    assert ratio == pytest.approx(row["conrad_vp_ratio"])
    ds = make_dataset(cfgmod.validate({"synthetics": {**SMALL["synthetics"], "crust": {
        "conrad_fraction": [0.3, 0.7], "conrad_vp_ratio": [1.0, 1.2]}}}), n_jobs=1)
    assert ds["conrad_fraction"].attrs["units"] == "1" and np.isfinite(ds["conrad_vp_ratio"].values).all()
    with pytest.raises(cfgmod.ConfigError, match=r"conrad_vp_ratio.*set together"):
        cfgmod.validate({"synthetics": {"crust": {"conrad_fraction": [0.3, 0.7]}}})
