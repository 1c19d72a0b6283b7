"""The event and station filters of data.source local/embedded at their boundaries (no servers needed):
bounds are included, the preferred magnitude and origin decide, an event without magnitude is left out,
the station's coordinates (not its channels') decide the region."""

from __future__ import annotations

from obspy import UTCDateTime
from obspy.core.event import Catalog, Event, Magnitude, Origin, ResourceIdentifier
from obspy.core.inventory import Channel, Inventory, Network, Station
from xdisc.data.download import get_events, get_stations

T1, T2 = "2011-01-01", "2011-12-31"


def _event(name: str, time: str, mags, depth_m: float | None = 10e3, preferred: int | None = None) -> Event:
    origin = Origin(time=UTCDateTime(time), latitude=0.0, longitude=0.0, depth=depth_m)
    magnitudes = [Magnitude(mag=m, magnitude_type="mb") for m in mags]
    event = Event(resource_id=ResourceIdentifier(f"smi:test/{name}"), origins=[origin], magnitudes=magnitudes)
    event.preferred_origin_id = origin.resource_id
    if preferred is not None:
        event.preferred_magnitude_id = magnitudes[preferred].resource_id
    return event


def _data(tmp_path, catalog=None, inventory=None, region=None, **events) -> dict:
    events_path, inventory_path = tmp_path / "events.xml", tmp_path / "stations.xml"
    if catalog is not None:
        catalog.write(str(events_path), format="QUAKEML")
    if inventory is not None:
        inventory.write(str(inventory_path), format="STATIONXML")
    return {"source": "local", "local": {"events": str(events_path), "inventory": str(inventory_path)},
            "events": {"min_magnitude": 6.0, "max_magnitude": 7.0, "max_depth_km": 100.0, **events},
            "stations": {"network": "*", "station": "*", "location": "*", "channel": "BH?", "starttime": T1,
                         "endtime": T2, "region": region}}


def _names(catalog) -> list[str]:
    return sorted(str(e.resource_id).rpartition("/")[2] for e in catalog)


def test_event_bounds_are_included(tmp_path):
    cat = Catalog([
        _event("m_min", "2011-06-01", [6.0]), _event("m_max", "2011-06-01", [7.0]),
        _event("m_below", "2011-06-01", [5.99]), _event("m_above", "2011-06-01", [7.01]),
        _event("t_first", "2011-01-01T00:00:00", [6.5]), _event("t_last", "2011-12-31T00:00:00", [6.5]),
        _event("t_before", "2010-12-31T23:59:59.9", [6.5]), _event("t_after", "2011-12-31T00:00:00.1", [6.5]),
        _event("z_max", "2011-06-01", [6.5], depth_m=100e3), _event("z_below", "2011-06-01", [6.5], depth_m=100001.0),
        _event("z_unknown", "2011-06-01", [6.5], depth_m=None),
    ])
    got = _names(get_events(_data(tmp_path, catalog=cat)))
    assert got == ["m_max", "m_min", "t_first", "t_last", "z_max", "z_unknown"]


def test_an_event_without_magnitude_is_left_out(tmp_path):
    cat = Catalog([_event("none", "2011-06-01", []), _event("one", "2011-06-01", [6.5])])
    assert _names(get_events(_data(tmp_path, catalog=cat))) == ["one"]


def test_events_without_magnitude_value_or_origin_are_left_out_with_a_warning(tmp_path, caplog):
    """A magnitude element without a value, or an event without an origin, used to crash the filter
    (None compared with a number; origins[0] of an empty list): they are left out, and said so."""
    no_value = _event("no_value", "2011-06-01", [6.5])
    no_value.magnitudes[0].mag = None
    no_origin = Event(resource_id=ResourceIdentifier("smi:test/no_origin"), magnitudes=[Magnitude(mag=6.5)])
    cat = Catalog([no_value, no_origin, _event("good", "2011-06-01", [6.5])])
    with caplog.at_level("WARNING", logger="xdisc.data.download"):
        assert _names(get_events(_data(tmp_path, catalog=cat))) == ["good"]
    assert "2 of 3 event(s)" in caplog.text and "smi:test/no_value" in caplog.text


