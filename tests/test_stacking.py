"""The conventional verdict on synthetic stations with known truth (synthetics engine as truth)."""

import numpy as np
import pytest
from xdisc import config as cfgmod
from xdisc.core.deconvolution import RFSettings
from xdisc.core.earthmodel import Discontinuity, insert_discontinuity, load_model
from xdisc.stack import stacking
from xdisc.stack.stacking import bootstrap_means, stack_station, vespagram
from xdisc.synth.stations import clean_grid, make_station
from xdisc.synth.synthetics import Layering, _row, build_model, draw_parameters


@pytest.fixture(scope="module")
def setup():
    cfg = cfgmod.validate({})
    return cfg, RFSettings(**cfg["receiver_function"]), Layering(**cfg["layering"])


def _plain(stacking_cfg: dict) -> dict:
    """``stacking_cfg`` with nothing subtracted before the depth stack, whatever the default: the tests of the
    verdict's other checks (floors, moveout, the 410 rule) judge the plain stack."""
    return {**stacking_cfg, "multiples": {**stacking_cfg["multiples"], "suppress": False}}


def _stack(station, cfg, rf, model):
    return stack_station(station.rf, rf.time_axis(), station.slowness, station.distance, model, cfg["stacking"])


@pytest.mark.parametrize("model_name", ["ak135", "iasp91", "prem"])
def test_planted_x_recovered(setup, model_name):
    cfg, rf, lay = setup
    ref = load_model(model_name)
    x_depth = 305.0
    model = insert_discontinuity(ref, Discontinuity(x_depth, 0.04, 0.02, 0.012))
    grid = clean_grid([model], rf, lay)[0]
    rng = np.random.default_rng(11)
    station = make_station(grid, 50, rng, rf, snr_range=(8.0, 30.0), model_name=model_name)
    ds = _stack(station, cfg, rf, ref)
    truth = _stack(type(station)(station.clean, station.slowness, station.distance, station.clean), cfg, rf, ref)
    a = ds.attrs
    assert a["verdict"] == "present", a["reason"]
    assert abs(a["x_depth_km"] - x_depth) <= 5.0
    assert abs(a["x_amp"] - truth.attrs["x_amp"]) <= 0.3 * truth.attrs["x_amp"]
    assert a["x_relative_slowness"] <= 0
    d410 = ref.discontinuities_km()[np.argmin(np.abs(ref.discontinuities_km() - 410))]
    d660 = ref.discontinuities_km()[np.argmin(np.abs(ref.discontinuities_km() - 660))]
    assert abs(a["d410_km"] - d410) <= 5.0 and abs(a["d660_km"] - d660) <= 5.0
    assert 0 <= a["x_depth_err_km"] < 10 and 0 < a["x_amp_err"] < a["x_amp"]
    lo, hi = ds["depth_stack_lower"].values, ds["depth_stack_upper"].values
    assert np.all(lo[np.isfinite(lo)] <= hi[np.isfinite(hi)])


def test_false_positive_rate_without_x(setup):
    """>= 100 noisy stations without X (random crusts, 410/660 topography, distractors), default noise."""
    cfg, rf, lay = setup
    syn = cfgmod.validate({"synthetics": {"x_fraction": 0.0}})["synthetics"]
    params = draw_parameters(100, syn, seed=5)
    refs = {m: load_model(m) for m in ("ak135", "iasp91", "prem")}
    models = [build_model(_row(params, i), refs[params["model"][i]]) for i in range(100)]
    grids = clean_grid(models, rf, lay)
    rng = np.random.default_rng(12)
    verdicts = []
    for i in range(100):
        station = make_station(grids[i], 50, rng, rf, model_name=params["model"][i])
        verdicts.append(_stack(station, cfg, rf, refs[params["model"][i]]).attrs["verdict"])
    fp = verdicts.count("present") / len(verdicts)
    assert fp <= 0.05, (fp, {v: verdicts.count(v) for v in set(verdicts)})


def test_too_few_rfs_is_undetermined(setup):
    cfg, rf, lay = setup
    grid = clean_grid([load_model("ak135")], rf, lay)[0]
    station = make_station(grid, 5, np.random.default_rng(1), rf)
    ds = _stack(station, cfg, rf, load_model("ak135"))
    assert ds.attrs["verdict"] == "undetermined" and "5 receiver functions" in ds.attrs["reason"]


