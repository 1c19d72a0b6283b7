"""Bulk waveform download against ObsPy's, on a real dataselect server on 127.0.0.1 (issue 20).

Builds a network of N stations (default 100) and M events (default 50): StationXML, QuakeML, and one
miniSEED file per station holding its event windows (10 Hz noise, BH?), as xdisc plans them (TauP P
time, 60 s before, 180 s after). Serves them with the test suite's real ``portable-fdsnws-dataselect``
and metadata server behind the counting fault proxy, and downloads every window:

* ``xdisc bulk``: :func:`xdisc.data.download.fetch_station` with bulk POSTs (data.fdsn.bulk_windows 100),
  one station after the other, and 3 stations at a time (3 parallel Snakemake jobs);
* ``xdisc per window``: the same with one GET per window (bulk_windows 1, 3 in parallel per station);
* ``obspy get_waveforms_bulk``: ObsPy's ``Client.get_waveforms_bulk`` in a plain loop, one call per station
  with all its windows (no cutting into windows, no manifest);
* ``obspy MassDownloader``: one ``MassDownloader.download`` per event, for the event's time window over
  the network (it also asks the station service, per event and per station).

Then the xdisc bulk path once more with faults (5 % of the POSTs answered 503, 1 % cut short, one station
failing on every try), and a rerun that must fetch only what is missing. Timing is the wall time of the
download calls alone (plans are made once, before). Not part of CI. Run::

    python tests/benchmarks/bulk_download.py --out /tmp/bulk            # ~3-6 min on 2 cores
    python tests/benchmarks/bulk_download.py --stations 20 --events 20 --out /tmp/bulk-small

Prints a table and writes ``bulk_download.json`` in --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

NETWORK = "XB"
SAMPLING_HZ = 10.0
MARGIN_S = 20.0


def make_network(out: Path, n_stations: int, n_events: int, seed: int):
    """StationXML, QuakeML and per-station miniSEED files; returns (inventory path, events path, files)."""
    from obspy import Inventory, Stream, Trace, UTCDateTime
    from obspy.core.event import Catalog, Event, Magnitude, Origin
    from obspy.core.inventory import Channel, Network, Site, Station
    from obspy.geodetics import locations2degrees
    from xdisc.data.download import plan_requests

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    t0 = UTCDateTime(2021, 1, 1)
    stations = []
    for i in range(n_stations):
        lat, lon = rng.uniform(40, 50), rng.uniform(5, 20)
        chans = [Channel(f"BH{c}", "", lat, lon, 100.0, 0.0, azimuth=az, dip=dip, sample_rate=SAMPLING_HZ,
                         start_date=t0 - 86400) for c, az, dip in (("Z", 0, -90), ("N", 0, 0), ("E", 90, 0))]
        stations.append(Station(f"S{i:03d}", lat, lon, 100.0, channels=chans, site=Site(f"bench {i}"),
                                start_date=t0 - 86400))
    inventory = Inventory(networks=[Network(NETWORK, stations=stations, start_date=t0 - 86400)], source="xdisc bench")
    events = []
    while len(events) < n_events:
        lat, lon = rng.uniform(-60, 60), rng.uniform(-180, 180)
        if not 35 <= locations2degrees(45, 12.5, lat, lon) <= 85:
            continue
        origin = Origin(time=t0 + 3 * 3600 * len(events), latitude=lat, longitude=lon,
                        depth=float(rng.uniform(10, 300)) * 1000)
        mag = Magnitude(mag=6.0, magnitude_type="Mw")
        e = Event(origins=[origin], magnitudes=[mag])
        e.preferred_origin_id, e.preferred_magnitude_id = origin.resource_id, mag.resource_id
        events.append(e)
    catalog = Catalog(events)
    inv_path, ev_path = out / "stations.xml", out / "events.xml"
    inventory.write(str(inv_path), format="STATIONXML")
    catalog.write(str(ev_path), format="QUAKEML")
    data_cfg = _data_cfg("http://127.0.0.1:1")["data"]
    files = []
    (out / "mseed").mkdir(exist_ok=True)
    for sta in stations:
        requests, _ = plan_requests(catalog, NETWORK, sta.code, sta.latitude, sta.longitude, data_cfg)
        st = Stream()
        for r in requests:
            start = UTCDateTime(r.starttime) - MARGIN_S
            npts = int((UTCDateTime(r.endtime) - UTCDateTime(r.starttime) + 2 * MARGIN_S) * SAMPLING_HZ)
            for c in "ZNE":
                data = rng.integers(-200, 200, npts).astype(np.int32)
                st += Trace(data, header={"network": NETWORK, "station": sta.code, "channel": f"BH{c}",
                                          "starttime": start, "sampling_rate": SAMPLING_HZ})
        path = out / "mseed" / f"{NETWORK}.{sta.code}.mseed"
        st.write(str(path), format="MSEED", reclen=512, encoding="STEIM2")
        files.append(path)
    return inv_path, ev_path, files


def _data_cfg(base_url: str, **fdsn) -> dict:
    from xdisc import config as cfgmod

    return cfgmod.validate({"data": {"source": "fdsn", "stations": {"starttime": "2020-12-01", "endtime": "2021-12-31",
                                                                    "network": NETWORK},
                                     "fdsn": {"providers": [base_url], "event_provider": base_url, "timeout_s": 60,
                                              "retries": 3, "backoff_s": 0.2, **fdsn}}})


def plans(cfg: dict) -> dict:
    from xdisc.data.download import get_events, get_stations, plan_requests, station_rows

    d = cfg["data"]
    inv, providers = get_stations(d)
    events = get_events(d)
    return {f"{r['network']}.{r['station']}": plan_requests(events, r["network"], r["station"], r["latitude"],
                                                            r["longitude"], d)[0]
            for r in station_rows(inv, providers)}


def fresh(requests):
    from dataclasses import replace

    return [replace(r, status="pending", reason="", attempts=0, file="", source="") for r in requests]


def run_xdisc(proxy, base_url, planned, work: Path, bulk_windows: int, jobs: int, max_parallel: int):
    """Every station's windows with fetch_station, ``jobs`` stations at a time; (summaries, seconds)."""
    from xdisc.data.bulk import BulkSettings, ProviderGate
    from xdisc.data.download import FDSNSource, fetch_station

    gate = ProviderGate(work / ".providers", base_url, max_connections=3, max_requests_per_s=0)
    bulk = BulkSettings(bulk_windows, 3, 0.2, 30.0, 60.0) if bulk_windows > 1 else None

    def one(code):
        source = FDSNSource(base_url, 60.0, bulk=bulk, gate=gate)
        return fetch_station(fresh(planned[code]), source, work / code, work / f"{code}.csv", channel="BH?",
                             retries=3, backoff_s=0.2, max_parallel=max_parallel)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        summaries = list(pool.map(one, sorted(planned)))
    return summaries, time.perf_counter() - t0


