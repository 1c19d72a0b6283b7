"""The demo network of the default run: synthetic stations with known truth beside the real embedded one.

``make_demo`` writes a local archive as a user's would be: SDS miniSEED (counts), StationXML
(sensitivities only) and QuakeML. It holds

- the real example data of the rf package (CX.PB01, northern Chile, 13 events of 2011), unchanged;
- network ``SY`` (the code FDSN uses for synthetic seismograms): ``data.demo.stations`` stations around
  CX.PB01, half of them with an X at 260-340 km (dVs 3-5 %), made by xdisc's own forward code (the
  propagator, AK135 with the station's crust, the synthetics' earthquake sources) for synthetic events at
  35-85 deg plus the real ones, with noise of a microseism-dominated spectrum at a per-station SNR;
- ``truth.csv``: what each SY station holds (X or not, its depth and dVs, the SNR).

Every SY record is SYNTHETIC, and says so (StationXML description, QuakeML event descriptions,
README.txt). The demo is made by the code it demonstrates: it shows what the method does, it is no
test of it (``tests/benchmarks/independent_network.py`` is the independent one).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np

from xdisc.core.earthmodel import load_model
from xdisc.core.propagator import plane_wave_response
from xdisc.data.examples import demo_paths, embedded_paths
from xdisc.synth.source import draw_source, source_spectrum
from xdisc.synth.synthetics import Layering, build_model, single_parameters

log = logging.getLogger(__name__)

NETWORK = "SY"
CHANNELS = ("BHZ", "BHN", "BHE")
SAMPLING_RATE_HZ = 20.0
MAX_FREQUENCY_HZ = 3.0          # the responses are computed up to here (the receiver functions keep < 2 Hz)
CENTRE = (-21.04, -69.49)       # CX.PB01
GAIN_COUNTS_PER_M = 1.0e9
MARGIN_S = 5.0                  # the records start this long before the window that the downloader cuts
TRUTH_FIELDS = ("station", "x_present", "x_depth_km", "x_dvs", "moho_km", "vpvs", "snr", "n_events",
                "latitude", "longitude")


def draw_stations(n: int, rng: np.random.Generator) -> list[dict]:
    """The SY stations: positions within about 2 deg of CX.PB01, crust, X (half of them), SNR."""
    has_x = np.zeros(n, bool)
    has_x[rng.permutation(n)[: (n + 1) // 2]] = True
    out = []
    for i in range(n):
        x = bool(has_x[i])
        out.append({"station": f"D{i + 1:02d}", "latitude": CENTRE[0] + float(rng.uniform(-2.0, 2.0)),
                    "longitude": CENTRE[1] + float(rng.uniform(-0.7, 2.0)),   # east of the coast
                    "moho_km": float(rng.uniform(30, 50)), "vpvs": float(rng.uniform(1.70, 1.80)),
                    "x_present": int(x), "x_depth_km": float(rng.uniform(260, 340)) if x else math.nan,
                    "x_dvs": float(rng.uniform(0.03, 0.05)) if x else 0.0,
                    "snr": float(np.exp(rng.uniform(np.log(8.0), np.log(25.0))))})
    return out


def draw_events(n: int, rng: np.random.Generator) -> list[dict]:
    """Synthetic events in the second half of 2011 at 35-85 deg from the network, Mw 6.0-7.0."""
    from obspy import UTCDateTime
    from obspy.geodetics import locations2degrees

    events = []
    start = UTCDateTime("2011-06-01")
    while len(events) < n:
        lat = float(np.degrees(np.arcsin(rng.uniform(-0.9, 0.9))))
        lon = float(rng.uniform(-180, 180))
        if not 35.0 <= locations2degrees(*CENTRE, lat, lon) <= 85.0:
            continue
        events.append({"time": start + float(rng.uniform(0, 200 * 86400)), "latitude": lat, "longitude": lon,
                       "depth_km": float(rng.choice([15.0, 35.0, float(rng.uniform(50, 300))])),
                       "mw": float(rng.uniform(6.0, 7.0))})
    events.sort(key=lambda e: e["time"])
    return events


def make_demo(folder: str | Path, demo_cfg: dict, config: dict) -> dict:
    """Write the demo archive (``demo_paths(folder)``) and return its summary (also ``network.json``).

    ``demo_cfg`` is ``data.demo``; ``config`` the validated configuration (the window around P, the
    earth model, ``layering`` and ``synthetics.source``)."""
    from obspy import read, read_events, read_inventory

    paths = demo_paths(folder)
    rng = np.random.default_rng(demo_cfg["seed"])
    stations = draw_stations(demo_cfg["stations"], rng)
    synthetic_events = draw_events(demo_cfg["events"], rng)
    catalog = read_events(str(embedded_paths()["events"]))
    real = []
    for e in catalog:
        o, m = e.preferred_origin() or e.origins[0], e.preferred_magnitude() or e.magnitudes[0]
        real.append({"time": o.time, "latitude": o.latitude, "longitude": o.longitude,
                     "depth_km": (o.depth or 0.0) / 1000.0, "mw": m.mag})
    events = real + synthetic_events
    window = (config["data"]["window_before_p_s"], config["data"]["window_after_p_s"])
    layering = Layering(**config["layering"])
    reference = load_model(config["earth_model"])
    paths["sds"].mkdir(parents=True, exist_ok=True)
    # the real station, unchanged, in the same archive
    _write_sds(read(str(embedded_paths()["waveforms"])), paths["sds"])
    rows = []
    for k, sta in enumerate(stations, 1):
        n_written = _write_station(sta, events, window, layering, reference, config, paths["sds"],
                                   np.random.default_rng([demo_cfg["seed"], k]))
        rows.append({**{f: sta[f] for f in TRUTH_FIELDS if f in sta}, "n_events": n_written})
        log.info("demo: %s.%s (%s) %d event windows", NETWORK, sta["station"],
                 f"X at {sta['x_depth_km']:.0f} km, dVs {sta['x_dvs'] * 100:.1f} %" if sta["x_present"] else "no X",
                 n_written)
    inventory = read_inventory(str(embedded_paths()["inventory"]))
    inventory.networks.append(_network(stations))
    inventory.write(str(paths["inventory"]), format="STATIONXML")
    _add_events(catalog, synthetic_events)
    catalog.write(str(paths["events"]), format="QUAKEML")
    with open(paths["truth"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TRUTH_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{NETWORK}.{v}" if k == "station" else _round(v)) for k, v in row.items()})
    paths["readme"].write_text(
        "SYNTHETIC DEMO DATA, except CX.PB01.\n"
        f"Network {NETWORK}: {len(stations)} synthetic stations made by xdisc (xdisc.data.demo, seed "
        f"{demo_cfg['seed']}) with its own forward code: AK135 with each station's crust, X where truth.csv says,\n"
        "the synthetics' earthquake sources, microseism-shaped noise. Events: the 13 real events of the rf\n"
        f"package's example plus {len(synthetic_events)} synthetic ones (marked SYNTHETIC in events.xml).\n"
        "CX.PB01 is real (IPOC, northern Chile; the rf package's example data).\n")
    info = {"network": NETWORK, "stations": len(stations), "seed": demo_cfg["seed"],
            "synthetic_events": len(synthetic_events), "real_events": len(real),
            "stations_with_x": int(sum(s["x_present"] for s in stations)),
            **{k: str(v) for k, v in paths.items()}}
    paths["info"].write_text(json.dumps(info, indent=1))
    return info


def _round(v):
    return "" if isinstance(v, float) and not math.isfinite(v) else (round(v, 4) if isinstance(v, float) else v)


def _write_station(sta: dict, events: list[dict], window: tuple[float, float], layering: Layering, reference,
                   config: dict, sds: Path, rng: np.random.Generator) -> int:
    """The Z, N, E windows of one SY station for every event at 30-90 deg; returns how many."""
    from obspy import Stream, Trace
    from obspy.geodetics import gps2dist_azimuth, locations2degrees
    from obspy.taup import TauPyModel

    taup = TauPyModel(config["earth_model"])
    params = single_parameters({"synthetics": {"models": [config["earth_model"]], "noise": {"enabled": False,
                                                                                          "snr": [1, 1]}}},
                               sta["x_depth_km"] if sta["x_present"] else None, x_dvs=sta["x_dvs"] or 0.03,
                               moho_km=sta["moho_km"], vpvs=sta["vpvs"])
    stack = layering.apply(build_model({k: v[0] for k, v in params.items()}, reference))
    fs = SAMPLING_RATE_HZ
    n_out = round((window[0] + window[1] + 2 * MARGIN_S) * fs)
    nfft = 1 << int(np.ceil(np.log2(2.0 * n_out)))
    freqs = np.fft.rfftfreq(nfft, 1.0 / fs)
    keep = freqs <= MAX_FREQUENCY_HZ
    picked = []
    for ev in events:
        dist = locations2degrees(sta["latitude"], sta["longitude"], ev["latitude"], ev["longitude"])
        if not 30.0 <= dist <= 90.0:
            continue
        arrivals = taup.get_travel_times(ev["depth_km"], dist, ["P"])
        if not arrivals:
            continue
        _, baz, _ = gps2dist_azimuth(sta["latitude"], sta["longitude"], ev["latitude"], ev["longitude"])
        picked.append((ev, arrivals[0].time, arrivals[0].ray_param / 6371.0, baz))
    if not picked:
        return 0
    p = np.array([s for _, _, s, _ in picked])
    rep = lambda a: np.repeat(a[None, :], p.size, axis=0)  # noqa: E731 - one stack for every event
    radial, vertical = plane_wave_response(rep(stack.thickness_km), rep(stack.vp_km_s), rep(stack.vs_km_s),
                                           rep(stack.rho_g_cm3), p, freqs[keep])
    src_cfg = config["synthetics"]["source"]
    colour = _noise_spectrum(freqs)
    traces = Stream()
    for (ev, t_p, _, baz), r_spec, z_spec in zip(picked, radial, vertical, strict=True):
        p_time = ev["time"] + t_p
        t0 = p_time - window[0] - MARGIN_S
        t0 = type(p_time)(math.ceil(t0.timestamp * fs) / fs)     # on the sample grid
        lag = p_time - t0
        spec = source_spectrum(draw_source(rng, {**src_cfg, "probability": 1.0}), freqs[keep])
        shift = np.exp(-2j * np.pi * freqs[keep] * lag)
        amplitude = 1e-6 * 10 ** (0.6 * (ev["mw"] - 6.5))
        comp = []
        for s in (z_spec, r_spec):
            full = np.zeros(freqs.size, complex)
            full[keep] = s * spec * shift
            comp.append(np.fft.irfft(full, nfft)[:n_out] * amplitude)
        z, r = comp
        i0 = round(lag * fs)
        signal_rms = float(np.sqrt(np.mean(z[i0:i0 + int(20 * fs)] ** 2)))
        noise = [_noise(rng, nfft, colour)[:n_out] for _ in range(3)]
        scale = signal_rms / sta["snr"] / float(np.std(noise[0]))
        b = math.radians(baz)
        for cha, sig, nz in zip(CHANNELS, (z, -r * math.cos(b), -r * math.sin(b)), noise, strict=True):
            data = np.round((sig + nz * scale) * GAIN_COUNTS_PER_M).astype(np.int32)
            traces.append(Trace(data, header={"network": NETWORK, "station": sta["station"], "location": "",
                                              "channel": cha, "sampling_rate": fs, "starttime": t0}))
    _write_sds(traces, sds)
    return len(picked)


def _noise_spectrum(freqs: np.ndarray) -> np.ndarray:
    """Amplitude spectrum of the noise: a microseism peak at 0.2 Hz over a background falling as 1/f
    (displacement), in 0.03-2 Hz."""
    f = np.maximum(freqs, 1e-3)
    colour = 1.0 / f + 40.0 * np.exp(-0.5 * ((f - 0.2) / 0.06) ** 2)
    colour[(freqs < 0.03) | (freqs > 2.0)] = 0.0   # the SNR is that of the default pre-filter band
    return colour


def _noise(rng: np.random.Generator, nfft: int, colour: np.ndarray) -> np.ndarray:
    return np.fft.irfft(np.fft.rfft(rng.standard_normal(nfft)) * colour, nfft)


def _write_sds(stream, root: Path) -> None:
    """Day files of an SDS tree (YEAR/NET/STA/CHAN.D/NET.STA.LOC.CHAN.D.YEAR.DOY), STEIM2 where integer."""
    from obspy import Stream

    groups: dict = {}
    for tr in stream:
        s = tr.stats
        groups.setdefault((s.network, s.station, s.location, s.channel, s.starttime.year, s.starttime.julday),
                          []).append(tr)
    for (net, sta, loc, cha, year, doy), trs in groups.items():
        path = root / f"{year}" / net / sta / f"{cha}.D" / f"{net}.{sta}.{loc}.{cha}.D.{year}.{doy:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        day = Stream(sorted(trs, key=lambda t: t.stats.starttime))
        if path.exists():
            from obspy import read

            day = read(str(path)) + day
        integer = all(t.data.dtype.kind == "i" for t in day)
        day.write(str(path), format="MSEED", **({"encoding": "STEIM2"} if integer else {}))


def _network(stations: list[dict]):
    from obspy import UTCDateTime
    from obspy.core.inventory import Channel, Network, Response, Station
    from obspy.core.inventory.response import InstrumentSensitivity

    start = UTCDateTime("2011-01-01")
    net = Network(NETWORK, description="SYNTHETIC demo network of xdisc (not real data; truth in truth.csv)",
                  start_date=start)
    for s in stations:
        sta = Station(s["station"], s["latitude"], s["longitude"], 1000.0, start_date=start)
        for cha, az, dip in zip(CHANNELS, (0.0, 0.0, 90.0), (-90.0, 0.0, 0.0), strict=True):
            resp = Response(instrument_sensitivity=InstrumentSensitivity(
                value=GAIN_COUNTS_PER_M, frequency=1.0, input_units="M", output_units="COUNTS"))
            sta.channels.append(Channel(cha, "", s["latitude"], s["longitude"], 1000.0, 0.0, azimuth=az, dip=dip,
                                        sample_rate=SAMPLING_RATE_HZ, start_date=start, response=resp))
        net.stations.append(sta)
    return net


def _add_events(catalog, events: list[dict]) -> None:
    from obspy.core.event import Event, EventDescription, Magnitude, Origin, ResourceIdentifier

    for k, ev in enumerate(events):
        rid = f"smi:local/xdisc-demo/{k:03d}"
        o = Origin(resource_id=ResourceIdentifier(rid + "/origin"), time=ev["time"], latitude=ev["latitude"],
                   longitude=ev["longitude"], depth=ev["depth_km"] * 1000.0)
        m = Magnitude(resource_id=ResourceIdentifier(rid + "/magnitude"), mag=round(ev["mw"], 2),
                      magnitude_type="Mw", origin_id=o.resource_id)
        catalog.append(Event(resource_id=ResourceIdentifier(rid), origins=[o], magnitudes=[m],
                             preferred_origin_id=o.resource_id, preferred_magnitude_id=m.resource_id,
                             event_type="earthquake",
                             event_descriptions=[EventDescription("SYNTHETIC event of the xdisc demo network")]))