def test_vespagram_on_an_even_grid_equals_each_slowness_on_its_own():
    """On an evenly spaced slowness grid the vespagram's phase factors come by recurrence from row to row; each
    row equals the vespagram of that slowness alone (computed directly), to 1e-12 of the peak."""
    rng = np.random.default_rng(4)
    t = np.arange(-5, 100, 0.1)
    rf, dist = rng.normal(size=(37, t.size)), rng.uniform(30, 90, 37)
    u = np.round(np.arange(-0.3, 0.3 + 1e-9, 0.01), 6)
    v = vespagram(rf, t, dist, u, 60.0)
    direct = np.vstack([vespagram(rf, t, dist, u[k:k + 1], 60.0) for k in range(u.size)])
    assert np.max(np.abs(v - direct)) <= 1e-12 * np.max(np.abs(direct))
    uneven = np.array([-0.2, -0.05, 0.0, 0.13])
    assert np.array_equal(vespagram(rf, t, dist, uneven, 60.0)[1], vespagram(rf, t, dist, uneven[1:2], 60.0)[0])


def test_vespagram_separates_conversion_from_reverberation():
    """A pulse whose delay grows with distance (like a multiple) and one whose delay shrinks
    (like Ps) peak at opposite relative slownesses."""
    t = np.arange(-10, 60, 0.1)
    dist = np.linspace(30, 90, 40)
    ps = 30.0 - 0.05 * (dist - 60)     # Ps: later at shorter distance (larger slowness)
    mult = 15.0 + 0.03 * (dist - 60)   # reverberation: the opposite
    rf = np.exp(-((t[None] - ps[:, None]) / 0.5) ** 2) + np.exp(-((t[None] - mult[:, None]) / 0.5) ** 2)
    u = np.round(np.arange(-0.1, 0.1001, 0.005), 4)
    v = vespagram(rf, t, dist, u, 60.0)
    def at(t0):
        return u[np.argmax(v[:, np.argmin(np.abs(t - t0))])]

    assert at(30.0) == pytest.approx(-0.05, abs=0.006)
    assert at(15.0) == pytest.approx(0.03, abs=0.006)


def test_steeper_moveout_than_a_conversion_is_not_x(setup):
    """A coherent pulse at the delay of Ps from 300 km whose delay falls with distance four times as fast as
    that Ps's (-0.25 s/deg) passes the other checks, but no conversion from the X window moves out so
    steeply: with stacking.conversion_slowness_max_multiple it is not X; without the bound it is."""
    from xdisc.core.moveout import delay_table

    cfg, rf, lay = setup
    ref = load_model("ak135")
    station = make_station(clean_grid([ref], rf, lay)[0], 50, np.random.default_rng(8), rf, snr_range=(20.0, 30.0))
    t = rf.time_axis()
    t0 = float(delay_table(ref, [300.0], [float(np.median(station.slowness))])[0, 0])
    arrival = t0 - 0.25 * (station.distance - np.median(station.distance))
    p_amp = np.abs(station.rf[:, np.abs(t) <= 1.0]).max(axis=1)
    pulse = 0.05 * p_amp[:, None] * np.exp(-(rf.gaussian_width_hz * (t[None] - arrival[:, None])) ** 2)
    out = {}
    for bound in (None, 2.0):
        scfg = {**cfg["stacking"], "conversion_slowness_max_multiple": bound,
                "crust": {**cfg["stacking"]["crust"], "depth_conversion": False}}
        out[bound] = stack_station(station.rf + pulse, t, station.slowness, station.distance, ref, scfg).attrs
    assert out[None]["verdict"] == "present", out[None]["reason"]
    assert out[None]["x_relative_slowness"] < 2.0 * out[None]["x_ps_relative_slowness"]
    assert out[2.0]["verdict"] == "absent" and "moveout" in out[2.0]["reason"], out[2.0]


def test_bootstrap_is_seeded_and_ignores_nan():
    x = np.random.default_rng(0).standard_normal((30, 10))
    x[3, 5] = np.nan
    a, b = bootstrap_means(x, 200, 1), bootstrap_means(x, 200, 1)
    np.testing.assert_array_equal(a, b)
    assert np.all(np.isfinite(a))


def test_station_without_receiver_functions(setup, tmp_path):
    """All RFs rejected by QC: the station still gets a stack file, a figure and a table row."""
    from xdisc.report.figures import plot_station_stack
    from xdisc.stack.stacking import verdict_row

    cfg, rf, _ = setup
    t = rf.time_axis()
    ds = stack_station(np.zeros((0, t.size)), t, np.zeros(0), np.zeros(0), load_model("ak135"), cfg["stacking"],
                       station={"network": "XX", "station": "NONE", "latitude": 1.0, "longitude": 2.0})
    assert ds.attrs["verdict"] == "undetermined" and "0 receiver functions" in ds.attrs["reason"]
    row = verdict_row(ds)
    assert row["station"] == "XX.NONE" and row["n_rf"] == 0
    assert plot_station_stack(ds, tmp_path / "none.png").stat().st_size > 10_000


