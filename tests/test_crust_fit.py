"""A station's own crust for its calibration draws (cnn.adapt.calibration_crust: station): the fit finds the
sediment and Moho of noise-free receiver functions made by a code other than its own search (the propagator
at the events' own slownesses, not the grid's), and the draws of `xdisc calibration-draws` carry the crust."""

import json

import numpy as np
import pytest
import xarray as xr
from xdisc import config as cfgmod
from xdisc.cli import main
from xdisc.cnn import crust_fit
from xdisc.cnn.calibration import crust_misfit, in_window
from xdisc.cnn.synthetic_set import HARD_SEDIMENT_KM
from xdisc.core.artifacts import write_netcdf
from xdisc.core.deconvolution import RFSettings, normalise_by_p
from xdisc.core.earthmodel import load_model, replace_crust
from xdisc.synth import synthetics as syn
from xdisc.synth.noise_pool import noise_pool

CFG = cfgmod.load(None, {})
GRID = np.asarray(CFG["synthetics"]["slowness_s_per_km"], float)
WINDOW = (-1.0, 20.0)


def _station(crust: dict, slowness: np.ndarray) -> np.ndarray:
    """Noise-free receiver functions / direct P (event, time in WINDOW) of AK135 with ``crust``, one event per
    slowness."""
    rf = RFSettings(**CFG["receiver_function"])
    model = replace_crust(load_model("ak135"), *(crust[k] for k in crust_fit.CRUST_KEYS))
    layering = syn.Layering(**CFG["layering"])
    x = syn.receiver_functions([layering.apply(model)], slowness, rf, 409.6)[0]
    return normalise_by_p(x, rf.time_axis())[:, in_window(rf.time_axis(), WINDOW)]


@pytest.fixture(scope="module")
def random_crusts():
    """The events' slownesses and 200 random crusts of the synthetic sets' prior with their receiver functions
    (made once for the crusts below)."""
    rng = np.random.default_rng(3)
    slowness = rng.uniform(0.042, 0.078, 24)  # the events' own, not the grid's
    lo, hi = crust_fit.crust_bounds(CFG["synthetics"]["crust"])
    cr = CFG["synthetics"]["crust"]
    pool = rng.uniform(lo, hi, (200, 6))
    pool[:, 3] = np.where(rng.random(200) < cr["sediment_probability"], rng.uniform(*cr["sediment_km"], 200), 0.0)
    args = (load_model("ak135"), GRID, RFSettings(**CFG["receiver_function"]), syn.Layering(**CFG["layering"]), WINDOW)
    return slowness, pool, crust_fit.crust_receiver_functions(pool, *args, 409.6), args, (lo, hi)


@pytest.mark.parametrize("crust", [
    {"moho_km": 31.0, "vpvs": 1.72, "crust_vp_scale": 1.0, "sediment_km": 3.2, "sediment_vs_km_s": 1.05,
     "sediment_vpvs": 2.4},
    {"moho_km": 44.0, "vpvs": 1.80, "crust_vp_scale": 1.0, "sediment_km": 0.0, "sediment_vs_km_s": 1.5,
     "sediment_vpvs": 2.2},
])
def test_the_fit_finds_a_crust_from_the_nearest_of_random_crusts(crust, random_crusts):
    """As the draws start it: from the 8 nearest of random crusts of the synthetic sets' prior (200 here, 600
    samples in a full-size test set), none of them the answer."""
    slowness, pool, pool_rfs, args, (lo, hi) = random_crusts
    grid_index = np.argmin(np.abs(slowness[:, None] - GRID[None, :]), axis=1)
    radial = _station(crust, slowness)
    near = np.argsort(crust_misfit(radial, grid_index, pool_rfs))
    starts = pool[near[:8]]
    fit = crust_fit.fit_crust(radial, grid_index, starts, *args, (lo, hi), np.random.default_rng(0), 409.6)
    p = fit.params
    assert fit.misfit <= fit.start_misfit
    assert p["sediment_km"] == pytest.approx(crust["sediment_km"], abs=0.4), p
    if crust["sediment_km"]:
        assert p["sediment_vs_km_s"] == pytest.approx(crust["sediment_vs_km_s"], abs=0.15), p
    else:
        assert p["moho_km"] == pytest.approx(crust["moho_km"], abs=3.0), p
        assert p["vpvs"] == pytest.approx(crust["vpvs"], abs=0.05), p


