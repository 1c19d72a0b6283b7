"""Receiver functions of real data (the rf package's example: CX.PB01, Chile, 2011).

Oracles: the rf package's deconvolutions on the same pre-processed traces; obspy.taup and
obspy.geodetics for slowness and back azimuth; a synthetic RF convolved back into Z/R.
"""

import re

import numpy as np
import pytest
from obspy import read, read_events, read_inventory
from obspy.geodetics import gps2dist_azimuth, locations2degrees
from obspy.taup import TauPyModel
from xdisc import config as cfgmod
from xdisc.core.deconvolution import RFSettings, deconvolve
from xdisc.data.download import download_station, embedded_paths, get_events, get_stations, station_rows
from xdisc.data.events import event_id
from xdisc.data.receiver_functions import _grid, compute_station, event_table, load_items, prepare_event

CONFIG = {"rf_processing": {"response": "gain"}}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    cfg = cfgmod.validate(CONFIG)
    d = cfg["data"]
    events = get_events(d)
    inv, providers = get_stations(d)
    station = station_rows(inv, providers)[0]
    tmp = tmp_path_factory.mktemp("embedded")
    got = download_station(events, station, d, tmp / "w", tmp / "m.csv")
    items = load_items(tmp / "m.csv", tmp / "w")
    return dict(cfg=cfg, events=events, inv=inv, station=station, skipped=got.skipped, summary=got.summary,
                items=items, meta=event_table(events))


def _compute(e, items=None, cfg=None):
    cfg = cfg or e["cfg"]
    return compute_station(items or e["items"], e["inv"], e["station"], RFSettings(**cfg["receiver_function"]),
                           cfg["rf_processing"], cfg["earth_model"], e["meta"])


def test_embedded_data_gives_positive_direct_p(embedded):
    assert embedded["summary"].ok == 7 and len(embedded["skipped"]) == 6  # 6 events beyond 90 deg
    ds = _compute(embedded)
    assert ds.sizes["event"] == 7
    ok = ds["qc_pass"].values == 1
    assert ok.sum() >= 3
    assert np.all(ds["p_amplitude"].values[ok] > 0.15)
    assert np.all(np.abs(ds["p_offset_s"].values[ok]) <= 0.3)
    assert np.all(ds["fit_percent"].values[ok] > 60)
    assert all(r == "" for r in ds["rejection_reason"].values[ok])
    assert all(r for r in ds["rejection_reason"].values[~ok])


def test_slowness_and_back_azimuth_match_obspy(embedded):
    ds = _compute(embedded)
    taup = TauPyModel("ak135")
    sta = embedded["station"]
    by_id = {event_id(e): e for e in embedded["events"]}
    for i, eid in enumerate(ds["event"].values):
        o = by_id[eid].preferred_origin() or by_id[eid].origins[0]
        dist = locations2degrees(o.latitude, o.longitude, sta["latitude"], sta["longitude"])
        _, _, baz = gps2dist_azimuth(o.latitude, o.longitude, sta["latitude"], sta["longitude"])
        arrival = taup.get_travel_times_geo(o.depth / 1000.0, o.latitude, o.longitude, sta["latitude"],
                                            sta["longitude"], ["P"])[0]
        p = arrival.ray_param_sec_degree / (6371.0 * np.pi / 180.0)
        assert ds["distance_deg"].values[i] == pytest.approx(dist, abs=0.01)
        assert ds["back_azimuth_deg"].values[i] == pytest.approx(baz, abs=0.05)
        assert ds["slowness_s_per_km"].values[i] == pytest.approx(p, rel=1e-3)


@pytest.mark.parametrize("method", ["iterative", "waterlevel"])
def test_deconvolution_matches_rf_package_on_real_data(embedded, method):
    from rf.deconvolve import deconv_iterative, deconv_waterlevel

    cfg = cfgmod.validate({**CONFIG, "receiver_function": {"deconvolution": method}})
    rf = RFSettings(**cfg["receiver_function"])
    proc = cfg["rf_processing"]
    ds = _compute(embedded, cfg=cfg)
    grid = _grid(proc["source_window_s"], rf.dt)
    start = int(np.argmin(np.abs(grid + rf.time_before_p_s)))
    n_out = ds.sizes["time"]
    compared = 0
    for i, (row, stream) in enumerate(embedded["items"]):
        if ds["rejection_reason"].values[i].startswith(("gap", "missing")):
            continue
        row = dict(row, incidence_deg=np.nan)
        prep = prepare_event(stream, embedded["inv"], row, rf, proc)
        z, r = prep.z[start:], prep.r[start:]
        taper = np.ones(grid.size)
        m = round(5.0 / rf.dt)
        taper[:m] = taper[-m:][::-1] = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
        z = (prep.z * taper)[start:]
        r = (prep.r * taper)[start:]
        if method == "iterative":
            theirs = deconv_iterative([r], z, rf.sampling_rate_hz, tshift=rf.time_before_p_s,
                                      gauss=rf.gaussian_width_hz,
                                      itmax=rf.max_iterations, minderr=rf.min_fit_change_percent, normalize=None)[0][0]
        else:
            theirs = np.real(deconv_waterlevel([r], z, rf.sampling_rate_hz, waterlevel=rf.water_level,
                                               gauss=rf.gaussian_width_hz, tshift=rf.time_before_p_s,
                                               normalize=None)[0])
        ours = ds["rf"].values[i]
        c = np.corrcoef(ours, theirs[:n_out])[0, 1]
        assert c >= 0.99, f"{method} event {row['event_id']}: correlation {c:.4f}"
        compared += 1
    assert compared == 7


