"""The loopback FDSN stack of tests/fdsn_servers.py, driven by ObsPy's real FDSN client.

What an ObsPy 1.5 client sees for each injected fault (pinned here, for the downloader's error handling):
  "500"      -> FDSNInternalServerException        "503"   -> FDSNServiceUnavailableException
  "204"      -> FDSNNoDataException                "slow"  -> FDSNTimeoutException (Client(timeout=...))
  "truncate" -> http.client.IncompleteRead, raised raw by ObsPy (an HTTPException, *not* an FDSNException)
  "close"    -> FDSNException itself ("Unknown Error (RemoteDisconnected): ...")
"""

import http.client
import threading
import time
import urllib.error
import urllib.request

import fdsn_servers
import numpy as np
import obspy
import pytest
from fdsn_servers import rf_example_stack
from obspy import UTCDateTime
from obspy.clients.fdsn.header import (
    FDSNBadRequestException,
    FDSNException,
    FDSNInternalServerException,
    FDSNNoDataException,
    FDSNServiceUnavailableException,
    FDSNTimeoutException,
)

DATASELECT = "/fdsnws/dataselect/1/query"
STATION = "/fdsnws/station/1/query"
EVENT = "/fdsnws/event/1/query"
EVENT_TIME = UTCDateTime("2011-04-07T13:11:23.43")  # Mw 6.7 in rf's example catalog
# the example file holds 300-840 s after each origin; this window lies inside one index row
WINDOW = (EVENT_TIME + 360, EVENT_TIME + 540)


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory):
    stack = rf_example_stack(tmp_path_factory.mktemp("fdsn"))
    yield stack
    stack.stop()
    assert stack.dataselect.process.poll() is not None


@pytest.fixture
def stack(module_stack):
    module_stack.proxy.reset()
    yield module_stack
    assert module_stack.proxy.wait_idle(5.0)


def waveforms(client, window=WINDOW, channel="BH?", location="*"):
    return client.get_waveforms("CX", "PB01", location, channel, *window)


def from_file(stack, window=WINDOW, channel="BH?"):
    # the server ships the samples inside [start, end]; nearest_sample=False cuts the file the same way
    st = obspy.read(str(stack.mseed_path)).select(channel=channel)
    return st.trim(*window, nearest_sample=False).sort()


