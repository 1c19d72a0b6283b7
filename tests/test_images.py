"""RF images: moveout to depth against an independent ray-theory oracle, bin statistics, synthetic
and real stations through the same builder, the fast noise path."""

import numpy as np
import pytest
from raytheory import delay as ps_delay
from xdisc.cnn.images import CHANNELS, DepthMapper, ImageSettings, build_image, images_dataset, station_images
from xdisc.core.deconvolution import RFSettings
from xdisc.core.earthmodel import load_model
from xdisc.synth import augment
from xdisc.synth.stations import StationDraw, synthetic_station

RF = RFSettings()
TIME = RF.time_axis()
SETTINGS = ImageSettings()


@pytest.fixture(scope="module")
def mapper():
    return DepthMapper(load_model("ak135"), SETTINGS.depths_km)


def _pulse(t0, amp=1.0, width_s=1.0):
    return amp * np.exp(-0.5 * ((TIME - t0) / (width_s / 2.355)) ** 2)


def test_a_ps_arrival_lands_at_its_depth_in_every_bin(mapper):
    """Traces with P (amplitude 2) and a Ps pulse at the oracle's delay from 300 km, at nine slownesses."""
    p = SETTINGS.bin_centres
    rf = np.stack([_pulse(0.0, 2.0) + _pulse(ps_delay("ak135", 300.0, s), 0.1) for s in p])
    img, counts = build_image(rf, TIME, p, mapper, SETTINGS)
    assert img.shape == SETTINGS.shape == (2, 9, 321)
    assert np.all(counts == 1)
    amp = img[0]
    assert np.allclose(amp[:, 0], 1.0, atol=1e-6)  # normalised by direct P
    deep = SETTINGS.depths_km > 100
    peak = SETTINGS.depths_km[deep][np.argmax(amp[:, deep], axis=1)]
    assert np.all(np.abs(peak - 300.0) <= 2.5), peak
    assert np.allclose(amp[:, deep].max(axis=1), 0.05, rtol=0.05)
    # noise-free traces: the noise floor (2 % of direct P), down to where the 120 s window ends
    # (about 750 km at 0.08 s/km: beyond it the bin is empty, at max_noise)
    within = SETTINGS.depths_km <= 700.0
    assert np.allclose(img[1][:, within], 0.02)
    assert np.allclose(img[1][-1, SETTINGS.depths_km >= 760.0], SETTINGS.max_noise)


def test_bin_mean_and_noise_match_a_direct_computation(mapper):
    rng = np.random.default_rng(1)
    n = 40
    p = rng.uniform(0.042, 0.079, n)
    sigma = rng.uniform(0.03, 0.3, n)
    rf = np.stack([_pulse(0.0) for _ in p]) + sigma[:, None] * rng.standard_normal((n, TIME.size))
    w = rng.uniform(0.5, 2.0, n)
    img, counts = build_image(rf, TIME, p, mapper, SETTINGS, normalised=True, weights=w)
    depth = mapper(rf, TIME, p)
    b = np.digitize(p, SETTINGS.bin_edges) - 1
    for k in range(SETTINGS.n_slowness_bins):
        sel = b == k
        assert counts[k] == sel.sum()
        if sel.sum() < 2:
            continue
        x, ww = depth[sel][:, 50], w[sel]  # one depth (125 km), all finite
        mean = np.sum(ww * x) / np.sum(ww)
        measured = (TIME < -1.5) | ((TIME >= 85.0) & (TIME <= 120.0))  # before P and the default window after it
        s = np.maximum(np.std(rf[sel][:, measured], axis=1), 0.02)  # each trace's noise
        assert img[0, k, 50] == pytest.approx(mean, rel=1e-5)
        assert img[1, k, 50] == pytest.approx(np.sqrt(np.sum(ww**2 * s**2)) / np.sum(ww), rel=1e-5)
        assert np.mean(s / sigma[sel]) == pytest.approx(1.0, abs=0.15)  # and it measures the added noise