def test_synthetic_rf_survives_convolution_and_deconvolution(embedded):
    """Synthetic R, Z (xdisc propagator) convolved with a real P wavelet and deconvolved -> the input RF."""
    from xdisc.core.earthmodel import load_model
    from xdisc.synth.synthetics import Layering, receiver_functions, response_spectra

    cfg = embedded["cfg"]
    rf = RFSettings(**cfg["receiver_function"])
    stack = Layering(**cfg["layering"]).apply(load_model("ak135"))
    expected = receiver_functions([stack], [0.06], rf)[0, 0]
    r_spec, z_spec, nfft = response_spectra([stack], np.array([0.06]), rf, 409.6)
    # a real source wavelet: the vertical P coda of the best event, 0-60 s after P
    ds = _compute(embedded)
    best = int(np.nanargmax(ds["snr_z"].values))
    prep = prepare_event(embedded["items"][best][1], embedded["inv"], dict(embedded["items"][best][0],
                         incidence_deg=np.nan), rf, cfg["rf_processing"])
    grid = _grid(cfg["rf_processing"]["source_window_s"], rf.dt)
    wavelet = prep.z[(grid >= -2) & (grid < 60)]
    freqs = np.fft.rfftfreq(nfft, rf.dt)
    delay = np.exp(-2j * np.pi * freqs * (rf.time_before_p_s + 2.0))
    w = np.fft.rfft(wavelet, nfft)
    z = np.fft.irfft(z_spec[0, 0] * w * delay, nfft)[:grid.size]
    r = np.fft.irfft(r_spec[0, 0] * w * delay, nfft)[:grid.size]
    got = deconvolve(z, r, rf.dt, rf.deconvolution, rf.gaussian_width_hz, time_before_p_s=rf.time_before_p_s,
                     n_out=expected.size).rf
    assert np.corrcoef(got, expected)[0, 1] >= 0.99


def _stream_of(embedded, i):
    return embedded["items"][i][1].copy()


def test_bad_windows_rejected_with_reason_others_kept(embedded):
    items = [(row, st.copy()) for row, st in embedded["items"]]
    gap = items[0][1]
    tr = gap.select(component="N")[0]
    cut1, cut2 = tr.copy(), tr.copy()
    cut1.trim(tr.stats.starttime, tr.stats.starttime + 100)
    cut2.trim(tr.stats.starttime + 130, tr.stats.endtime)
    gap.remove(tr)
    gap += cut1
    gap += cut2
    items[1][1].remove(items[1][1].select(component="E")[0])           # missing component
    items[2][1].select(component="Z")[0].data = items[2][1].select(component="Z")[0].data.astype(float)
    items[2][1].select(component="Z")[0].data[500] = np.nan           # NaN
    for tr in items[3][1]:
        tr.decimate(5, no_filter=True)                                 # 1 Hz: too coarse for the band
    items[4] = (items[4][0], RuntimeError("cannot read 20110430T081916.mseed: truncated"))
    ds = _compute(embedded, items=items)
    reasons = list(ds["rejection_reason"].values)
    assert reasons[0].startswith("gap of")
    assert reasons[1].startswith("missing component")
    assert reasons[2].startswith("NaN")
    assert "sampling rate 1.0 Hz too low" in reasons[3]
    assert "truncated" in reasons[4]
    assert ds.sizes["event"] == 7 and np.all(np.isnan(ds["rf"].values[:5]))
    good = _compute(embedded)
    np.testing.assert_allclose(ds["rf"].values[5:], good["rf"].values[5:], rtol=1e-6, atol=1e-9)


def test_lqt_rotation(embedded):
    cfg = cfgmod.validate({"rf_processing": {"response": "gain", "rotation": "LQT"}})
    ds = _compute(embedded, cfg=cfg)
    ok = ds["qc_pass"].values == 1
    assert ok.sum() >= 2 and np.all(ds["p_amplitude"].values[ok] > 0)
    # Q removes most of the direct P that R carries
    zrt = _compute(embedded)
    both = ok & (zrt["qc_pass"].values == 1)
    assert np.all(np.abs(ds["p_amplitude"].values[both]) < np.abs(zrt["p_amplitude"].values[both]))


