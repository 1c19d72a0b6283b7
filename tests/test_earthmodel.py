"""Earth models: reading TauP's files and user files, perturbations, layering, flattening."""

import numpy as np
import pytest
from xdisc.core.earthmodel import (
    EARTH_RADIUS_KM,
    Discontinuity,
    EarthModel,
    discretize,
    insert_discontinuity,
    layer_crust,
    load_model,
    replace_crust,
)


@pytest.mark.parametrize("name, moho, expected", [
    ("ak135", 35.0, [20.0, 35.0, 210.0, 410.0, 660.0]),
    ("iasp91", 35.0, [20.0, 35.0, 210.0, 410.0, 660.0]),
    ("prem", 24.4, [15.0, 24.4, 220.0, 400.0, 670.0]),
])
def test_reference_models_from_taup_files(name, moho, expected):
    m = load_model(name)
    assert "obspy" in m.source and m.source.endswith((".tvel", ".nd"))
    disc = m.discontinuities_km()
    for d in expected:
        assert np.any(np.isclose(disc, d)), (name, d, disc[:8])
    assert m.moho_km() == pytest.approx(moho)


def test_one_sided_values_at_a_discontinuity():
    m = load_model("ak135")
    above, below = m.at(410.0, "above")[0], m.at(410.0, "below")[0]
    assert above[1] == pytest.approx(4.87) and below[1] == pytest.approx(5.08)
    mid = m.at(385.0)[0]
    assert mid[1] == pytest.approx(0.5 * (4.7830 + 4.87))


def test_user_model_files(tmp_path):
    nd = tmp_path / "region.nd"
    nd.write_text("0 6.0 3.5 2.7\n30 6.0 3.5 2.7\n30 8.0 4.5 3.3\nmantle\n800 10.0 5.6 3.9\n")
    tvel = tmp_path / "region.tvel"
    tvel.write_text("region - P\nregion - S\n0 6.0 3.5 2700\n30 6.0 3.5 2700\n30 8.0 4.5 3300\n800 10 5.6 3900\n")
    table = tmp_path / "region.csv"
    table.write_text("thickness_km,vp,vs,rho\n30,6.0,3.5,2.7\n770,8.0,4.5,3.3\n0,10,5.6,3.9\n")
    for path in (nd, tvel, table):
        m = load_model(path)
        assert m.name == "region"
        assert m.moho_km() == pytest.approx(30.0)
        assert m.at(10.0)[0] == pytest.approx([6.0, 3.5, 2.7])  # kg/m^3 read as g/cm^3


def test_bad_model_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.nd")
    bad = tmp_path / "bad.nd"
    bad.write_text("0 6.0 3.5 2.7\n30 six 3.5 2.7\n")
    with pytest.raises(ValueError, match=r"bad.nd:2"):
        load_model(bad)
    table = tmp_path / "bad.csv"  # header lines are skipped, a bad row after the first is an error
    table.write_text("layer table\nthickness_km,vp,vs,rho\n30,6.0,3.5,2.7\nthick,8.0,4.5,3.3\n0,10,5.6,3.9\n")
    with pytest.raises(ValueError, match=r"bad.csv:4: cannot read .* as thickness vp vs rho"):
        load_model(table)
    wrong = tmp_path / "model.xyz"
    wrong.write_text("0 1 2 3\n")
    with pytest.raises(ValueError, match="unknown format"):
        load_model(wrong)
    with pytest.raises(ValueError, match="unknown reference model"):
        load_model("ak136")
    with pytest.raises(ValueError, match="must not decrease"):
        EarthModel("x", [0, 20, 10], [6, 6, 6], [3, 3, 3], [2, 2, 2])