def run_obspy_bulk(base_url, planned, work: Path):
    from obspy import UTCDateTime
    from obspy.clients.fdsn import Client

    client = Client(base_url, _discover_services=False, timeout=60)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for code, requests in sorted(planned.items()):
        net, sta = code.split(".")
        bulk = [(net, sta, "*", "BH?", UTCDateTime(r.starttime), UTCDateTime(r.endtime)) for r in requests]
        client.get_waveforms_bulk(bulk, filename=str(work / f"{code}.mseed"))
    return time.perf_counter() - t0


def run_mass_downloader(base_url, planned, catalog_path, work: Path):
    from obspy import UTCDateTime, read_events
    from obspy.clients.fdsn import Client
    from obspy.clients.fdsn.mass_downloader import MassDownloader, RectangularDomain, Restrictions

    logging.getLogger("obspy.clients.fdsn.mass_downloader").setLevel(logging.WARNING)
    client = Client(base_url, _discover_services=False, timeout=60)
    by_event: dict[str, list] = {}
    for requests in planned.values():
        for r in requests:
            by_event.setdefault(r.event_id, []).append(r)
    domain = RectangularDomain(minlatitude=39, maxlatitude=51, minlongitude=4, maxlongitude=21)
    mdl = MassDownloader(providers=[client], configure_logging=False)
    _ = read_events(str(catalog_path))
    t0 = time.perf_counter()
    for eid, requests in sorted(by_event.items()):
        restrictions = Restrictions(
            starttime=min(UTCDateTime(r.starttime) for r in requests),
            endtime=max(UTCDateTime(r.endtime) for r in requests), network=NETWORK, station="*", location="*",
            channel_priorities=["BH[ZNE]"], location_priorities=["", "*"], reject_channels_with_gaps=False,
            minimum_length=0.0, minimum_interstation_distance_in_m=0.0, sanitize=False)
        mdl.download(domain, restrictions, mseed_storage=str(work / eid / "{network}.{station}.{location}.{channel}"
                                                                      ".mseed"),
                     stationxml_storage=str(work / "stations"), threads_per_client=3, print_report=False)
    return time.perf_counter() - t0


def count(proxy) -> dict:
    reqs = [r for r in proxy.requests]
    return {"dataselect": sum("dataselect" in r.path for r in reqs), "station": sum("station" in r.path for r in reqs),
            "event": sum("/event/" in r.path for r in reqs)}