def test_embedded_paths_are_real_data():
    p = embedded_paths()
    assert len(read(str(p["waveforms"]))) == 39
    assert len(read_events(str(p["events"]))) == 13
    assert read_inventory(str(p["inventory"]))[0][0].code == "PB01"


def test_most_events_failing_snr_gives_a_prefilter_hint(embedded, tmp_path):
    """When most of a station's events fail the SNR test, the file (and the log, the stacking table and the
    station figure) say what to try: a narrower rf_processing.prefilter_hz."""
    from xdisc.core.artifacts import write_netcdf
    from xdisc.stack.stacking import stack_file, verdict_row

    ds = _compute(embedded)
    # CX.PB01: 4 of its 7 events fail min_snr_z 2 with the default band; a low corner of 0.2 Hz keeps 5 of 7
    assert ds.attrs["qc_note"].startswith("4 of 7 events fail the SNR test")
    strict = cfgmod.validate({**CONFIG, "rf_processing": {**CONFIG["rf_processing"], "min_snr_z": 1000.0}})
    ds = _compute(embedded, cfg=strict)
    assert ds.attrs["qc_note"].startswith("7 of 7 events fail the SNR test")
    assert "rf_processing.prefilter_hz (now [0.03, 2] Hz" in ds.attrs["qc_note"]
    write_netcdf(ds, tmp_path / "rf.nc")
    row = verdict_row(stack_file(tmp_path / "rf.nc", strict))
    assert row["verdict"] == "undetermined"
    assert row["reason"].startswith("0 receiver functions <") and "prefilter_hz" in row["reason"]


@pytest.mark.parametrize("phase", ["zero", "causal"])
def test_bandpass_matches_obspy_filter(phase):
    """The one-FFT band-pass of the pre-processing against ObsPy's Trace.filter on the same samples:
    'causal' is ObsPy's (and the rf package's) default one-pass filter, 'zero' its zerophase=True."""
    from obspy import Trace
    from xdisc.data.receiver_functions import bandpass_response

    rate, n, band = 20.0, 4000, (0.03, 2.0)
    rng = np.random.default_rng(3)
    x = np.zeros(n)
    x[1000:3000] = rng.standard_normal(2000) * np.hanning(2000)     # quiet ends: no wrap-around
    n_fft = 4 * n
    f = np.fft.rfftfreq(n_fft, 1 / rate)
    ours = np.fft.irfft(np.fft.rfft(x, n_fft) * bandpass_response(f, band, rate, phase), n_fft)[:n]
    tr = Trace(x.copy(), header={"sampling_rate": rate})
    tr.filter("bandpass", freqmin=band[0], freqmax=band[1], corners=4, zerophase=phase == "zero")
    inner = slice(500, n - 500) if phase == "zero" else slice(0, n)   # zero-phase: ObsPy's edges differ
    assert np.max(np.abs(ours[inner] - tr.data[inner])) < 1e-3 * np.max(np.abs(tr.data))


# ----------------------------------------------------------------------------- archives the project did not write


def _second_sensor(stream, location: str, drop: str = "", scale: float = 1.0):
    """A copy of ``stream`` as another sensor at ``location`` (samples times ``scale``), without ``drop``."""
    out = stream.copy()
    for tr in out:
        tr.stats.location = location
        tr.data = tr.data * scale
    for tr in out.select(component=drop) if drop else []:
        out.remove(tr)
    return out


def _rf_of(embedded, items, inv=None):
    return compute_station(items, inv or embedded["inv"], embedded["station"],
                           RFSettings(**embedded["cfg"]["receiver_function"]), embedded["cfg"]["rf_processing"],
                           embedded["cfg"]["earth_model"], embedded["meta"])


def test_a_window_with_two_sensors_takes_one_whole_sensor(embedded):
    """Two location codes in one window (or BH? beside HH?): the three components come from one sensor,
    the first complete one, never a mix (the components used to be keyed by their last letter only)."""
    import copy

    inv = embedded["inv"].copy()
    sta = inv[0][0]
    extra = [copy.deepcopy(c) for c in sta.channels]
    for c in extra:
        c.location_code = "10"
    sta.channels += extra
    items = [(row, st.copy()) for row, st in embedded["items"]]
    s0, s1, s2 = (items[i][1] for i in range(3))
    items[0] = (items[0][0], s0 + _second_sensor(s0, "10", drop="E", scale=3.0))  # "10" incomplete: "" whole
    items[1] = (items[1][0], _second_sensor(s1, "", drop="E") + _second_sensor(s1, "10"))  # "" incomplete: "10"
    items[2] = (items[2][0], _second_sensor(s2, "", drop="E") + _second_sensor(s2, "10", drop="N"))
    ds = _rf_of(embedded, items, inv)
    good = _rf_of(embedded, embedded["items"])
    np.testing.assert_allclose(ds["rf"].values[:2], good["rf"].values[:2], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ds["rf"].values[3:], good["rf"].values[3:], rtol=1e-6, atol=1e-9)
    reason = str(ds["rejection_reason"].values[2])
    assert "--.BH: missing component(s): have NZ" in reason and "10.BH: missing component(s): have EZ" in reason