@pytest.mark.parametrize(("moho_km", "vpvs"), [(28.0, 1.70), (42.0, 1.80)])
def test_station_stack_carries_its_crust(setup, moho_km, vpvs):
    """stack_station's H-kappa estimate of a noisy synthetic station (the reference model's two-layer crust
    stretched to ``moho_km`` with ``vpvs``; xdisc's forward code): Moho within 2 km, Vp/Vs within 0.03,
    with bootstrap errors, the predicted Moho phases per event and the H-kappa stack in the file."""
    from xdisc.core.earthmodel import replace_crust
    from xdisc.stack.hk import crust_times
    from xdisc.stack.stacking import verdict_row

    cfg, rf, lay = setup
    ref = load_model("ak135")
    grid = clean_grid([replace_crust(ref, moho_km, vpvs)], rf, lay)[0]
    station = make_station(grid, 40, np.random.default_rng(3), rf, snr_range=(10.0, 30.0))
    a = (ds := _stack(station, cfg, rf, ref)).attrs
    assert abs(a["moho_km"] - moho_km) <= 2.0 and abs(a["vpvs"] - vpvs) <= 0.03, (a["moho_km"], a["vpvs"])
    assert 0 <= a["moho_err_km"] < 3 and 0 <= a["vpvs_err"] < 0.05
    assert a["crust_vp_km_s"] == pytest.approx(6.08, abs=0.01)
    assert float(ds["hk_stack"].max()) == pytest.approx(1.0)
    t = crust_times(a["moho_km"], a["vpvs"], a["crust_vp_km_s"], ds["slowness_s_per_km"].values)
    np.testing.assert_allclose(ds["moho_ppps_time"].values, t[1])
    row = verdict_row(ds)
    assert (row["moho_km"], row["vpvs"]) == (a["moho_km"], a["vpvs"])


def test_crust_is_nan_with_too_few_receiver_functions(setup):
    cfg, rf, lay = setup
    grid = clean_grid([load_model("ak135")], rf, lay)[0]
    station = make_station(grid, 2, np.random.default_rng(3), rf)
    a = _stack(station, cfg, rf, load_model("ak135")).attrs
    assert np.isnan(a["moho_km"]) and "too few for H-kappa" in a["crust_note"]


def test_search_margin_finds_x_at_the_window_edge_and_the_floor_drops_weak_peaks(setup):
    """X at 252 km (its peak can land just above 250 km): with stacking.x_margin_km the peak is searched
    beyond the window and called X because its depth +- error reaches 250 km; a peak well outside
    (X at 380 km, moved to the 370s) is not X. An amplitude floor above the X amplitude makes it absent."""
    cfg, rf, lay = setup
    ref = load_model("ak135")
    out = {}
    for depth in (252.0, 376.0):
        model = insert_discontinuity(ref, Discontinuity(depth, 0.04, 0.02, 0.012))
        grid = clean_grid([model], rf, lay)[0]
        station = make_station(grid, 50, np.random.default_rng(21), rf, snr_range=(10.0, 30.0))
        for margin in (0.0, 20.0):
            scfg = {**cfg["stacking"], "x_margin_km": margin}
            out[depth, margin] = _stack(station, {**cfg, "stacking": scfg}, rf, ref).attrs
    edge = out[252.0, 20.0]
    assert edge["verdict"] == "present" and abs(edge["x_depth_km"] - 252.0) <= 6.0, edge["reason"]
    assert edge["x_depth_km"] - max(edge["x_depth_err_km"], 1.0) <= 250.0 or edge["x_depth_km"] >= 250.0
    assert out[376.0, 20.0]["verdict"] != "present" or out[376.0, 20.0]["x_depth_km"] <= 350 + \
        out[376.0, 20.0]["x_depth_err_km"]
    floor = {**cfg["stacking"], "x_margin_km": 20.0, "min_x_amplitude": 2 * edge["x_amp"]}
    model = insert_discontinuity(ref, Discontinuity(252.0, 0.04, 0.02, 0.012))
    station = make_station(clean_grid([model], rf, lay)[0], 50, np.random.default_rng(21), rf, snr_range=(10.0, 30.0))
    weak = _stack(station, {**cfg, "stacking": floor}, rf, ref).attrs
    assert weak["verdict"] == "absent" and "amplitude >=" in weak["reason"]


