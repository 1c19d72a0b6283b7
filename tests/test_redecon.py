"""No-X calibration draws deconvolved as a station's data (cnn.adapt.calibration_noise: redeconvolved): the
pre-P noise that travels with the receiver functions and the noise pools, noise extended with its spectra
and cross-spectrum, draws that reduce to the synthetic set's own receiver functions without noise, and
`xdisc calibrate --draws` taking the present threshold from them."""

import csv
import json

import numpy as np
import pytest
import xarray as xr
from scipy.signal import coherence, welch
from xdisc import config as cfgmod
from xdisc.cli import main
from xdisc.cnn import calibration, redecon
from xdisc.cnn.module import load_classifier
from xdisc.cnn.shipped import CHECKPOINT as SHIPPED_CHECKPOINT
from xdisc.core.artifacts import write_netcdf
from xdisc.core.deconvolution import normalise_by_p
from xdisc.synth.noise_pool import noise_pool, read_pool
from xdisc.synth.synthetics import make_dataset


def test_pre_p_noise_travels_with_the_receiver_functions_and_the_noise_pool(rf_example_station, tmp_path):
    ds = rf_example_station["dataset"]
    cfg = cfgmod.load(None, {})["rf_processing"]
    t = ds["noise_time"].values
    assert t[0] == pytest.approx(cfg["noise_window_s"][0] + 10) and t[-1] == pytest.approx(cfg["noise_window_s"][1])
    z, r = ds["pre_p_vertical"].values.astype(float), ds["pre_p_radial"].values.astype(float)
    ok = np.all(np.isfinite(z), axis=1)
    assert ok.sum() == np.isfinite(ds["snr_z"].values).sum() >= 3
    # the SNR of the vertical is its signal rms over the rms of the same pre-P noise (-30 to -5 s, the part of
    # the noise window inside the source window), computed apart in xdisc rf
    part = (t >= cfg["source_window_s"][0]) & (t <= cfg["noise_window_s"][1])
    snr = ds["signal_rms_z"].values[ok] / np.sqrt(np.mean(z[ok][:, part] ** 2, axis=1))
    np.testing.assert_allclose(snr, ds["snr_z"].values[ok], rtol=2e-3)
    assert np.all(np.std(r[ok], axis=1) > 0)

    write_netcdf(ds, tmp_path / "rf.nc")
    pool = noise_pool(tmp_path / "rf.nc")
    write_netcdf(pool, tmp_path / "pool.nc")
    back = read_pool(tmp_path / "pool.nc", pre_p=True)
    keep = (ds["qc_pass"].values == 1) & np.all(np.isfinite(ds["rf"].values), axis=1)
    zk, total = z[keep], ds["signal_rms_z"].values[keep]
    noise_rms = np.sqrt(np.mean(zk**2, axis=1))
    signal = np.sqrt(total**2 - noise_rms**2)  # the vertical's signal without its noise
    assert back["pre_p"].shape == (keep.sum(), 2, t.size)
    np.testing.assert_allclose(back["pre_p"][:, 0], zk / signal[:, None], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(back["pre_p"][:, 1], r[keep] / signal[:, None], rtol=1e-4, atol=1e-7)
    assert read_pool(tmp_path / "pool.nc")["pre_p"] is None  # read only for the redeconvolved draws


def test_extended_noise_keeps_the_spectra_and_the_coherence_of_the_pre_p_segments():
    rng = np.random.default_rng(4)
    n_seg, dt = 400, 0.1
    white = rng.normal(size=(60, n_seg + 50))
    # microseism-like vertical (energy near 0.2 Hz) and a radial that is half of it 0.6 s later plus its own noise
    f = np.fft.rfftfreq(white.shape[1], dt)
    shape = np.exp(-0.5 * ((f - 0.2) / 0.08) ** 2) + 0.05
    z_long = np.fft.irfft(np.fft.rfft(white) * shape, white.shape[1])
    r_long = 0.5 * np.roll(z_long, 6, axis=1) + 0.1 * rng.normal(size=z_long.shape) * z_long.std()
    z, r = z_long[:, 50:], r_long[:, 50:]
    ext = [redecon.extend_noise(z[k], r[k], 1801, rng) for k in range(z.shape[0])]
    ez, er = np.array([e[0] for e in ext]), np.array([e[1] for e in ext])
    np.testing.assert_allclose(ez.std(axis=1), z.std(axis=1), rtol=1e-9)
    np.testing.assert_allclose(er.std(axis=1), r.std(axis=1), rtol=1e-9)
    fw, pz = welch(z, fs=1 / dt, nperseg=128)
    _, pe = welch(ez, fs=1 / dt, nperseg=128)
    band = (fw > 0.05) & (fw < 1.0)
    share = pz[:, band].mean(0) / pz[:, band].mean(0).sum()
    share_ext = pe[:, band].mean(0) / pe[:, band].mean(0).sum()
    assert np.max(np.abs(share - share_ext)) < 0.25 * share.max()
    near = (fw > 0.12) & (fw < 0.3)
    coh = coherence(ez, er, fs=1 / dt, nperseg=128)[1][:, near].mean()
    indep = coherence(ez, np.roll(er, 1, axis=0), fs=1 / dt, nperseg=128)[1][:, near].mean()
    assert coh > 0.8 and indep < 0.3, (coh, indep)


@pytest.fixture(scope="module")
def small_test_set(tmp_path_factory):
    """A small synthetic test set of the default settings with impulsive sources (no extended source)."""
    tmp = tmp_path_factory.mktemp("redecon")
    cfg = cfgmod.load(None, {"synthetics": {"n_samples": 12, "source": {"probability": 0.0},
                                            "noise": {"snr": [20, 30]}}})
    write_netcdf(make_dataset(cfg), tmp / "test.nc")
    return cfg, tmp / "test.nc"


def test_redeconvolved_draws_without_noise_are_the_synthetic_receiver_functions(small_test_set):
    """With no noise and impulsive sources a draw is the test set's own noise-free receiver function (the
    synthetic path: the response cut from 10 s before P, no taper): the longer, tapered window of the real data
    path changes the iterative deconvolution only slightly."""
    cfg, path = small_test_set
    with xr.open_dataset(path) as ds:
        clean, slowness, t = ds["rf_clean"].values.astype(float), ds["slowness"].values, ds["time"].values
    samples = np.array([0, 3, 7])
    grid_index = np.array([0, 2, 4, 6, 8])
    resp = redecon.Responses(path, cfg, samples)
    quiet = np.zeros((grid_index.size, 2, 401))
    rfs = redecon.redeconvolved(resp, samples, grid_index, quiet, cfg["rf_processing"], np.random.default_rng(0))
    assert rfs.shape == (3, grid_index.size, t.size)
    want = normalise_by_p(clean[samples][:, grid_index], t)
    window = (t > -5) & (t < 100)
    err = np.abs(rfs - want)[..., window]
    assert np.max(err) < 0.03 and np.median(err) < 2e-3, (np.max(err), np.median(err))
    assert slowness.size == 9


def test_lqt_draws_rotate_as_the_data_path_does(small_test_set):
    """With rotation LQT the draws are rotated to L and Q at each event's incidence as prepare_events rotates
    Z, N and E (ObsPy's rotate_zne_lqt at any back azimuth, Q flipped): the same L and Q; the draws are then
    Q/L receiver functions, not R/Z ones."""
    from obspy.signal.rotate import rotate_zne_lqt
    from xdisc.data.receiver_functions import zr_to_lq

    rng = np.random.default_rng(3)
    z, r, t = rng.normal(size=(3, 4, 300))
    inc = np.array([15.0, 20.0, 25.0, 30.0])
    lq = zr_to_lq(z, r, inc)
    for i, baz in enumerate((0.0, 70.0, 200.0, 310.0)):
        b = np.radians(baz)
        north, east = -r[i] * np.cos(b) + t[i] * np.sin(b), -r[i] * np.sin(b) - t[i] * np.cos(b)
        np.testing.assert_allclose(r[i], -(north * np.cos(b) + east * np.sin(b)), atol=1e-12)  # as ZRT
        ell, q, _ = rotate_zne_lqt(z[i], north, east, baz, inc[i])
        np.testing.assert_allclose(lq[0][i], ell, atol=1e-12)
        np.testing.assert_allclose(lq[1][i], -q, atol=1e-12)
    cfg, path = small_test_set
    samples, grid_index = np.array([0, 3]), np.array([0, 4, 8])
    resp = redecon.Responses(path, cfg, samples)
    quiet = np.zeros((grid_index.size, 2, 401))
    zrt = redecon.redeconvolved(resp, samples, grid_index, quiet, cfg["rf_processing"], np.random.default_rng(0))
    incidence = np.degrees(np.arcsin(resp.slowness[grid_index] * 5.8))
    lqt = redecon.redeconvolved(resp, samples, grid_index, quiet, cfg["rf_processing"], np.random.default_rng(0),
                                incidence)
    assert lqt.shape == zrt.shape and np.all(np.isfinite(lqt))
    assert np.max(np.abs(lqt - zrt)) > 0.05  # Q/L is not R/Z


def test_calibrate_takes_the_present_threshold_from_the_redeconvolved_draws(rf_example_station, small_test_set,
                                                                            tmp_path):
    cfg, test_path = small_test_set
    write_netcdf(rf_example_station["dataset"], tmp_path / "rf.nc")
    write_netcdf(noise_pool(tmp_path / "rf.nc"), tmp_path / "CX.PB01.nc")
    # the station's own present threshold (cnn.adapt.present_probability null), which the draws set
    settings = json.dumps({"cnn": {"adapt": {"calibration_draws": 8, "present_probability": None},
                                   "verdict": {"min_rf": 3}}, "synthetics": cfg["synthetics"]})
    assert main(["calibration-draws", str(tmp_path / "CX.PB01.nc"), "--test", str(test_path), "--out",
                 str(tmp_path / "draws"), "--settings", settings]) == 0
    with xr.open_dataset(tmp_path / "draws" / "CX.PB01.nc") as ds:
        images, samples = ds["image"].values, ds["sample"].values
        assert ds.attrs["seed"] == redecon.station_seed(cfgmod.load(None, {})["cnn"]["seed"], "CX.PB01")
    with xr.open_dataset(test_path) as ds:
        assert np.all(ds["label"].values[samples] == 0)  # no-X samples only
    assert images.shape[0] == 8 and np.all(np.isfinite(images))
    args = ["calibrate", str(tmp_path / "CX.PB01.nc"), "--model", str(SHIPPED_CHECKPOINT), "--test", str(test_path),
            "--metrics", str(tmp_path / "cal.json"), "--settings", settings]
    assert main([*args, "--out", str(tmp_path / "own.csv")]) == 0
    assert main([*args, "--out", str(tmp_path / "re.csv"), "--draws", str(tmp_path / "draws")]) == 0
    own, redone = (next(csv.DictReader((tmp_path / name).read_text().splitlines())) for name in ("own.csv", "re.csv"))
    assert own["no_x_draws"] == "own-noise" and redone["no_x_draws"] == "redeconvolved"
    assert json.loads((tmp_path / "cal.json").read_text())["no_x_draws"] == {"redeconvolved": 1, "own-noise": 0}
    import torch

    module = load_classifier(SHIPPED_CHECKPOINT)
    with torch.no_grad():
        prob = module.probability(torch.from_numpy(images)).numpy().astype(float)
    a = calibration.AdaptSettings.from_config({"calibration_draws": 8, "present_probability": None})
    want = max(0.5, calibration.upper_order_statistic(prob, a.false_alarm_rate))
    assert float(redone["present_threshold"]) == pytest.approx(want, rel=1e-6)
    assert redone["absent_threshold"] == own["absent_threshold"]  # X draws: own-noise stations either way
    # the default: present at 0.9 at every station; the draws give the station's own rate at it
    default = settings.replace('"present_probability": null', '"present_probability": 0.9')
    assert main([*args[:-1], default, "--out", str(tmp_path / "at09.csv"), "--draws", str(tmp_path / "draws")]) == 0
    at09 = next(csv.DictReader((tmp_path / "at09.csv").read_text().splitlines()))
    assert float(at09["present_threshold"]) == 0.9
    assert float(at09["false_alarm_rate"]) == pytest.approx(np.mean(prob >= 0.9))


def test_a_pool_without_pre_p_noise_keeps_its_own_noise_calibration(rf_example_station, small_test_set, tmp_path,
                                                                    caplog):
    """A noise pool written before xdisc kept the pre-P noise: no draws for that station, a warning that names
    it, and calibrate still gives it thresholds (from own-noise stations)."""
    cfg, test_path = small_test_set
    old = rf_example_station["dataset"].drop_vars(["pre_p_vertical", "pre_p_radial", "signal_rms_z", "noise_time"])
    write_netcdf(old, tmp_path / "rf.nc")
    write_netcdf(noise_pool(tmp_path / "rf.nc"), tmp_path / "CX.PB01.nc")
    assert "pre_p_vertical" not in xr.open_dataset(tmp_path / "CX.PB01.nc")
    settings = json.dumps({"cnn": {"adapt": {"calibration_draws": 8}, "verdict": {"min_rf": 3}},
                           "synthetics": cfg["synthetics"]})
    with caplog.at_level("WARNING"):
        assert main(["calibration-draws", str(tmp_path / "CX.PB01.nc"), "--test", str(test_path), "--out",
                     str(tmp_path / "draws"), "--settings", settings]) == 0
    assert "CX.PB01: its noise pool holds no pre-P noise" in caplog.text
    assert list((tmp_path / "draws").glob("*.nc")) == []
    assert main(["calibrate", str(tmp_path / "CX.PB01.nc"), "--model", str(SHIPPED_CHECKPOINT), "--test",
                 str(test_path), "--metrics", str(tmp_path / "cal.json"), "--settings", settings, "--out",
                 str(tmp_path / "thr.csv"), "--draws", str(tmp_path / "draws")]) == 0
    row = next(csv.DictReader((tmp_path / "thr.csv").read_text().splitlines()))
    assert row["station"] == "CX.PB01" and row["no_x_draws"] == "own-noise"
    assert 0.5 <= float(row["present_threshold"]) <= 1.0


def test_a_station_s_own_crust_carries_no_sampled_conrad(small_test_set, tmp_path):
    """With synthetics.crust.conrad_fraction set, a sample's responses carry its drawn two-layer crust; with a
    station's fitted crust in its place (calibration_crust: station) they are those of the fitted crust alone,
    the same as from a set made without the ranges (the Conrad is not the fit's)."""
    cfg, path = small_test_set
    layered_cfg = cfgmod.load(None, {"synthetics": {"n_samples": 12, "source": {"probability": 0.0},
                                                    "noise": {"snr": [20, 30]},
                                                    "crust": {"conrad_fraction": [0.3, 0.4],
                                                              "conrad_vp_ratio": [1.15, 1.2]}}})
    write_netcdf(make_dataset(layered_cfg), tmp_path / "layered.nc")
    samples = np.array([1, 5])
    plain, layered = redecon.Responses(path, cfg, samples), redecon.Responses(tmp_path / "layered.nc", cfg, samples)
    assert not np.allclose(plain.r, layered.r, atol=1e-4 * np.abs(plain.r).max())
    crust = {"moho_km": 38.0, "vpvs": 1.76, "crust_vp_scale": 1.0, "sediment_km": 0.0, "sediment_vs_km_s": 1.5,
             "sediment_vpvs": 2.2}
    own_plain = redecon.Responses(path, cfg, samples, crust)
    own_layered = redecon.Responses(tmp_path / "layered.nc", cfg, samples, crust)
    np.testing.assert_array_equal(own_plain.r, own_layered.r)
    np.testing.assert_array_equal(own_plain.z, own_layered.z)