def test_replace_crust():
    m = replace_crust(load_model("ak135"), 50.0, 1.8, vp_scale=1.02, sediment_km=2.0)
    assert m.moho_km() == pytest.approx(50.0)
    crust = m.at(np.array([5.0, 30.0, 45.0]))
    np.testing.assert_allclose(crust[:, 1], crust[:, 0] / 1.8)
    assert m.at(1.0)[0, 1] == pytest.approx(1.5)  # sediment
    np.testing.assert_allclose(m.at(300.0), load_model("ak135").at(300.0))


def test_replace_crust_keeps_an_exact_moho_after_the_410_moved():
    """The stretched crust's last node lands on the new Moho exactly, so the Moho stays a
    discontinuity: PREM with a moved 410 and a 59.05 km crust once ended its crust one rounding
    step above the mantle's first node, and had no Moho (the mantle perturbation then failed)."""
    from xdisc.synth.synthetics import shift_discontinuity

    prem = shift_discontinuity(load_model("prem"), 410.0, -12.302439234808272)
    m = replace_crust(prem, 59.05184148842645, 1.8651779184909287, 0.978676387470579)
    assert m.moho_km() == 59.05184148842645


def _ps_delay(model, top_km: float, bottom_km: float, p: float = 0.06) -> float:
    """Ps - P delay (s) accumulated between two depths at slowness ``p`` (s/km), by midpoint sums."""
    z = np.linspace(top_km, bottom_km, 20001)
    mid = 0.5 * (z[1:] + z[:-1])
    vp, vs = model.at(mid)[:, 0], model.at(mid)[:, 1]
    return float(np.sum(np.diff(z) * (np.sqrt(1 / vs**2 - p**2) - np.sqrt(1 / vp**2 - p**2))))


def test_layer_crust_puts_a_conrad_into_the_crust_and_keeps_its_travel_times():
    """synthetics.crust.conrad_fraction: the crystalline crust becomes two layers, the Conrad at the fraction
    of its thickness below the sediment, the lower crust's vp the ratio times the upper's, vp/vs kept; the
    crust's vertical P and S times stay (so the Moho's Ps delay does, within 0.1 % at slowness 0.06);
    sediment and mantle untouched. Checked against the xdisc propagator's receiver functions below."""
    ref = replace_crust(load_model("ak135"), 45.0, 1.75, 1.0, sediment_km=2.0)
    m = layer_crust(ref, 0.4, 1.15, 2.0)
    conrad = 2.0 + 0.4 * 43.0
    assert m.moho_km() == pytest.approx(45.0)
    assert conrad in m.discontinuities_km()
    upper, lower = m.at(conrad, "above")[0], m.at(conrad, "below")[0]
    assert lower[0] / upper[0] == pytest.approx(1.15)
    assert upper[0] / upper[1] == pytest.approx(1.75) and lower[0] / lower[1] == pytest.approx(1.75)
    np.testing.assert_allclose(m.at(1.0), ref.at(1.0))  # the sediment
    np.testing.assert_allclose(m.at([45.0, 300.0], "below"), ref.at([45.0, 300.0], "below"))  # the mantle
    for k in (0, 1):
        z = np.linspace(2.0, 45.0, 40001)[1:-1]
        assert np.mean(1 / m.at(z)[:, k]) == pytest.approx(np.mean(1 / ref.at(z)[:, k]), rel=1e-4)
    assert _ps_delay(m, 0.0, 45.0) == pytest.approx(_ps_delay(ref, 0.0, 45.0), rel=1e-3)
    assert _ps_delay(m, 0.0, 300.0) == pytest.approx(_ps_delay(ref, 0.0, 300.0), rel=1e-3)
    with pytest.raises(ValueError, match="conrad_fraction"):
        layer_crust(ref, 1.0, 1.1)
    with pytest.raises(ValueError, match="above the Moho"):
        layer_crust(ref, 0.5, 1.1, sediment_km=50.0)