def _quiet_x_station(ref, dvs, rf, lay):
    """50 receiver functions at SNR 1000 (seed 4) of ``ref`` with X of ``dvs`` at 300 km (dVp and drho half
    and 0.3 of it): the station of the floor tests."""
    model = insert_discontinuity(ref, Discontinuity(300.0, dvs, dvs / 2, dvs * 0.3))
    return make_station(clean_grid([model], rf, lay)[0], 50, np.random.default_rng(4), rf, snr_range=(1000.0, 1000.0))


def test_default_amplitude_floor_drops_a_tiny_coherent_peak_where_noise_is_tiny(setup):
    """Where noise is tiny the bootstrap finds any coherent peak significant: a jump of 0.5 % dVs at 300 km
    (Ps well under 0.02 of P) at SNR 1000 passes every other check. The default floor
    (``stacking.min_x_amplitude``, 0.02 of P) makes it absent, and says why; without the floor it is X. An X of
    4 % is X with the floor."""
    cfg, rf, lay = setup
    assert cfg["stacking"]["min_x_amplitude"] == 0.02
    ref = load_model("ak135")
    out = {}
    for dvs in (0.005, 0.04):
        station = _quiet_x_station(ref, dvs, rf, lay)
        for floor in (0.0, 0.02):
            scfg = {**_plain(cfg["stacking"]), "min_x_amplitude": floor}
            out[dvs, floor] = _stack(station, {**cfg, "stacking": scfg}, rf, ref).attrs
    tiny = out[0.005, 0.0]
    assert tiny["verdict"] == "present" and tiny["x_amp"] < 0.02 and abs(tiny["x_depth_km"] - 300) <= 5, tiny
    assert out[0.005, 0.02]["verdict"] == "absent", out[0.005, 0.02]
    assert out[0.005, 0.02]["reason"] == "not amplitude >= 0.02 of P"
    assert out[0.04, 0.02]["verdict"] == "present" and out[0.04, 0.02]["x_amp"] > 0.02


def test_quiet_rms_is_the_root_mean_square_inside_its_window():
    depths = np.arange(0.0, 801.0)
    stack = np.where((depths >= 440) & (depths <= 630), 0.02 * np.sin(2 * np.pi * depths / 19.0), 0.5)
    assert stacking.quiet_rms(stack, depths, (440, 630)) == pytest.approx(0.02 / np.sqrt(2), rel=0.02)
    stack[500:520] = np.nan  # NaN depths are left out, an empty window gives NaN
    assert np.isfinite(stacking.quiet_rms(stack, depths, (440, 630)))
    assert np.isnan(stacking.quiet_rms(stack, depths, (900, 950)))


def test_quiet_floor_follows_the_clutter_of_the_station(setup):
    """Arrivals that repeat at every event (a crust's late reverberations, a source's residue) pass the
    bootstrap as signal. ``stacking.quiet_factor`` 2 asks X to stand above twice the rms of the depth stack
    between the 410 and the 660, where nothing converts: pulses of 0.06 of P at 47-63 s after P (470-620 km)
    at every event make an X of 3 % dVs (0.05 of P) absent, and say why; without them it is X, and an X of
    6 % stays X with them. The stack file records the rms (``quiet_rms``) with the check on or off."""
    cfg, rf, lay = setup
    assert cfg["stacking"]["quiet_factor"] == 0.0 and cfg["stacking"]["quiet_window_km"] == [440, 630]
    scfg = {**_plain(cfg["stacking"]), "quiet_factor": 2.0}
    ref, t = load_model("ak135"), rf.time_axis()
    clutter = sum(0.06 * (-1) ** k * np.exp(-0.5 * ((t - tc) / 0.6) ** 2) for k, tc in enumerate(range(47, 64, 4)))
    out = {}
    for dvs in (0.03, 0.06):
        station = _quiet_x_station(ref, dvs, rf, lay)
        for c in (0, 1):
            out[dvs, c] = stack_station(station.rf + c * clutter[None, :], t, station.slowness, station.distance, ref,
                                        scfg).attrs
        if dvs == 0.03:  # the default (off) decides as before and still records the rms
            off = stack_station(station.rf + clutter[None, :], t, station.slowness, station.distance, ref,
                                _plain(cfg["stacking"])).attrs
    assert out[0.03, 0]["verdict"] == "present" and out[0.03, 0]["quiet_rms"] < 0.015
    cluttered = out[0.03, 1]
    assert cluttered["quiet_rms"] > 0.025 and cluttered["x_amp"] == pytest.approx(out[0.03, 0]["x_amp"], abs=1e-3)
    assert cluttered["verdict"] == "absent"
    assert cluttered["reason"] == "not amplitude > 2 x the stack's rms in 440-630 km"
    assert out[0.06, 1]["verdict"] == "present"
    assert off["verdict"] == "present" and off["quiet_rms"] == pytest.approx(cluttered["quiet_rms"])