def test_a_noisy_coda_lowers_a_trace_s_weight_only_where_the_noise_is_measured_there(mapper):
    """Two traces in one bin, the same quiet pre-P noise; the second is four times as noisy 85-120 s after P (a
    burst the pre-P part does not see). Measured before P only (``noise_coda_s: null``) they weigh the same; with
    the default window after P the noisy one weighs about 1/16 as much, and the noise channel says the bin is
    noisier."""
    rng = np.random.default_rng(3)
    p = np.full(2, SETTINGS.bin_centres[4])
    rf = np.stack([_pulse(0.0) for _ in p]) + 0.05 * rng.standard_normal((2, TIME.size))
    coda = (TIME >= 85.0) & (TIME <= 120.0)
    rf[1, coda] *= 4.0
    rf[0, (TIME > 5.0) & (TIME < 40.0)] += 0.3  # the traces differ after P, so the weights show in their mean
    depth = mapper(rf, TIME, p)
    at = 60  # 150 km
    assert SETTINGS.noise_coda_s == (85.0, 120.0)
    pre_p, _ = build_image(rf, TIME, p, mapper, ImageSettings(noise_coda_s=None), normalised=True)
    img, _ = build_image(rf, TIME, p, mapper, SETTINGS, normalised=True)
    for got, measured, ratio in ((pre_p, TIME < -1.5, (0.5, 2.0)), (img, (TIME < -1.5) | coda, (0.0, 0.15))):
        w = 1.0 / np.std(rf[:, measured], axis=1) ** 2
        assert ratio[0] < w[1] / w[0] < ratio[1]
        assert got[0, 4, at] == pytest.approx(np.sum(w * depth[:, at]) / w.sum(), rel=1e-5)
    assert img[1, 4, at] > 1.3 * pre_p[1, 4, at]  # about 1/sqrt(1/0.05^2 + 1/0.18^2) against 0.05/sqrt(2)


def test_traces_outside_the_slowness_range_or_with_nans_are_left_out(mapper):
    rf = np.stack([_pulse(0.0)] * 3)
    rf[1, 5] = np.nan
    _img, counts = build_image(rf, TIME, np.array([0.06, 0.06, 0.09]), mapper, SETTINGS)
    assert counts.sum() == 1
    empty, _ = build_image(rf[1:2], TIME, np.array([0.06]), mapper, SETTINGS)
    assert not empty.any()


def test_synthetic_and_real_stations_give_the_same_layout(mapper, rf_example_station):
    """A real station (embedded CX.PB01 receiver functions) and a synthetic station: same shape,
    same normalisation (direct P = 1 at 0 km in every occupied bin), same NetCDF layout."""
    real = rf_example_station
    imgs = station_images(real["rf"], real["time"], real["slowness"], mapper, SETTINGS, real["baz"], seed=3)
    rng = np.random.default_rng(0)
    clean = np.stack([_pulse(0.0) + _pulse(ps_delay("ak135", 300.0, s), 0.05) for s in np.arange(0.04, 0.081, 0.005)])
    rf, p = synthetic_station(clean, np.arange(0.04, 0.081, 0.005), TIME, RF.dt, RF.gaussian_width_hz,
                              StationDraw(), rng, n_rf=50)
    syn, counts = build_image(rf, TIME, p, mapper, SETTINGS)
    assert imgs.images.shape[1:] == syn.shape == SETTINGS.shape
    for img, cnt in [(imgs.images[0], imgs.counts[0]), (syn, counts)]:
        occupied = cnt > 0
        assert np.allclose(img[0, occupied, 0], 1.0, atol=0.15)  # averaged normalised P (noise shifts it a little)
        assert np.all(img[0, ~occupied] == 0) and np.all(img[1, ~occupied] == SETTINGS.max_noise)
        assert np.all(img[1, occupied][:, SETTINGS.depths_km < 600] < SETTINGS.max_noise)  # above P's turning
    assert imgs.kind[0] == "all" and imgs.n_rf[0] == len(real["rf"])
    assert len(imgs.n_rf) == SETTINGS.images_per_station  # too few RFs for back-azimuth sectors
    again = station_images(real["rf"], real["time"], real["slowness"], mapper, SETTINGS, real["baz"], seed=3)
    assert np.array_equal(again.images, imgs.images)  # seeded subsets
    ds = images_dataset(imgs, {"network": "CX", "station": "PB01", "latitude": -21.0, "longitude": -69.5}, SETTINGS)
    assert list(ds["channel"].values) == list(CHANNELS)
    assert ds["rf_image"].dims == ("image", "channel", "slowness_bin", "depth")
    assert ds["depth"].attrs["units"] == "km" and "xdisc" in ds.attrs["history"] + ds.attrs["source"]


def test_back_azimuth_sectors_get_their_own_images(mapper):
    rng = np.random.default_rng(2)
    n = 100
    rf = np.stack([_pulse(0.0)] * n) + 0.02 * rng.standard_normal((n, TIME.size))
    baz = np.concatenate([rng.uniform(0, 90, 60), rng.uniform(180, 270, 40)])
    s = ImageSettings(min_rf_per_sector=40, images_per_station=2)
    imgs = station_images(rf, TIME, rng.uniform(0.045, 0.075, n), mapper, s, baz)
    assert imgs.kind == ["all", "subset", "baz 0-90", "baz 180-270"]
    assert list(imgs.n_rf) == [100, 70, 60, 40]