def test_the_sensor_order_follows_the_configured_patterns_and_is_recorded(embedded):
    """Where a window holds two complete sensors, the one the ``data.stations`` patterns name first is used
    (channel patterns, then location patterns; without a preference '' before '10' and BH before HH), and
    ``channels`` records the trace ids of every receiver function."""
    import copy

    inv = embedded["inv"].copy()
    sta = inv[0][0]
    extra = []
    for c in sta.channels:
        for loc, band in (("10", "BH"), ("", "HH")):
            e = copy.deepcopy(c)
            e.location_code, e.code = loc, band + c.code[2:]
            extra.append(e)
    sta.channels += extra
    items = []
    for row, st in embedded["items"][:3]:
        hh = st.copy()
        for tr in hh:
            tr.stats.channel = "HH" + tr.stats.channel[2:]
        items.append((row, st + _second_sensor(st, "10", scale=2.0) + hh))
    cfg = embedded["cfg"]

    def used(order):
        ds = compute_station(items, inv, embedded["station"], RFSettings(**cfg["receiver_function"]),
                             cfg["rf_processing"], cfg["earth_model"], embedded["meta"], sensor_order=order)
        return {str(c) for c in ds["channels"].values}

    assert used(()) == used(("BH?,HH?", "*")) == {"CX.PB01..BHZ,CX.PB01..BHN,CX.PB01..BHE"}
    assert used(("BH?,HH?", "10,*")) == {"CX.PB01.10.BHZ,CX.PB01.10.BHN,CX.PB01.10.BHE"}
    assert used(("HH?,BH?", "*")) == {"CX.PB01..HHZ,CX.PB01..HHN,CX.PB01..HHE"}
    assert used(("BH?", "--")) == {"CX.PB01..BHZ,CX.PB01..BHN,CX.PB01..BHE"}
    ds = _rf_of(embedded, [embedded["items"][0], (embedded["items"][1][0], Exception("cannot read x.mseed"))])
    assert [str(c) for c in ds["channels"].values] == ["CX.PB01..BHZ,CX.PB01..BHN,CX.PB01..BHE", ""]


def test_overlaps_merge_when_samples_agree_and_reject_when_they_conflict(embedded):
    items = [(row, st.copy()) for row, st in embedded["items"]]
    for i, conflict in ((3, False), (4, True)):
        st = items[i][1]
        tr = st.select(component="N")[0]
        a = tr.slice(tr.stats.starttime, tr.stats.starttime + 100)
        b = tr.slice(tr.stats.starttime + 97, tr.stats.endtime).copy()
        if conflict:
            b.data = b.data.astype(float)
            b.data[:20] += 1000.0
        st.remove(tr)
        st += a
        st += b
    ds = _rf_of(embedded, items)
    good = _rf_of(embedded, embedded["items"])
    np.testing.assert_allclose(ds["rf"].values[3], good["rf"].values[3], rtol=1e-6, atol=1e-9)
    reason = str(ds["rejection_reason"].values[4])
    assert re.match(r"overlap of 3\.\d s with conflicting samples in CX\.PB01\.\.BHN", reason)
    assert np.all(np.isnan(ds["rf"].values[4]))


def test_an_inventory_without_azimuth_and_dip_takes_the_seed_orientation(embedded, caplog):
    inv = embedded["inv"].copy()
    for c in inv[0][0].channels:
        c.azimuth, c.dip = None, None
    ds = _rf_of(embedded, embedded["items"], inv)
    good = _rf_of(embedded, embedded["items"])
    np.testing.assert_allclose(ds["rf"].values, good["rf"].values, rtol=1e-6, atol=1e-9)
    assert "CX.PB01..BHZ: the inventory gives no azimuth or dip; taking 0/-90" in caplog.text


def test_a_window_outside_the_channel_epochs_says_so(embedded):
    from obspy import UTCDateTime

    inv = embedded["inv"].copy()
    for c in inv[0][0].channels:
        c.end_date = UTCDateTime(2010, 1, 1)
    ds = _rf_of(embedded, embedded["items"], inv)
    reason = str(ds["rejection_reason"].values[0])
    assert reason.startswith("no orientation for CX.PB01..BH")
    assert "the inventory has no epoch of this channel at 2011-" in reason