def test_cleaned_moveout_finds_a_conversion_under_a_larger_reverberation():
    """A reverberation of 0.08 of P (+0.10 s/deg) and a Ps of 0.04 (-0.06 s/deg) arrive at 30 s at the
    reference distance: the vespagram's maximum is the reverberation's. Taken out as the station's pulse
    at its slowness (CLEAN), the largest value left is the Ps, at its slowness and within 10 % of its
    amplitude. Without the Ps, what is left in the conversion band is under a tenth of it."""
    t = np.arange(-10, 120, 0.1)
    dist = np.random.default_rng(1).uniform(30, 90, 60)
    ref = float(np.median(dist))
    off = dist[:, None] - ref

    def pulse(x):
        return np.exp(-(x / 0.8) ** 2)

    rel = np.round(np.arange(-0.3, 0.301, 0.01), 6)
    band = (-0.12, -0.03)
    reverberation = pulse(t)[None, :] + 0.08 * pulse(t[None, :] - 30 - 0.10 * off)
    for ps in (0.04, 0.0):
        rf = reverberation + ps * pulse(t[None, :] - 30 + 0.06 * off)
        vesp = stacking.vespagram(rf, t, dist, rel, ref)
        near = np.abs(t - 30) <= 1
        assert rel[np.unravel_index(np.argmax(vesp[:, near]), vesp[:, near].shape)[0]] == pytest.approx(0.10)
        array = stacking.array_response(rf, t, dist, np.ones(60), ref)
        u, a = stacking.cleaned_moveout(vesp, rel, t, 30.0, band, array)
        if ps:
            assert u == pytest.approx(-0.06, abs=0.011) and a == pytest.approx(0.04, rel=0.1)
        else:
            assert not (band[0] <= u <= band[1]) or a < 0.004


def test_moveout_clean_fraction_finds_x_under_a_thick_crusts_reverberation(setup):
    """X of 4 % at 255 km under a 60 km crust: its Ps arrives with the crust's PpPs, whose vespagram maximum
    wins the moveout check, and X is missed. With ``stacking.moveout_clean_fraction`` (0.5) the PpPs is taken
    out and X is found at 255 km; the same station without X stays absent."""
    from xdisc.core.earthmodel import replace_crust

    cfg, rf, lay = setup
    assert cfg["stacking"]["moveout_clean_fraction"] is None
    ref = load_model("ak135")
    out = {}
    for dvs in (0.04, 0.0):
        model = replace_crust(ref, 60.0, 1.75)
        if dvs:
            model = insert_discontinuity(model, Discontinuity(255.0, dvs, dvs / 2, dvs * 0.3))
        station = make_station(clean_grid([model], rf, lay)[0], 50, np.random.default_rng(3), rf,
                               snr_range=(1000.0, 1000.0))
        for clean in (None, 0.5):
            scfg = {**_plain(cfg["stacking"]), "moveout_clean_fraction": clean}
            out[dvs, clean] = _stack(station, {**cfg, "stacking": scfg}, rf, ref).attrs
    assert out[0.04, None]["verdict"] == "absent" and "moveout" in out[0.04, None]["reason"]
    found = out[0.04, 0.5]
    assert found["verdict"] == "present" and abs(found["x_depth_km"] - 255.0) <= 5.0, found["reason"]
    assert out[0.0, 0.5]["verdict"] == "absent"


