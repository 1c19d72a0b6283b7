"""Per-station detectability (injection tests): the injected X conversion, the fast stacking verdict against
stack_station, detection and false alarms on synthetic stations of known noise."""

import numpy as np
import pytest
import xarray as xr
from xdisc import config as cfgmod
from xdisc import detectability as D
from xdisc.core.deconvolution import RFSettings, direct_p, normalise_by_p
from xdisc.core.earthmodel import load_model
from xdisc.core.moveout import delay_table, distance_for_slowness
from xdisc.stack.stacking import stack_station
from xdisc.synth.stations import StationDraw, synthetic_station
from xdisc.synth.synthetics import Layering

CFG = cfgmod.validate({})
SMALL = D.InjectionGrid(depths_km=(300.0,), gradients_km=(0.0,), dvs=(0.01, 0.03, 0.06), draws=6,
                        false_alarm_draws=8)


@pytest.fixture(scope="module")
def model():
    return load_model(CFG["earth_model"])


@pytest.fixture(scope="module")
def kernels(model):
    rf = RFSettings(**CFG["receiver_function"])
    return D.x_kernels(model, D.InjectionGrid(gradients_km=(0.0,), dvs=(0.01, 0.03, 0.06)), rf,
                       Layering(**CFG["layering"]))


def _station(base, n_rf, snr, seed):
    """A synthetic station without X: the earth model's receiver functions at the grid slownesses, with the
    project's synthetic-station noise (the generator the CNN trains on)."""
    rf = RFSettings(**CFG["receiver_function"])
    grid = np.asarray(D.InjectionGrid().kernel_slowness_s_per_km)
    draw = StationDraw(spurious_probability=0.0, trim_probability=0.0)
    traces, p = synthetic_station(base, grid, rf.time_axis(), rf.dt, rf.gaussian_width_hz, draw,
                                  np.random.default_rng(seed), n_rf=n_rf, snr=snr)
    return normalise_by_p(traces, rf.time_axis()), p


def test_conversion_lands_at_its_depth_and_scales_with_dvs(model, kernels):
    k, _ = kernels
    grid = D.InjectionGrid(gradients_km=(0.0,), dvs=(0.01, 0.03, 0.06))
    rf = RFSettings(**CFG["receiver_function"])
    t = rf.time_axis()
    # the Ps arrival of each depth sits at its ray-theory delay (oracle: xdisc's delay table is checked
    # against TauP in test_physics_oracles) at every grid slowness
    for a, depth in enumerate(grid.depths_km):
        for j, p in enumerate(grid.kernel_slowness_s_per_km):
            expected = float(delay_table(model, [depth], [p])[0, 0])
            window = np.abs(t - expected) < 4.0
            peak = t[window][np.argmax(k[a, 0, 1, j, window])]
            assert abs(peak - expected) < 0.3, (depth, p, peak, expected)
    # one kernel per dVs: the X Ps grows with dVs (not exactly in proportion: dVp and density follow,
    # and the faster mantle above the 410 moves the 410 and 660 earlier)
    w = (t > 25) & (t < 40)
    amps = [k[1, 0, c, 4, w].max() for c in range(len(grid.dvs))]
    assert np.all(np.diff(amps) > 0)
    assert amps[2] / amps[1] == pytest.approx(2.0, rel=0.1)       # 6 % against 3 %
    # in the depth stack of stack_station the injected X peaks at its depth with the kernel's amplitude
    p = np.repeat(np.asarray(grid.kernel_slowness_s_per_km), 4)
    traces = np.repeat(k[1, 0, 1], 4, axis=0)
    traces[:, np.abs(t) < 1.0] += np.exp(-((t[np.abs(t) < 1.0] / 0.3) ** 2))  # a direct P to normalise by
    ds = stack_station(traces, t, p, distance_for_slowness(p, CFG["earth_model"]), model, CFG["stacking"])
    stack = ds["depth_stack"].values
    depths = ds["depth"].values
    inside = (depths > 250) & (depths < 350)
    assert abs(depths[inside][np.argmax(stack[inside])] - 300.0) <= 3.0
    assert stack[inside].max() == pytest.approx(np.max(k[1, 0, 1][:, (t > 25) & (t < 40)], axis=1).mean(), rel=0.1)