def test_a_layered_crust_converts_at_its_conrad_and_keeps_the_moho_ps_time():
    """The receiver functions of the layered crust (xdisc's propagator, a code apart from layer_crust) carry a
    positive Conrad Ps at the delay of the ray-theory sum, which the stretched reference crust lacks there,
    and the Moho Ps at the reference crust's time (within a sample)."""
    from xdisc.core.deconvolution import RFSettings
    from xdisc.synth import synthetics as syn

    rf = RFSettings(gaussian_width_hz=2.5, deconvolution="waterlevel", water_level=1e-4)
    ref = replace_crust(load_model("iasp91"), 40.0, 1.75)
    m = layer_crust(ref, 0.3, 1.18)  # the Conrad at 12 km; the reference crust's lies at 22.9 km
    layering = syn.Layering()
    x = syn.receiver_functions([layering.apply(ref), layering.apply(m)], [0.06], rf, 409.6)[:, 0]
    t = rf.time_axis()
    t_conrad = _ps_delay(m, 0.0, 12.0)
    near = np.abs(t - t_conrad) < 0.3
    assert x[1][near].max() > 0.05 and x[1][near].max() > 3 * abs(x[0][near]).max()
    moho = (t > 3.0) & (t < 7.0)
    assert abs(t[moho][np.argmax(x[1][moho])] - t[moho][np.argmax(x[0][moho])]) <= rf.dt + 1e-9
    assert abs(t[moho][np.argmax(x[1][moho])] - _ps_delay(m, 0.0, 40.0)) < 0.15


def test_x_styles_and_the_410():
    ak = load_model("ak135")
    def jump(m, d):
        return m.at(d, "below")[0, 1] - m.at(d, "above")[0, 1]

    taper = insert_discontinuity(ak, Discontinuity(300.0, 0.03, 0.015, 0.01, style="taper"))
    const = insert_discontinuity(ak, Discontinuity(300.0, 0.03, 0.015, 0.01, style="constant"))
    layer = insert_discontinuity(ak, Discontinuity(300.0, 0.03, 0.015, 0.01, style="layer", thickness_km=40))
    for m in (taper, const, layer):
        assert jump(m, 300.0) == pytest.approx(0.03 * ak.at(300.0)[0, 1], rel=1e-6)
    assert jump(taper, 410.0) == pytest.approx(jump(ak, 410.0))
    assert jump(const, 410.0) == pytest.approx(jump(ak, 410.0) - 0.03 * ak.at(410.0, "above")[0, 1])
    assert jump(layer, 340.0) == pytest.approx(-0.03 * ak.at(340.0)[0, 1], rel=1e-6)
    grad = insert_discontinuity(ak, Discontinuity(300.0, 0.03, 0.015, 0.01, gradient_km=20.0))
    assert jump(grad, 300.0) == 0.0
    assert grad.at(320.0)[0, 1] == pytest.approx(1.03 * ak.at(320.0)[0, 1], rel=1e-3)


def test_discretize_flattening_and_layer_budget():
    m = load_model("ak135")
    stack = discretize(m, 700.0, 10.0, 0.005, flatten=True)
    flattened = EARTH_RADIUS_KM * np.log(EARTH_RADIUS_KM / (EARTH_RADIUS_KM - 700))
    assert stack.thickness_km[:-1].sum() == pytest.approx(flattened)
    # flattened velocity at the half-space = v R / r
    assert stack.vs_km_s[-1] == pytest.approx(m.at(700.0)[0, 1] * EARTH_RADIUS_KM / (EARTH_RADIUS_KM - 700))
    flat = discretize(m, 700.0, 10.0, 0.005, flatten=False)
    assert flat.thickness_km[:-1].sum() == pytest.approx(700.0)
    assert flat.vp_km_s[0] == pytest.approx(5.8)  # identical 0-20 km sub-layers were merged
    assert flat.thickness_km[0] == pytest.approx(20.0)
    coarse = discretize(m, 700.0, 50.0, 0.05)
    assert coarse.n_layers < stack.n_layers < 120
    with pytest.raises(ValueError, match="outside the model"):
        discretize(m, 7000.0)