def test_draws_in_the_station_crust_carry_it(rf_example_station, tmp_path):
    """`xdisc calibration-draws` with calibration_crust 'station' fits CX.PB01's crust, writes it into the
    draws' attributes and makes the same number of draws as with each sample's own crust."""
    cfg = cfgmod.load(None, {"synthetics": {"n_samples": 12, "noise": {"snr": [20, 30]}}})
    write_netcdf(syn.make_dataset(cfg), tmp_path / "test.nc")
    write_netcdf(rf_example_station["dataset"], tmp_path / "rf.nc")
    write_netcdf(noise_pool(tmp_path / "rf.nc"), tmp_path / "CX.PB01.nc")
    out, alike = {}, {}
    for crust in ("sample", "station"):
        settings = json.dumps({"cnn": {"adapt": {"calibration_draws": 6, "calibration_crust": crust},
                                       "verdict": {"min_rf": 3}}, "synthetics": cfg["synthetics"]})
        assert main(["calibration-draws", str(tmp_path / "CX.PB01.nc"), "--test", str(tmp_path / "test.nc"),
                     "--out", str(tmp_path / crust), "--settings", settings]) == 0
        with xr.open_dataset(tmp_path / crust / "CX.PB01.nc") as ds:
            out[crust] = (ds["image"].values, dict(ds.attrs))
            alike[crust] = (ds["look_alike"].values.astype(bool), ds["sample"].values)
    (own_images, own), (sample_images, sample) = out["station"], out["sample"]
    # look-alikes of X: the sample's own sediment, or the fitted crust's (with the sample's deep distractor)
    with xr.open_dataset(tmp_path / "test.nc") as ds:
        deep = np.isin(ds["distractor"].values.astype(str), ("deep", "lvz"))
        thick = ds["sediment_km"].values >= HARD_SEDIMENT_KM
    flags, picked = alike["sample"]
    np.testing.assert_array_equal(flags, (deep | thick)[picked])
    flags, picked = alike["station"]
    np.testing.assert_array_equal(flags, deep[picked] | (own["crust_sediment_km"] >= HARD_SEDIMENT_KM))
    assert own_images.shape == sample_images.shape and np.all(np.isfinite(own_images))
    assert sample["crust"] == "each sample's own" and "crust_moho_km" not in sample
    assert own["crust"] == "the station's own (fitted)"
    lo, hi = crust_fit.crust_bounds(cfg["synthetics"]["crust"])
    for k, a, b in zip(crust_fit.CRUST_KEYS, lo, hi, strict=True):
        assert a - 1e-6 <= own[f"crust_{k}"] <= b + 1e-6
    assert own["crust_misfit"] <= own["crust_start_misfit"]
    assert not np.allclose(own_images, sample_images)


def test_a_pool_without_its_receiver_functions_keeps_the_samples_crusts(rf_example_station, tmp_path, caplog):
    """A noise pool written before xdisc kept the radial receiver functions has nothing to fit a crust to: a
    warning names the station, and its draws are made with the samples' own crusts, as by default."""
    cfg = cfgmod.load(None, {"synthetics": {"n_samples": 12, "noise": {"snr": [20, 30]}}})
    write_netcdf(syn.make_dataset(cfg), tmp_path / "test.nc")
    write_netcdf(rf_example_station["dataset"], tmp_path / "rf.nc")
    write_netcdf(noise_pool(tmp_path / "rf.nc").drop_vars("radial"), tmp_path / "CX.PB01.nc")
    out = {}
    for crust in ("sample", "station"):
        settings = json.dumps({"cnn": {"adapt": {"calibration_draws": 6, "calibration_crust": crust},
                                       "verdict": {"min_rf": 3}}, "synthetics": cfg["synthetics"]})
        with caplog.at_level("WARNING"):
            assert main(["calibration-draws", str(tmp_path / "CX.PB01.nc"), "--test", str(tmp_path / "test.nc"),
                         "--out", str(tmp_path / crust), "--settings", settings]) == 0
        with xr.open_dataset(tmp_path / crust / "CX.PB01.nc") as ds:
            out[crust] = (ds["image"].values, ds.attrs["crust"])
    assert "CX.PB01: its noise pool keeps no receiver functions to fit its crust to" in caplog.text
    assert out["station"][1] == out["sample"][1] == "each sample's own"
    assert np.array_equal(out["station"][0], out["sample"][0])


def test_a_crust_that_cannot_be_built_keeps_the_samples_crusts(rf_example_station, tmp_path, caplog):
    """Crust ranges the earth model cannot take (a Moho of 1-3 km in synthetics.crust): the fit fails, a warning
    names the station and the reason, and its draws are made with the samples' own crusts."""
    cfg = cfgmod.load(None, {"synthetics": {"n_samples": 12, "noise": {"snr": [20, 30]}}})
    write_netcdf(syn.make_dataset(cfg), tmp_path / "test.nc")
    write_netcdf(rf_example_station["dataset"], tmp_path / "rf.nc")
    write_netcdf(noise_pool(tmp_path / "rf.nc"), tmp_path / "CX.PB01.nc")
    synthetics = {**cfg["synthetics"], "crust": {**cfg["synthetics"]["crust"], "moho_km": [1.0, 3.0]}}
    settings = json.dumps({"cnn": {"adapt": {"calibration_draws": 6, "calibration_crust": "station"},
                                   "verdict": {"min_rf": 3}}, "synthetics": synthetics})
    with caplog.at_level("WARNING"):
        assert main(["calibration-draws", str(tmp_path / "CX.PB01.nc"), "--test", str(tmp_path / "test.nc"),
                     "--out", str(tmp_path / "draws"), "--settings", settings]) == 0
    assert "CX.PB01: its crust could not be fitted (moho_km must be within 5-150 km" in caplog.text
    with xr.open_dataset(tmp_path / "draws" / "CX.PB01.nc") as ds:
        assert ds.attrs["crust"] == "each sample's own" and ds["image"].shape[0] == 6
        assert np.all(np.isfinite(ds["image"].values))