def test_fast_stacking_verdict_is_that_of_stack_station(model, kernels):
    k, base = kernels
    norm, p = _station(base, 60, (10.0, 30.0), seed=3)
    from xdisc.synth.noise_pool import radial_residuals

    noise = radial_residuals(norm, p)
    structure = norm - noise
    rf = RFSettings(**CFG["receiver_function"])
    t = rf.time_axis()
    dist = distance_for_slowness(p, CFG["earth_model"])
    # through the earth model (each draw's own H-kappa crust would differ a little; the station's crust is
    # the next test's)
    cfg = {**CFG["stacking"], "crust": {**CFG["stacking"]["crust"], "depth_conversion": False}}
    fast = D.StackingDraws(structure, noise, t, p, dist, model, cfg)
    kern = D.at_slowness(k[1, 0, 1], np.asarray(D.InjectionGrid().kernel_slowness_s_per_km), p)
    rng = np.random.default_rng(0)
    verdicts = set()
    for scale in (0.0, 1.0, 2.0):  # none, 3 %, about 6 %
        sign = rng.choice((-1.0, 1.0), size=len(p))
        a = fast.verdict(sign, (scale * kern, scale * fast.depth_traces(kern), scale * fast.vespagram_rows(kern)))
        b = stack_station(fast.traces(sign) + scale * kern, t, p, dist, model, cfg).attrs
        assert a["verdict"] == b["verdict"] and a["reason"] == b["reason"]
        if np.isfinite(b["x_amp"]):
            assert a["x_depth_km"] == b["x_depth_km"]
            assert a["x_amp"] == pytest.approx(b["x_amp"], abs=1e-4)
        verdicts.add(b["verdict"])
    assert "present" in verdicts  # the check covers a detection