def test_moveout_share_counts_the_bootstraps_resampled_vespagrams():
    """The share of event resamples whose vespagram maximum near 30 s lies in the conversion band, against the
    FFT vespagram (:func:`xdisc.stack.stacking.vespagram`) of each resample's events taken one by one, with the
    depth stack's bootstrap counts (same seed): a Ps (-0.06 s/deg) stays in the band in every resample, a
    reverberation (+0.10 s/deg) in none, and a weak arrival at the band's edge in noise in some."""
    t = np.arange(-10, 60, 0.1)
    rng = np.random.default_rng(5)
    dist = rng.uniform(30, 90, 40)
    ref = float(np.median(dist))
    off = dist[:, None] - ref
    rel = np.round(np.arange(-0.3, 0.301, 0.01), 6)
    band = (-0.12, -0.03)
    weights = rng.uniform(0.5, 1.5, dist.size)
    weights /= weights.mean()
    noise = 0.03 * rng.standard_normal((dist.size, t.size))
    seeded = np.random.default_rng(11).multinomial(dist.size, np.full(dist.size, 1 / dist.size), size=40)
    for u_true, expect in ((-0.06, 1.0), (0.10, 0.0), (-0.03, None)):
        rf = np.exp(-((t[None, :] - 30 - u_true * off) / 0.8) ** 2) * (1.0 if expect is not None else 0.05)
        rf = rf + (noise if expect is None else 0.0)
        array = stacking.array_response(rf, t, dist, weights, ref)
        share = stacking.moveout_share(array, rel, 30.0, band, 40, 11)
        near = np.abs(t - 30.0) <= 1.0
        u_fft = []
        for c in seeded:
            v = stacking.vespagram(rf * (c * weights)[:, None], t, dist, rel, ref)
            u_fft.append(rel[int(np.argmax(v[:, near].max(axis=1)))])
        u_fft = np.asarray(u_fft)
        oracle = float(np.mean((band[0] <= u_fft) & (u_fft <= band[1])))
        assert share == pytest.approx(oracle, abs=0.1), (u_true, share, oracle)
        if expect is not None:
            assert share == expect
        else:
            assert 0.1 < share < 0.9, share


def test_moveout_bootstrap_share_drops_a_peak_whose_moveout_noise_decides(setup):
    """A pulse of 0.05 of P at the Ps time of 300 km whose moveout is 0.45 times that Ps's (at the band's
    slow edge, 0.5) in noise of SNR 20-30: the one vespagram puts its maximum inside the band and the
    verdict says X; in fewer than 0.7 of the event resamples it stays inside, so with
    ``stacking.moveout_bootstrap_share`` 0.7 it is not X. X of 3 % at 300 km in the same noise moves out as
    a conversion in nearly every resample and stays X. Off by default: no share is computed."""
    from xdisc.core.moveout import delay_table

    cfg, rf, lay = setup
    assert cfg["stacking"]["moveout_bootstrap_share"] is None
    ref = load_model("ak135")
    t = rf.time_axis()
    station = make_station(clean_grid([ref], rf, lay)[0], 50, np.random.default_rng(8), rf, snr_range=(20.0, 30.0))
    mid = float(np.median(station.distance))
    t0 = float(delay_table(ref, [300.0], [float(np.median(station.slowness))])[0, 0])
    arrival = t0 + 0.45 * stacking._ps_relative_slowness(ref, 300.0, mid) * (station.distance - mid)
    p_amp = np.abs(station.rf[:, np.abs(t) <= 1.0]).max(axis=1)
    pulse = 0.05 * p_amp[:, None] * np.exp(-(rf.gaussian_width_hz * (t[None] - arrival[:, None])) ** 2)
    x = make_station(clean_grid([insert_discontinuity(ref, Discontinuity(300.0, 0.03, 0.015, 0.009))], rf, lay)[0],
                     50, np.random.default_rng(8), rf, snr_range=(20.0, 30.0))
    out = {}
    for share in (None, 0.7):
        scfg = {**cfg["stacking"], "moveout_bootstrap_share": share,
                "crust": {**cfg["stacking"]["crust"], "depth_conversion": False}}
        out["edge", share] = stack_station(station.rf + pulse, t, station.slowness, station.distance, ref,
                                           scfg).attrs
        out["x", share] = stack_station(x.rf, t, x.slowness, x.distance, ref, scfg).attrs
    assert out["edge", None]["verdict"] == "present" and np.isnan(out["edge", None]["x_moveout_share"])
    edge = out["edge", 0.7]
    assert edge["verdict"] == "absent" and "event resamples" in edge["reason"] and edge["x_moveout_share"] < 0.7
    assert abs(edge["x_depth_km"] - 300.0) <= 10.0
    assert out["x", 0.7]["verdict"] == "present" and out["x", 0.7]["x_moveout_share"] >= 0.95, out["x", 0.7]
    assert abs(out["x", 0.7]["x_depth_km"] - 300.0) <= 5.0