def test_too_few_receiver_functions_give_no_image(mapper):
    imgs = station_images(np.stack([_pulse(0.0)] * 2), TIME, np.array([0.05, 0.06]), mapper, SETTINGS)
    assert imgs.images.shape == (0, *SETTINGS.shape) and imgs.kind == []


def test_fast_noise_path_matches_the_reference_noise():
    """augment.noisy_copies: noise std = P amplitude / SNR and the spectrum of coloured_noise."""
    rng = np.random.default_rng(4)
    clean = np.stack([_pulse(0.0, 0.8)])
    idx = np.zeros(3000, int)
    out = augment.noisy_copies(rng, clean, idx, np.full(3000, 4.0), TIME, RF.dt, RF.gaussian_width_hz, 1.0)
    noise = out - clean[0]
    assert noise.std(axis=1).mean() == pytest.approx(0.8 / 4.0, rel=0.05)
    ref = augment.coloured_noise(rng, (3000, TIME.size), RF.dt, RF.gaussian_width_hz, 1.0) * 0.2
    f_ours = np.abs(np.fft.rfft(noise, axis=1)).mean(0)
    f_ref = np.abs(np.fft.rfft(ref, axis=1)).mean(0)
    band = slice(20, 200)  # 0.08-0.77 Hz, where the Gaussian passes
    assert np.allclose(f_ours[band] / f_ref[band], 1.0, atol=0.1)
    quiet = augment.noisy_copies(rng, clean, idx[:2], np.full(2, 1e12), TIME, RF.dt, RF.gaussian_width_hz)
    assert np.allclose(quiet, clean[0], atol=1e-4)  # the signal passes unchanged


def test_microseism_peak_moves_noise_power_into_its_band_in_both_noise_paths():
    rng = np.random.default_rng(6)
    clean = np.stack([_pulse(0.0, 1.0)])
    f = np.fft.rfftfreq(TIME.size, RF.dt)
    band = (f >= 0.15) & (f < 0.25)

    def share(x):
        power = (np.abs(np.fft.rfft(x * np.hanning(TIME.size), axis=1)) ** 2).mean(0)
        return power[band].sum() / power.sum()

    shares = []
    for amplitude in (0.0, 4.0):
        ref = augment.coloured_noise(rng, (2000, TIME.size), RF.dt, RF.gaussian_width_hz, 0.0, (amplitude, 0.2))
        fast = augment.noisy_copies(rng, clean, np.zeros(2000, int), np.full(2000, 5.0), TIME, RF.dt,
                                    RF.gaussian_width_hz, 0.0, 0.0, (amplitude, 0.2)) - clean[0]
        assert np.allclose(ref.std(axis=1), 1.0)
        assert fast.std(axis=1).mean() == pytest.approx(1.0 / 5.0, rel=0.05)  # still P amplitude / SNR
        assert share(fast) == pytest.approx(share(ref), abs=0.03)
        shares.append(share(ref))
    # white noise in the 0.5 Hz Gaussian band: ~21 % of the power in 0.15-0.25 Hz (ratio of Gaussian
    # integrals); a peak 4 times the background at 0.2 Hz (relative width 30 %): most of it
    gauss = np.exp(-((f / 0.5) ** 2))
    assert shares[0] == pytest.approx(gauss[band].sum() / gauss[1:].sum(), abs=0.03)
    assert shares[1] > 0.5


def test_real_noise_windows_stay_inside_nan_padded_traces():
    rng = np.random.default_rng(5)
    n = 200
    pool = np.full((3, 600), np.nan)
    pool[0, :600] = np.arange(600.0)          # long: windows start anywhere in 0..400
    pool[1, :150] = 1.0                       # shorter than a window: never drawn
    pool[2, :250] = -np.arange(250.0)         # windows start in 0..50
    out = augment.real_noise(rng, pool, (500, n))
    assert np.all(np.isfinite(out)) and np.allclose(out.std(axis=1), 1.0)
    slopes = np.sign(out[:, 1] - out[:, 0])   # ramps: +1 or -1 per window (polarity and row)
    assert set(np.unique(slopes)) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="at least 700 samples"):
        augment.real_noise(rng, pool, (2, 700))