def statuses(work: Path) -> dict:
    import csv

    out: dict[str, int] = {}
    for path in work.glob("*.csv"):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                out[row["status"]] = out.get(row["status"], 0) + 1
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stations", type=int, default=100)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--skip-mass-downloader", action="store_true")
    ap.add_argument("--rate", type=float, default=5.0, help="provider rate limit for the extrapolation (requests/s)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    from fdsn_servers import FaultProxy, fdsn_routes, start_dataselect, start_metadata_server

    shutil.rmtree(args.out, ignore_errors=True)
    t = time.perf_counter()
    inv_path, ev_path, files = make_network(args.out / "network", args.stations, args.events, args.seed)
    print(f"network: {args.stations} stations x {args.events} events in {time.perf_counter() - t:.0f} s")
    dataselect = start_dataselect(files, args.out / "dataselect", maxsectiondays=400)
    metadata = start_metadata_server(inv_path, ev_path)
    proxy = FaultProxy(fdsn_routes(dataselect, metadata))
    base = proxy.base_url
    result: dict = {"stations": args.stations, "events": args.events}
    try:
        planned = plans(_data_cfg(base))
        n_windows = sum(len(v) for v in planned.values())
        result["windows"] = n_windows
        print(f"{n_windows} windows planned for {len(planned)} stations")
        rows = []

        def record(name, seconds, extra=None):
            c = count(proxy)
            rows.append({"method": name, "seconds": round(seconds, 2), "dataselect_requests": c["dataselect"],
                         "station_requests": c["station"], "windows_per_s": round(n_windows / seconds, 1),
                         "windows_per_request": round(n_windows / max(c["dataselect"], 1), 1), **(extra or {})})
            print(f"  {name:34s} {seconds:7.1f} s  {c['dataselect']:6d} dataselect + {c['station']:4d} station "
                  f"requests  {n_windows / seconds:7.1f} windows/s")
            proxy.reset()

        for name, bulk_windows, jobs, par in (("xdisc bulk, 1 job", 100, 1, 1), ("xdisc bulk, 3 jobs", 100, 3, 1),
                                              ("xdisc per window, 3 per station", 1, 1, 3)):
            proxy.reset()
            work = args.out / name.replace(" ", "_").replace(",", "")
            _, seconds = run_xdisc(proxy, base, planned, work, bulk_windows, jobs, par)
            record(name, seconds, {"statuses": statuses(work)})
        proxy.reset()
        record("obspy get_waveforms_bulk loop", run_obspy_bulk(base, planned, args.out / "obspy_bulk"))
        if not args.skip_mass_downloader:
            proxy.reset()
            record("obspy MassDownloader (per event)", run_mass_downloader(base, planned, ev_path, args.out / "mdl"))
        result["runs"] = rows

        # faults: 5 % of the bulk POSTs 503, 1 % cut short, one station failing on every try
        rng = np.random.default_rng(args.seed)
        codes = sorted(planned)
        picks = rng.choice(len(codes), size=max(3, round(0.06 * len(codes)) + 1), replace=False)
        n503 = max(1, round(0.05 * len(codes)))
        proxy.reset()
        for k in picks[:n503]:
            proxy.inject("503", query_contains=f"{NETWORK} {codes[k].split('.')[1]} ", retry_after="1")
        proxy.inject("truncate", query_contains=f"{NETWORK} {codes[picks[n503]].split('.')[1]} ")
        broken = codes[picks[-1]]
        proxy.inject("500", query_contains=f"{NETWORK} {broken.split('.')[1]} ", count=50)
        work = args.out / "faults"
        _, seconds = run_xdisc(proxy, base, planned, work, 100, 3, 1)
        first = statuses(work)
        fired = len(proxy.fired)
        c1 = count(proxy)
        proxy.reset()
        _, seconds2 = run_xdisc(proxy, base, planned, work, 100, 3, 1)
        c2 = count(proxy)
        second = statuses(work)
        result["faults"] = {"faults_fired": fired, "first_run": {"seconds": round(seconds, 1), "statuses": first,
                                                                  "dataselect_requests": c1["dataselect"]},
                            "rerun": {"seconds": round(seconds2, 1), "statuses": second,
                                      "dataselect_requests": c2["dataselect"],
                                      "windows_asked": sum(len(r.query.get("bulk", "").splitlines())
                                                           for r in proxy.requests if "dataselect" in r.path)},
                            "failing_station": broken, "failing_station_windows": len(planned[broken])}
        print(f"faults: {fired} fired; first run {first} in {seconds:.1f} s; rerun asked "
              f"{result['faults']['rerun']['windows_asked']} window(s) in {c2['dataselect']} request(s): {second}")

        best = rows[1]
        requests_global = 10_000 * -(-1000 // 100)  # bulk_windows 100: 10 requests per station
        result["extrapolation"] = {
            "stations": 10_000, "events": 1000, "windows": 10_000_000, "bulk_windows": 100,
            "requests": requests_global, "rate_limit_per_s": args.rate,
            "hours_at_rate_limit": round(requests_global / args.rate / 3600, 1),
            "hours_at_loopback_throughput": round(10_000_000 / best["windows_per_s"] / 3600, 1),
            "hours_per_window_at_rate_limit": round(10_000_000 / args.rate / 3600, 1)}
        e = result["extrapolation"]
        print(f"10^4 stations x 10^3 events: {e['requests']} bulk requests: {e['hours_at_rate_limit']} h at "
              f"{args.rate:g} requests/s (one request per window: {e['hours_per_window_at_rate_limit']} h); "
              f"{e['hours_at_loopback_throughput']} h at this loopback throughput ({best['method']})")
    finally:
        for server in (proxy, metadata, dataselect):
            server.stop()
    (args.out / "bulk_download.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