def test_gradual_x_at_the_window_bottom_is_found_through_its_half_width(setup):
    """X whose velocity rises over 18 km from 344 km peaks in its middle, beyond 350 km. Searched only
    inside the window, that peak is cut off and X is missed; with the margin the peak counts because the
    stack, within its half width above the peak, reaches into the window. A sharp jump at 376 km (a
    distractor above the 410) does not: its half width stays outside."""
    cfg, rf, lay = setup
    ref = load_model("ak135")
    out = {}
    for name, disc in (("gradual", Discontinuity(344.0, 0.04, 0.02, 0.012, gradient_km=18.0)),
                       ("deep jump", Discontinuity(376.0, 0.04, 0.02, 0.012))):
        grid = clean_grid([insert_discontinuity(ref, disc)], rf, lay)[0]
        station = make_station(grid, 50, np.random.default_rng(5), rf, snr_range=(10.0, 30.0))
        for margin in (0.0, 20.0):
            scfg = {**cfg["stacking"], "x_margin_km": margin, "crust": {**cfg["stacking"]["crust"],
                                                                        "depth_conversion": False}}
            out[name, margin] = _stack(station, {**cfg, "stacking": scfg}, rf, ref).attrs
    inside, wide = out["gradual", 0.0], out["gradual", 20.0]
    assert inside["verdict"] != "present", inside
    assert wide["verdict"] == "present", wide["reason"]
    assert 350.0 < wide["x_depth_km"] <= 360.0
    assert wide["x_depth_km"] - max(wide["x_depth_err_km"], 1.0) > 350.0  # the half width, not the error, reaches in
    deep = out["deep jump", 20.0]
    assert deep["verdict"] != "present" or deep["x_depth_km"] <= 350.0, deep


def test_depth_conversion_through_the_station_crust_removes_the_crust_bias(setup):
    """X at 300 km under a thick, high-Vp/Vs crust (60 km, 1.85): through the reference crust (35 km,
    1.73) the conversion maps too deep; through the station's own H-kappa crust it lands within 4 km."""
    from xdisc.core.earthmodel import replace_crust

    cfg, rf, lay = setup
    ref = load_model("ak135")
    model = insert_discontinuity(replace_crust(ref, 60.0, 1.85), Discontinuity(300.0, 0.04, 0.02, 0.012))
    station = make_station(clean_grid([model], rf, lay)[0], 50, np.random.default_rng(8), rf,
                           snr_range=(20.0, 60.0))
    depth = {}
    for own in (False, True):
        scfg = {**cfg["stacking"], "crust": {**cfg["stacking"]["crust"], "depth_conversion": own}}
        a = _stack(station, {**cfg, "stacking": scfg}, rf, ref).attrs
        assert a["verdict"] == "present", a["reason"]
        depth[own] = a["x_depth_km"]
        assert a["depth_model"] == ("station crust (H-kappa) over the earth model" if own else "earth model")
    assert abs(depth[True] - 300.0) <= 4.0, depth
    assert abs(depth[True] - 300.0) < abs(depth[False] - 300.0) - 3.0, depth


def test_unseen_410_blocks_absent_but_not_a_significant_x(setup, monkeypatch):
    """X whose jump lasts down to the 410 takes the 410's contrast (the 410 is not seen, and shown weak against
    the 660): with the default ``require_410_660: for_absent`` the X that passes every check is present, and the
    reason says the 410 was not seen; with ``always`` the station is undetermined. A station without X whose
    410 is gone stays undetermined under both: it cannot show that X is missing. Nor does X alone decide where
    the 410 is there but hidden by noise (not shown weak), unless it exceeds ``x_snr_without_410`` times the
    noise."""
    cfg, rf, lay = setup
    ref = load_model("ak135")
    above, below = ref.at([409.999, 410.001])
    jump, back = below / above - 1, above / below - 1  # vp, vs, rho
    x_to_410 = insert_discontinuity(ref, Discontinuity(300.0, jump[1], jump[0], jump[2], style="constant"))
    no_410 = insert_discontinuity(ref, Discontinuity(410.0, back[1], back[0], back[2], style="constant"))
    assert np.allclose(*x_to_410.at([409.999, 410.001])) and np.allclose(*no_410.at([409.999, 410.001]))
    out = {}
    for name, grid in zip(("x", "no x"), clean_grid([x_to_410, no_410], rf, lay), strict=True):
        station = make_station(grid, 50, np.random.default_rng(32), rf, snr_range=(10.0, 30.0))
        for rule in ("for_absent", "always"):
            scfg = {**_plain(cfg["stacking"]), "require_410_660": rule}
            out[name, rule] = _stack(station, {**cfg, "stacking": scfg}, rf, ref).attrs
    assert all(np.isnan(a["d410_km"]) and np.isfinite(a["d660_km"]) for a in out.values())
    assert cfg["stacking"]["require_410_660"] == "for_absent"
    x = out["x", "for_absent"]
    assert x["verdict"] == "present" and abs(x["x_depth_km"] - 300.0) <= 5.0, x["reason"]
    assert x["reason"] == "d410 not seen, shown weak (X passes its own checks)"
    assert out["x", "always"]["verdict"] == "undetermined" and out["x", "always"]["reason"] == "d410 not seen"
    for rule in ("for_absent", "always"):
        assert out["no x", rule]["verdict"] == "undetermined" and out["no x", rule]["reason"] == "d410 not seen"

    # the 410 intact (X tapers back to zero at it) and hidden by noise: not shown weak, so undetermined
    tapered = insert_discontinuity(ref, Discontinuity(300.0, 0.05, 0.025, 0.015))
    station = make_station(clean_grid([tapered], rf, lay)[0], 50, np.random.default_rng(31), rf, snr_range=(3.0, 6.0))
    strict = {**cfg, "stacking": {**cfg["stacking"], "x_snr_without_410": None}}
    hidden = _stack(station, strict, rf, ref).attrs
    assert np.isnan(hidden["d410_km"]) and np.isfinite(hidden["d660_km"])
    assert hidden["verdict"] == "undetermined" and hidden["reason"] == "d410 not seen"
    # ... unless X stands far enough above the noise (stacking.x_snr_without_410)
    loose = {f: _stack(station, {**cfg, "stacking": {**cfg["stacking"], "x_snr_without_410": f * hidden["x_snr"]}},
                       rf, ref).attrs for f in (0.9, 1.1)}
    assert loose[0.9]["verdict"] == "present" and "X passes its own checks at" in loose[0.9]["reason"]
    assert loose[1.1]["verdict"] == "undetermined" and loose[1.1]["reason"] == "d410 not seen"
    monkeypatch.setattr(stacking, "WEAK_FRACTION", np.inf)  # what held it back was the weakness test alone
    assert _stack(station, strict, rf, ref).attrs["verdict"] == "present"