def test_the_preferred_magnitude_decides_not_the_first(tmp_path):
    # as FDSN event services do; obspy's Catalog.filter would judge magnitudes[0] (5.0 and 6.5) instead
    cat = Catalog([_event("mw_in", "2011-06-01", [5.0, 6.5], preferred=1),
                   _event("mw_out", "2011-06-01", [6.5, 5.0], preferred=1)])
    assert _names(get_events(_data(tmp_path, catalog=cat))) == ["mw_in"]


def test_embedded_events_with_every_bound_on_an_event(tmp_path):
    # the rf example catalogue; the event of 2011-04-18 (M 6.5, 98.1 km) sits on four bounds at once
    data = _data(tmp_path, min_magnitude=6.1, max_magnitude=6.5, max_depth_km=98.1)
    data["source"] = "embedded"
    data["stations"].update(starttime="2011-02-21T10:57:51.76", endtime="2011-04-18T13:03:04.36")
    got = sorted(str(e.preferred_origin().time) for e in get_events(data))
    assert got == ["2011-02-21T23:51:42.340000Z", "2011-03-01T00:53:45.350000Z", "2011-03-06T14:32:36.940000Z",
                   "2011-03-31T00:11:58.880000Z", "2011-04-18T13:03:04.360000Z"]


def _station(code: str, lat: float, lon: float, channel_lat: float | None = None) -> Station:
    cha = Channel("BHZ", "", latitude=lat if channel_lat is None else channel_lat, longitude=lon, elevation=0.0,
                  depth=0.0, sample_rate=20.0, start_date=UTCDateTime("2010-01-01"))
    return Station(code, latitude=lat, longitude=lon, elevation=0.0, channels=[cha],
                   start_date=UTCDateTime("2010-01-01"))


REGION = {"minlatitude": -30.0, "maxlatitude": -20.0, "minlongitude": -70.0, "maxlongitude": -60.0}


def test_station_region_bounds_are_included_and_the_station_coordinates_decide(tmp_path):
    inv = Inventory([Network("XX", stations=[
        _station("SW", -30.0, -70.0), _station("NE", -20.0, -60.0), _station("MID", -25.0, -65.0),
        _station("S", -30.001, -65.0), _station("N", -19.999, -65.0), _station("W", -25.0, -70.001),
        _station("E", -25.0, -59.999),
        _station("CHA", -20.0, -65.0, channel_lat=-19.9999),  # its channel just outside: the station counts
    ])], source="test")
    sel, providers = get_stations(_data(tmp_path, inventory=inv, region=REGION))
    assert sorted(s.code for net in sel for s in net) == ["CHA", "MID", "NE", "SW"]
    assert sorted(providers) == ["XX.CHA", "XX.MID", "XX.NE", "XX.SW"]
    assert [len(s.channels) for net in sel for s in net if s.code == "CHA"] == [1]
    sel, _ = get_stations(_data(tmp_path, inventory=inv, region=None))
    assert sum(len(net) for net in sel) == 8


def test_embedded_station_on_the_region_edge(tmp_path):
    # CX.PB01 lies at -21.04323, -69.4874
    data = _data(tmp_path, region={"minlatitude": -21.04323, "maxlatitude": 0.0, "minlongitude": -180.0,
                                   "maxlongitude": -69.4874})
    data["source"] = "embedded"
    data["stations"]["channel"] = "BH?,HH?"
    sel, providers = get_stations(data)
    assert providers == {"CX.PB01": "embedded"} and [s.code for net in sel for s in net] == ["PB01"]
    data["stations"]["region"] = {**data["stations"]["region"], "maxlongitude": -69.4875}
    assert get_stations(data)[1] == {}