def assert_same_samples(got, expected):
    got, expected = got.copy().sort(), expected.copy().sort()
    assert [tr.id for tr in got] == [tr.id for tr in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.stats.starttime == b.stats.starttime
        assert a.stats.sampling_rate == b.stats.sampling_rate
        assert a.data.dtype == b.data.dtype
        np.testing.assert_array_equal(a.data, b.data)


def test_stations_at_each_level_through_the_proxy(stack):
    client = stack.client()
    inv = client.get_stations(network="CX", station="PB01", level="response")
    reference = obspy.read_inventory(str(stack.inventory_path)).select(network="CX", station="PB01")
    assert inv.get_contents()["channels"] == reference.get_contents()["channels"]
    assert len(inv.get_contents()["channels"]) == 3
    for channel, expected in zip(inv[0][0], reference[0][0], strict=True):
        assert channel.response.instrument_sensitivity.value == expected.response.instrument_sensitivity.value
    assert not client.get_stations(network="CX", level="station")[0][0].channels
    channels = client.get_stations(network="CX", station="PB01", channel="BHZ", level="channel")[0][0].channels
    assert [c.code for c in channels] == ["BHZ"] and channels[0].response is None
    assert [(r.path, r.query["level"], r.status) for r in stack.proxy.requests] == [
        (STATION, "response", 200), (STATION, "station", 200), (STATION, "channel", 200)]


def test_stations_as_the_mass_downloader_asks(stack):
    client = stack.client()
    t1, t2 = WINDOW
    text = client.get_stations(network="CX", starttime=t1, endtime=t2, level="channel", format="text",
                               matchtimeseries=True)
    assert sorted(text.get_contents()["channels"]) == ["CX.PB01..BHE", "CX.PB01..BHN", "CX.PB01..BHZ"]
    bulk = client.get_stations_bulk([("CX", "PB01", "", "BHZ", t1, t2), ("CX", "PB01", "", "BHN", t1, t2)],
                                    level="response")
    assert sorted(bulk.get_contents()["channels"]) == ["CX.PB01..BHN", "CX.PB01..BHZ"]
    post = stack.proxy.requests[-1]
    assert post.path == STATION and post.status == 200 and post.query["level"] == "response"
    assert post.query["bulk"].splitlines()[0].startswith("CX PB01 -- BHZ 2011-04-07T13:17:23")


def test_station_service_says_no_data_and_bad_request(stack):
    client = stack.client()
    with pytest.raises(FDSNNoDataException):
        client.get_stations(network="XX")
    with pytest.raises(FDSNNoDataException):  # CX.PB01 starts in 2006
        client.get_stations(network="CX", endtime=UTCDateTime(2005, 1, 1))
    with pytest.raises(FDSNBadRequestException, match="startbefore"):  # a standard parameter not implemented
        client.get_stations(network="CX", startbefore=UTCDateTime(2011, 1, 1))
    with pytest.raises(urllib.error.HTTPError) as unknown:  # ObsPy itself refuses unknown parameters
        urllib.request.urlopen(f"{stack.base_url}{STATION}?network=CX&colour=red", timeout=5)
    assert unknown.value.code == 400
    assert [r.status for r in stack.proxy.requests] == [204, 204, 400, 400]


def test_events_filtered_by_magnitude_and_time(stack):
    client = stack.client()
    catalog = obspy.read_events(str(stack.events_path))
    strong = client.get_events(minmagnitude=6.4)
    expected = [e for e in catalog if e.preferred_magnitude().mag >= 6.4]
    assert 0 < len(strong) < len(catalog)
    assert [str(e.resource_id) for e in strong] == [str(e.resource_id) for e in expected]  # time, newest first
    march = client.get_events(starttime=UTCDateTime(2011, 3, 1), endtime=UTCDateTime(2011, 4, 1),
                              orderby="time-asc", limit=2)
    assert [e.preferred_origin().time.date.isoformat() for e in march] == ["2011-03-01", "2011-03-06"]
    with pytest.raises(FDSNNoDataException):
        client.get_events(minmagnitude=8)
    assert [(r.path, r.status) for r in stack.proxy.requests] == [(EVENT, 200), (EVENT, 200), (EVENT, 204)]
    assert stack.proxy.requests[0].query == {"minmagnitude": "6.4"}


def test_waveforms_are_the_samples_in_the_file(stack):
    client = stack.client()
    st = waveforms(client)
    assert len(st) == 3 and all(tr.stats.npts == 900 for tr in st)  # 180 s at 5 Hz, every component
    assert_same_samples(st, from_file(stack))
    assert_same_samples(waveforms(client, channel="BHZ", location=""), from_file(stack, channel="BHZ"))
    with pytest.raises(FDSNNoDataException):  # answered by the real dataselect server
        waveforms(client, window=(UTCDateTime(2010, 1, 1), UTCDateTime(2010, 1, 2)))
    first = stack.proxy.requests[0]
    assert first.path == DATASELECT and first.status == 200
    assert first.query == {"network": "CX", "station": "PB01", "location": "*", "channel": "BH?",
                           "starttime": "2011-04-07T13:17:23.430000", "endtime": "2011-04-07T13:20:23.430000"}
    assert stack.proxy.requests[1].query["location"] == "--"
    assert [r.status for r in stack.proxy.requests] == [200, 200, 204]


FAULTS = {
    "500": FDSNInternalServerException,
    "503": FDSNServiceUnavailableException,
    "204": FDSNNoDataException,
    "slow": FDSNTimeoutException,
    "truncate": http.client.IncompleteRead,
    "close": FDSNException,
}


@pytest.mark.parametrize("kind", FAULTS)
def test_fault_is_seen_by_the_client_then_consumed(stack, kind):
    client = stack.client(timeout=0.4)
    stack.proxy.inject(kind, delay_s=1.0)
    with pytest.raises(FAULTS[kind]) as raised:
        waveforms(client)
    if kind == "close":
        assert type(raised.value) is FDSNException and "RemoteDisconnected" in str(raised.value)
    assert not stack.proxy.pending_faults
    assert_same_samples(waveforms(client), from_file(stack))  # the next request goes through
    assert stack.proxy.wait_idle(5.0)
    # "truncate" sent the real status; "slow" answered after the client had left (the write may fail or not)
    sent = {"500": [500], "503": [503], "204": [204], "truncate": [200], "close": [None], "slow": [None, 200]}
    first, second = stack.proxy.requests
    assert first.status in sent[kind] and second.status == 200
    assert first.path == second.path == DATASELECT and first.query == second.query
    assert stack.proxy.fired == [(kind, DATASELECT)]


def test_faults_are_taken_in_order_by_count_and_filter(stack):
    client = stack.client()
    stack.proxy.inject("503", count=2)
    stack.proxy.inject("500", query_contains="channel=BHZ")
    stack.proxy.inject("close", path_contains=None)  # any service
    stack.proxy.inject("204", path_contains="event")
    with pytest.raises(FDSNServiceUnavailableException):
        waveforms(client, channel="BHN")
    with pytest.raises(FDSNServiceUnavailableException):
        waveforms(client, channel="BHZ")
    with pytest.raises(FDSNException, match="RemoteDisconnected"):  # the first queued fault that matches BHN
        waveforms(client, channel="BHN")
    with pytest.raises(FDSNInternalServerException):
        waveforms(client, channel="BHZ")
    with pytest.raises(FDSNNoDataException):
        client.get_events()
    assert not stack.proxy.pending_faults
    assert client.get_events() and client.get_stations(network="CX") and waveforms(client, channel="BHZ")
    assert [(r.path, r.status) for r in stack.proxy.requests] == [
        (DATASELECT, 503), (DATASELECT, 503), (DATASELECT, None), (DATASELECT, 500),
        (EVENT, 204), (EVENT, 200), (STATION, 200), (DATASELECT, 200)]
    assert [kind for kind, _ in stack.proxy.fired] == ["503", "503", "close", "500", "204"]


def test_stack_stops_cleanly(tmp_path):
    before = set(threading.enumerate())
    stack = rf_example_stack(tmp_path)
    urls = [stack.base_url, stack.metadata.base_url, stack.dataselect.base_url]
    assert waveforms(stack.client(timeout=5), channel="BHZ")
    stack.proxy.inject("slow", delay_s=30.0)  # a handler still sleeping must not hold stop() up
    with pytest.raises(FDSNTimeoutException):
        waveforms(stack.client(timeout=0.2))
    started = time.monotonic()
    stack.stop()
    stack.stop()  # idempotent
    assert time.monotonic() - started < 3.0
    assert stack.dataselect.process.poll() is not None
    leftover = [t.name for t in set(threading.enumerate()) - before
                if t.is_alive() and t.name.startswith(fdsn_servers.THREAD_PREFIX)]
    assert leftover == []
    for url in urls:
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=1)


def test_dataselect_startup_errors_are_clear(tmp_path):
    not_mseed = tmp_path / "notes.mseed"
    not_mseed.write_text("not miniSEED\n")
    with pytest.raises(RuntimeError, match="mseedindex failed"):
        fdsn_servers.start_dataselect([not_mseed], tmp_path / "ds")
    with pytest.raises(FileNotFoundError):
        fdsn_servers.start_dataselect([tmp_path / "missing.mseed"], tmp_path / "ds")
    mseed = fdsn_servers.rf_example_paths()[0]
    with pytest.raises(RuntimeError, match=r"exited with code 1(.|\n)*maxsectiondays must be > 0"):
        fdsn_servers.start_dataselect([mseed], tmp_path / "ds", maxsectiondays=0)  # the server refuses it