def test_normal_410_over_660_amplitude_is_what_a_noise_free_stack_shows(setup):
    """NORMAL_410_660, the yardstick of a 410 shown weak, is the 410/660 amplitude ratio of a noise-free AK135
    station's depth stack; IASP91 and PREM give 0.52 and 0.40 (PREM's 410 is the weakest)."""
    cfg, rf, lay = setup
    ratios = {}
    for name in ("ak135", "iasp91", "prem"):
        ref = load_model(name)
        station = make_station(clean_grid([ref], rf, lay)[0], 50, np.random.default_rng(1), rf, model_name=name)
        ds = stack_station(station.clean, rf.time_axis(), station.slowness, station.distance, ref, cfg["stacking"])
        depth, stack = ds["depth"].values, ds["depth_stack"].values
        ratios[name] = stack[(depth > 380) & (depth < 440)].max() / stack[(depth > 630) & (depth < 710)].max()
    assert abs(ratios["ak135"] - stacking.NORMAL_410_660) <= 0.02, ratios
    assert abs(ratios["iasp91"] - 0.52) <= 0.02 and abs(ratios["prem"] - 0.40) <= 0.02, ratios


def test_depth_conversion_keeps_the_earth_models_crust_where_h_kappa_is_unsure():
    """The station's crust converts to depth only where its H-kappa maximum is inside the search and its
    bootstrap errors are within stacking.crust.max_moho_err_km / max_vpvs_err (a sediment reverberation
    taken for the Moho sits on the search's shallow edge; no clear maximum scatters the bootstrap)."""
    from xdisc.stack.stacking import _crust_unusable, _station_model

    cfg = cfgmod.validate({})["stacking"]["crust"]
    ref = load_model("ak135")
    good = {"moho_km": 42.0, "vpvs": 1.78, "moho_err_km": 1.2, "vpvs_err": 0.02}
    assert _crust_unusable(good, cfg) == "" and _station_model(ref, {**good, "crust_vp_km_s": 6.08}, cfg)[0] is not ref
    for bad, why in (({"moho_km": np.nan}, "no H-kappa estimate"), ({"moho_km": 15.0}, "edge"),
                     ({"moho_km": 75.0}, "edge"), ({"vpvs": 1.6}, "edge"), ({"vpvs": 2.0}, "edge"),
                     ({"moho_err_km": 6.0}, "errors"), ({"vpvs_err": 0.08}, "errors"),
                     ({"moho_err_km": np.nan}, "errors")):
        crust = {**good, **bad, "crust_vp_km_s": 6.08}
        assert why in _crust_unusable(crust, cfg), bad
        model, note = _station_model(ref, crust, cfg)
        assert model is ref and note.startswith("earth model (station crust not used: ")
    assert _crust_unusable({**good, "moho_err_km": 6.0}, {**cfg, "max_moho_err_km": 8.0}) == ""