@pytest.mark.parametrize("uneven", [False, True])
def test_vespagram_rows_average_to_the_stackings_vespagram(model, kernels, uneven):
    """Each event's shifted rows (phases by recurrence over the evenly spaced relative slownesses, or by
    exponentials where they are not evenly spaced) average to :func:`xdisc.stack.stacking.vespagram`."""
    from xdisc.stack.stacking import vespagram

    _, base = kernels
    norm, p = _station(base, 40, (10.0, 30.0), seed=5)
    t = RFSettings(**CFG["receiver_function"]).time_axis()
    dist = distance_for_slowness(p, CFG["earth_model"])
    cfg = {**CFG["stacking"], "crust": {**CFG["stacking"]["crust"], "depth_conversion": False}}
    fast = D.StackingDraws(norm, np.zeros_like(norm), t, p, dist, model, cfg)
    if uneven:
        fast.rel_s = np.concatenate([fast.rel_s[:10], fast.rel_s[10::3]])
    rows = fast.vespagram_rows(norm)
    ref = vespagram(norm, t, dist, fast.rel_s, fast.ref_dist)[:, fast.window]
    assert rows.shape == (fast.rel_s.size, len(p), fast.window.size)
    np.testing.assert_allclose(rows.mean(axis=1), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_injection_tests_convert_depth_through_the_stations_crust_when_the_verdict_does(model, kernels):
    # with stacking.crust.depth_conversion the verdict maps to depth through the station's H-kappa crust;
    # the injection tests take the same model (stack.stacking.depth_model), so that they judge as it does
    import copy

    from xdisc.stack.stacking import depth_model

    k, base = kernels
    norm, p = _station(base, 60, (10.0, 30.0), seed=3)
    t = RFSettings(**CFG["receiver_function"]).time_axis()
    dist = distance_for_slowness(p, CFG["earth_model"])
    cfg = copy.deepcopy(CFG["stacking"])
    cfg["crust"]["depth_conversion"] = False
    assert depth_model(norm, t, p, model, cfg) is model  # off: the earth model
    cfg["crust"]["depth_conversion"] = True
    own = depth_model(norm, t, p, model, cfg)
    assert own is not model
    on = stack_station(norm, t, p, dist, model, cfg).attrs
    assert on["depth_model"].startswith("station crust")
    assert float(own.depth_km[np.flatnonzero(own.vs_km_s > 4.0)[0]]) == pytest.approx(on["moho_km"], abs=0.5)
    # the fast verdict on the station's own traces (every sign +1, nothing injected) is stack_station's
    from xdisc.synth.noise_pool import radial_residuals

    noise = radial_residuals(norm, p)
    fast = D.StackingDraws(norm - noise, noise, t, p, dist, own, cfg)
    kern = D.at_slowness(k[1, 0, 1], np.asarray(D.InjectionGrid().kernel_slowness_s_per_km), p)
    a = fast.verdict(np.ones(len(p)), (2.0 * kern, 2.0 * fast.depth_traces(kern), 2.0 * fast.vespagram_rows(kern)))
    b = stack_station(norm + 2.0 * kern, t, p, dist, model, cfg).attrs
    assert a["verdict"] == b["verdict"] == "present"
    assert a["x_depth_km"] == pytest.approx(b["x_depth_km"], abs=cfg["depth_step_km"])


def test_detection_rises_with_dvs_and_falls_with_noise(model, kernels):
    k, base = kernels
    rf = RFSettings(**CFG["receiver_function"])
    t = rf.time_axis()
    out = {}
    for snr in (20.0, 4.0):
        norm, p = _station(base, 50, snr, seed=5)
        kk = k[1:2]  # 300 km only, as SMALL
        ds = D.station_detectability(norm, t, p, distance_for_slowness(p, CFG["earth_model"]), kk, base, SMALL,
                                     model, CFG["stacking"])
        out[snr] = ds["detection_stacking"].values[0, 0]
        assert ds["detection_stacking"].attrs["units"] == "1" and ds.attrs["n_rf"] == 50
        assert 0.0 <= float(ds["false_alarm_rate_stacking"]) <= 0.25
    quiet, noisy = out[20.0], out[4.0]
    assert quiet[-1] == 1.0 and quiet[-1] >= quiet[0]          # 6 % is seen at SNR 20 in every draw
    assert noisy[1] < quiet[1] or noisy[2] < quiet[2]          # noise hides some of it


def test_draws_carry_the_stations_noise_not_its_stack(kernels):
    """Known structure and known noise: the station's noise (radial residuals) has one trace's variance,
    and draws of a noise-free structure plus it with random polarities have stacks as noisy as the
    station's, each its own: they are not centred on the station's realised stack noise, as draws built
    on a structure estimated from its traces would be."""
    from xdisc.synth.noise_pool import radial_residuals

    _, base = kernels
    t = RFSettings(**CFG["receiver_function"]).time_axis()
    g = np.asarray(D.InjectionGrid().kernel_slowness_s_per_km)
    x_window = (t > 26.0) & (t < 40.0)
    shared = {"own structure": [], "noise-free structure": []}
    for seed in range(8):
        clean, p = _station(base, 60, 1e6, seed=seed)        # the same events without noise
        norm, p2 = _station(base, 60, 5.0, seed=seed)
        assert np.array_equal(p, p2)
        after = t > 5.0                                       # away from direct P, where normalising moves things
        true_var = np.var((norm - clean)[:, after])
        noise = radial_residuals(norm, p)
        assert np.var(noise[:, after]) == pytest.approx(true_var, rel=0.1)
        expected = np.var((norm - clean)[:, x_window]) / len(p)  # of a stack of the station's traces
        rng = np.random.default_rng(seed)
        signs = rng.choice((-1.0, 1.0), size=(30, len(p), 1))
        for kind, structure in (("own structure", norm - noise), ("noise-free structure", D.at_slowness(base, g, p))):
            stack = np.stack([structure + s * noise - clean for s in signs])[:, :, x_window].mean(axis=1)
            assert np.mean(np.var(stack, axis=0)) == pytest.approx(expected, rel=0.5)  # each draw's stack
            shared[kind].append(np.var(stack.mean(axis=0)) / expected)             # what all draws share
    assert np.mean(shared["own structure"]) > 0.3 and np.mean(shared["noise-free structure"]) < 0.1


def test_detection_draws_take_the_structure_whose_crust_is_like_the_stations(tmp_path):
    from xdisc.core.artifacts import write_netcdf
    from xdisc.synth.synthetics import make_dataset

    cfg = cfgmod.validate({"synthetics": {"n_samples": 16, "noise": {"enabled": False}}})
    path = write_netcdf(make_dataset(cfg), tmp_path / "test.nc")
    rf_q, p_q = D.quiet_structures(path, 1000, seed=1)
    t = RFSettings(**CFG["receiver_function"]).time_axis()
    for k in (0, len(rf_q) - 1):
        station = np.repeat(rf_q[k], 3, axis=0)            # 3 events per slowness, noise-free
        p = np.repeat(p_q, 3)
        near, _ = D.like_station(station, p, t, (rf_q, p_q), 2)
        assert near.shape == (2, *rf_q.shape[1:]) and np.array_equal(near[0], rf_q[k])


def test_more_receiver_functions_see_smaller_x(model, kernels):
    """The issue's check: more receiver functions (same noise level) give a higher detection curve and a
    dvs90 no larger, within sampling error."""
    k, base = kernels
    t = RFSettings(**CFG["receiver_function"]).time_axis()
    grid = D.InjectionGrid(depths_km=(300.0,), gradients_km=(0.0,), dvs=(0.01, 0.03, 0.06), draws=12,
                           false_alarm_draws=2)
    curves, d90 = {}, {}
    for n_rf in (15, 90):
        norm, p = _station(base, n_rf, 8.0, seed=11)
        ds = D.station_detectability(norm, t, p, distance_for_slowness(p, CFG["earth_model"]), k[1:2], base, grid,
                                     model, CFG["stacking"])
        curves[n_rf], d90[n_rf] = ds["detection_stacking"].values[0, 0], float(ds["dvs90_stacking"])
    few, many = curves[15], curves[90]
    assert np.all(many >= few - 2 * np.sqrt(0.25 / grid.draws))   # never lower beyond two standard errors
    assert many[1] > few[1] or many[2] > few[2]                   # and higher where it is not already saturated
    assert np.isfinite(d90[90]) and (np.isnan(d90[15]) or d90[90] <= d90[15])


def test_dvs90():
    assert D.dvs90([0.1, 0.95, 1.0], (0.01, 0.03, 0.06), 0.9) == 0.03
    assert D.dvs90([0.95, 0.5, 0.95], (0.01, 0.03, 0.06), 0.9) == 0.06   # every larger dVs must hold too
    assert np.isnan(D.dvs90([0.1, 0.5, 0.8], (0.01, 0.03, 0.06), 0.9))
    assert D.dvs90([0.9, 0.9, 1.0], (0.01, 0.03, 0.06), 0.9) == 0.01


def test_false_alarm_draws_take_no_x_structures_of_a_synthetic_set(model, kernels, tmp_path):
    from xdisc.core.artifacts import write_netcdf
    from xdisc.synth.synthetics import make_dataset

    cfg = cfgmod.validate({"synthetics": {"n_samples": 8, "slowness_s_per_km": [0.04, 0.06, 0.08],
                                          "noise": {"enabled": False}},
                           "images": {"n_slowness_bins": 3, "slowness_range_s_per_km": [0.03, 0.09]}})
    path = write_netcdf(make_dataset(cfg), tmp_path / "test.nc")
    rf_q, p_q = D.quiet_structures(path, 3, seed=1)
    labels = xr.open_dataset(path)["label"].values
    assert rf_q.shape == (3, 3, RFSettings(**CFG["receiver_function"]).time_axis().size)
    assert (labels == 0).sum() >= 3 and list(p_q) == [0.04, 0.06, 0.08]
    t = RFSettings(**CFG["receiver_function"]).time_axis()
    np.testing.assert_allclose(direct_p(rf_q, t)[0], 1.0)  # each divided by its direct P
    k, base = kernels
    norm, p = _station(base, 30, 15.0, seed=9)
    ds = D.station_detectability(norm, t, p, distance_for_slowness(p, CFG["earth_model"]), k[1:2], base, SMALL,
                                 model, CFG["stacking"], quiet=(rf_q, p_q))
    assert np.isfinite(float(ds["false_alarm_rate_stacking"]))


def test_station_file_round_trip_and_figure(model, kernels, tmp_path):
    from matplotlib.image import imread
    from xdisc.core.artifacts import write_netcdf
    from xdisc.report.ml_figures import plot_detectability, read_detectability_curves

    k, base = kernels
    t = RFSettings(**CFG["receiver_function"]).time_axis()
    norm, p = _station(base, 30, 20.0, seed=2)
    ds = D.station_detectability(norm, t, p, distance_for_slowness(p, CFG["earth_model"]), k[1:2], base, SMALL,
                                 model, CFG["stacking"], station={"network": "XX", "station": "S1", "latitude": 1.0,
                                                                   "longitude": 2.0})
    path = write_netcdf(ds, tmp_path / "XX.S1.nc")
    rows = D.table_rows([path])
    assert rows[0]["station"] == "XX.S1" and rows[0]["n_rf"] == 30
    assert rows[0]["dvs90_stacking"] == pytest.approx(float(ds["dvs90_stacking"]), nan_ok=True)
    assert np.isnan(rows[0]["dvs90_cnn"])  # no CNN given
    assert rows[0]["detectability_note"] in (("",) if np.isfinite(rows[0]["dvs90_stacking"]) else (
        "stacking: not even 6% is seen in 90% of the draws",
        "stacking: not even 6% is seen in 90% of the draws, and it is called absent in more than 10%"))
    assert rows[0]["detectability_note"].endswith("10%") == np.isnan(rows[0]["excluded_dvs_stacking"])
    # both methods without a dvs90: both named
    both = ds.copy()
    both["detection_cnn"], both["dvs90_cnn"] = both["detection_stacking"], both["dvs90_stacking"] * np.nan
    both["not_absent_cnn"] = both["not_absent_stacking"]
    both["excluded_dvs_cnn"] = both["excluded_dvs_stacking"] = ((), 0.05)  # 5 % ruled out: no second note
    both["dvs90_stacking"] = both["dvs90_stacking"] * np.nan
    both["false_alarm_rate_cnn"] = both["false_alarm_rate_stacking"]
    (row,) = D.table_rows([write_netcdf(both, tmp_path / "XX.S2.nc")])
    assert row["detectability_note"] == ("stacking: not even 6% is seen in 90% of the draws; "
                                         "cnn: not even 6% is seen in 90% of the draws")
    curves = read_detectability_curves([path])
    np.testing.assert_allclose(curves[0]["detection_stacking"], ds["detection_stacking"].values[0, 0])
    png = plot_detectability(curves, tmp_path / "d.png")
    assert imread(png).shape[1] > 1000


def test_cnn_judge_checks_present_first_and_keeps_x_above_its_absent_threshold():
    judge = D.CNNJudge(None, None, None, present_threshold=0.9, absent_threshold=0.3)
    present, kept = judge.verdicts(np.array([0.95, 0.5, 0.3, 0.1]))
    assert present.tolist() == [True, False, False, False] and kept.tolist() == [True, True, False, False]
    crossed = D.CNNJudge(None, None, None, present_threshold=0.9, absent_threshold=0.99)  # as calibrate can set
    assert crossed.verdicts(np.array([0.95, 0.5]))[1].tolist() == [True, False]


def test_an_absent_rules_out_what_its_draws_would_not_call_absent(model, kernels, tmp_path):
    """The excluded dVs: the draws whose verdict is not absent include those called present, so it is never
    above dvs90; the shipped CNN with an absent threshold below its present one keeps at least the X it finds,
    and with no absent threshold (nothing called absent) it rules out every X of the grid."""
    from xdisc.cnn import shipped
    from xdisc.cnn.images import DepthMapper, ImageSettings
    from xdisc.core.artifacts import write_netcdf

    k, base = kernels
    t = RFSettings(**CFG["receiver_function"]).time_axis()
    norm, p = _station(base, 30, 5.0, seed=3)
    settings = ImageSettings.from_config(CFG["images"])
    module = D._load_module(str(shipped.CHECKPOINT), shipped.CHECKPOINT.stat().st_mtime_ns)
    out = {}
    for absent in (0.2, -np.inf):
        judge = D.CNNJudge(module, settings, DepthMapper(model, settings.depths_km), 0.9, 10, absent)
        ds = D.station_detectability(norm, t, p, distance_for_slowness(p, CFG["earth_model"]), k[1:2], base, SMALL,
                                     model, CFG["stacking"], judge)
        for m in D.METHODS:
            assert np.all(ds[f"not_absent_{m}"].values >= ds[f"detection_{m}"].values)
            if np.isfinite(float(ds[f"dvs90_{m}"])):
                assert float(ds[f"excluded_dvs_{m}"]) <= float(ds[f"dvs90_{m}"])
        out[absent] = ds
    assert out[-np.inf]["not_absent_cnn"].values.min() == 1.0 and float(out[-np.inf]["excluded_dvs_cnn"]) == 0.01
    (row,) = D.table_rows([write_netcdf(out[0.2], tmp_path / "XX.SYN.nc")])
    assert row["excluded_dvs_cnn"] == pytest.approx(float(out[0.2]["excluded_dvs_cnn"]), nan_ok=True)
    assert set(D.COLUMNS) <= set(row)


def test_a_station_file_of_an_earlier_version_keeps_its_rule(model, kernels, tmp_path):
    """Files written before the excluded dVs (no not_absent curves): dvs90 stands in for it, and the note
    says so, so that collecting old files does not turn every absent into not detectable."""
    from xdisc.core.artifacts import write_netcdf

    k, base = kernels
    t = RFSettings(**CFG["receiver_function"]).time_axis()
    norm, p = _station(base, 30, 20.0, seed=2)
    ds = D.station_detectability(norm, t, p, distance_for_slowness(p, CFG["earth_model"]), k[1:2], base, SMALL,
                                 model, CFG["stacking"])
    old = ds.drop_vars(["not_absent_stacking", "excluded_dvs_stacking"])
    (row,) = D.table_rows([write_netcdf(old, tmp_path / "XX.OLD.nc")])
    assert row["excluded_dvs_stacking"] == pytest.approx(float(ds["dvs90_stacking"]), nan_ok=True)
    assert "stacking: excluded dVs not computed (file of an earlier xdisc): dvs90 used" in row["detectability_note"]
