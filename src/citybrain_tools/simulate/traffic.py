"""Simulated city traffic: a deterministic stream of records for a seed.

Mostly normal IoT readings; sensor drift and flapping; camera alerts, most below
their confidence threshold; citizen and grid-member reports (some with phone
numbers to mask); duplicates; a share of malformed records of every class; and
three scripted incidents (rainstorm at an underpass, a cable fire, a gas leak); a camera
whose platform reports a fault and, a minute later, the camera back online.
Pure: no Kafka here, the runner produces what this yields.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson

from citybrain.wire.enums import CHANNELS
from citybrain_tools.sample.sites import GATEWAY_GAUGE, GATEWAY_INTERVAL, RESTAURANT, SCENARIO_DEVICES, UNDERPASS

CST = timezone(timedelta(hours=8))

# sensor_type -> (baseline, noise sd, lower clamp, upper clamp)
BASELINE = {
    "water_level": (0.0, 0.01, 0.0, 0.12), "manhole_tilt": (1.0, 0.5, 0.0, 12.0),
    "smoke": (0.01, 0.005, 0.0, 0.1), "residual_current": (50.0, 20.0, 0.0, 250.0),
    "cable_temperature": (35.0, 3.0, -10.0, 65.0), "gas_lel": (0.5, 0.5, 0.0, 15.0),
    "pm25": (45.0, 15.0, 0.0, 140.0), "pm10": (80.0, 20.0, 0.0, 240.0),
    "noise_db": (55.0, 5.0, 30.0, 69.0), "water_ph": (7.4, 0.2, 6.6, 8.4),
    "water_turbidity": (10.0, 5.0, 0.0, 90.0), "streetlight_status": (0.0, 0.0, 0.0, 0.0),
    "pipe_pressure": (0.35, 0.03, 0.21, 0.6), "bin_fill": (0.4, 0.2, 0.0, 0.85),
}
# Flapping devices cross the alarm threshold but never for the hold time.
FLAP_HIGH = {"water_level": 0.2, "manhole_tilt": 20.0, "noise_db": 75.0, "bin_fill": 0.95,
             "streetlight_status": 1.0, "cable_temperature": 75.0}
BACKGROUND_ALGOS = ["illegal_parking", "street_vending", "garbage_overflow", "crowd_gathering",
                    "illegal_construction", "road_ponding", "traffic_accident"]
REPORT_TEXT = {
    "road_damage": "路面坑洼，车辆通行颠簸", "garbage_overflow": "垃圾桶满了没人清运",
    "illegal_parking": "车辆占用消防通道", "noise": "夜间施工噪声扰民",
    "street_vending": "流动摊贩占道经营", "other": "小区门口路灯下有异味，请核实",
    "manhole_cover": "人行道井盖松动", "illegal_construction": "楼顶私搭乱建",
}
MALFORMED = ["not_json", "invalid_utf8", "not_object", "missing_field", "invalid_field",
             "too_large", "unknown_device", "out_of_area", "future_timestamp",
             "unknown_category", "wrong_key"]


@dataclass(frozen=True, slots=True)
class SimRecord:
    source: str          # iot | video | report
    key: bytes | None
    value: bytes
    at: float            # seconds after the start
    label: str           # normal | drift | flap | duplicate | scenario:<name> | malformed:<reason>


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, CST).isoformat(timespec="milliseconds")


class CitySimulator:
    def __init__(self, registry: list[dict], *, seed: int = 1, rate: float = 200.0,
                 duration: float = 60.0, start: float, malformed_share: float = 0.01,
                 scenarios: bool = True, mix: tuple[float, float, float] = (0.88, 0.09, 0.03),
                 gateway: bool = False):
        """``gateway``: the gateway gauge's silence scenario (the demo's).  Off by default:
        its 15 s offline limit would make any run that stops sending end with a device
        fault a few seconds later — tests that compare two runs' orders need none."""
        self.rng = random.Random(seed)
        self.seed, self.rate, self.duration, self.start = seed, rate, duration, start
        self.malformed_share, self.scenarios, self.mix = malformed_share, scenarios, mix
        self.gateway = gateway
        self.by_id = {d["device_id"]: d for d in registry}
        scripted = {d[0] for d in SCENARIO_DEVICES}
        # Background traffic leaves the scripted devices alone.
        active = [d for d in registry if d.get("status", "active") == "active"
                  and d["device_id"] not in scripted]
        self.sensors = [d for d in active if d["kind"] == "sensor"]
        self.cameras = [d for d in active if d["kind"] == "camera"]
        self.seq: dict[str, int] = {}
        self.last: dict[str, bytes] = {}
        kinds = {}
        for d in self.sensors:
            roll = self.rng.random()
            kinds[d["device_id"]] = "drift" if roll < 0.02 else "flap" if roll < 0.03 else "normal"
        self.kind_of = kinds
        self.drift_rate = {d: self.rng.uniform(0.001, 0.004) for d, k in kinds.items() if k == "drift"}
        self.counter = 0

    # -- one tick per second ---------------------------------------------------

    def records(self) -> Iterator[SimRecord]:
        return (rec for rec in self.slices() if rec is not None)

    def slices(self, every: int = 32) -> Iterator[SimRecord | None]:
        """The records, with a ``None`` after every ``every`` records generated: a paced
        sender does a slice between sends instead of a whole tick at once (a tick of
        1,000 took 4-17 ms, and every record waiting in its producer waited that long)."""
        carry = 0.0
        ticks = max(1, math.ceil(self.duration))
        for tick in range(ticks):
            carry += self.rate
            n, carry = int(carry), carry - int(carry)
            batch = []
            for i in range(n):
                batch.append(self._background(tick + i / max(n, 1)))
                if i % every == every - 1:
                    yield None
            if self.scenarios:
                batch += list(self._scenarios(tick))
            batch.sort(key=lambda r: r.at)
            yield from batch

    def _background(self, at: float) -> SimRecord:
        self.counter += 1
        r = self.rng.random()
        if r < self.malformed_share:
            return self._malformed(at)
        r = self.rng.random()
        if r < self.mix[0]:
            if self.rng.random() < 0.005:
                device = self.rng.choice(self.sensors)
                if device["device_id"] in self.last:
                    return SimRecord("iot", device["device_id"].encode(),
                                     self.last[device["device_id"]], at, "duplicate")
            return self._reading(self.rng.choice(self.sensors), at)
        if r < self.mix[0] + self.mix[1]:
            return self._video(at)
        return self._report(at)

    def _reading(self, device: dict, at: float, value: float | None = None,
                 label: str | None = None, remember: bool = True) -> SimRecord:
        dev = device["device_id"]
        st = device["sensor_type"]
        kind = self.kind_of.get(dev, "normal")
        if value is None:
            base, sd, lo, hi = BASELINE[st]
            value = base + self.rng.gauss(0, sd) if sd else base
            if kind == "drift":
                value += self.drift_rate[dev] * at * max(abs(base), 1.0)
            elif kind == "flap" and st in FLAP_HIGH and int(at) % 20 < 3:
                value = FLAP_HIGH[st]  # above for ~3 s, below for the rest: no alarm
            value = min(max(value, lo), hi)   # a drifting sensor rises to its scale's end, no further
        seq = self.seq.get(dev, 0) + 1
        self.seq[dev] = seq
        body = {"device_id": dev, "sensor_type": st, "value": round(value, 4),
                "ts": iso(self.start + at), "seq": seq, "battery": 0.9}
        raw = orjson.dumps(body)
        if remember:  # only readings actually sent may be re-sent as duplicates
            self.last[dev] = raw
        return SimRecord("iot", dev.encode(), raw, at, label or kind)

    def _video(self, at: float, camera: dict | None = None, algorithm: str | None = None,
               confidence: float | None = None, label: str = "normal") -> SimRecord:
        camera = camera or self.rng.choice(self.cameras)
        algorithm = algorithm or self.rng.choice(BACKGROUND_ALGOS)
        if confidence is None:
            confidence = self.rng.uniform(0.85, 0.99) if self.rng.random() < 0.15 else self.rng.uniform(0.2, 0.6)
        self.counter += 1
        body = {"alert_id": f"VA-{self.seed}-{self.counter:08d}", "camera_id": camera["device_id"],
                "algorithm": algorithm, "confidence": round(confidence, 3),
                "ts": iso(self.start + at),
                "snapshot_url": f"https://video.example.invalid/snap/{self.seed}/{self.counter}.jpg",
                "bbox": [120, 80, 64, 48], "object_count": 1}
        return SimRecord("video", camera["device_id"].encode(), orjson.dumps(body), at, label)

    def _report(self, at: float, category: str | None = None, lon: float | None = None,
                lat: float | None = None, text: str | None = None, channel: str | None = None,
                reporter: str | None = None, label: str = "normal") -> SimRecord:
        if category is None:
            category = self.rng.choice(list(REPORT_TEXT))
            spot = self.rng.choice(self.sensors)
            lon = spot["lon"] + self.rng.uniform(-0.0003, 0.0003)
            lat = spot["lat"] + self.rng.uniform(-0.0003, 0.0003)
            text = REPORT_TEXT[category]
            if self.rng.random() < 0.3:
                text += f"，联系电话1{self.rng.randint(3, 9)}{self.rng.randint(0, 999999999):09d}"
        assert lon is not None and lat is not None, "a report at a chosen place needs lon and lat"
        channel = channel or self.rng.choice(CHANNELS)
        reporter = reporter or f"{'GM' if channel == 'grid_app' else 'CZ'}-{self.rng.randint(1, 400):04d}"
        self.counter += 1
        body = {"report_id": f"RPT-{self.seed}-{self.counter:08d}", "channel": channel,
                "reporter_id": reporter, "category": category, "description": text,
                "ts": iso(self.start + at), "lon": round(lon, 6), "lat": round(lat, 6),
                "photos": [f"https://grid.example.invalid/photo/{self.seed}/{self.counter}.jpg"]}
        if channel != "grid_app" and self.rng.random() < 0.5:
            body["contact_phone"] = f"13{self.rng.randint(0, 999999999):09d}"
        return SimRecord("report", reporter.encode(), orjson.dumps(body), at, label)

    def _malformed(self, at: float) -> SimRecord:
        reason = MALFORMED[self.counter % len(MALFORMED)]
        device = self.rng.choice(self.sensors)
        good = orjson.loads(self._reading(device, at, remember=False).value)
        dev = device["device_id"].encode()
        label = f"malformed:{reason}"
        if reason == "not_json":
            return SimRecord("iot", dev, b"device=" + dev + b";value=0.3", at, label)
        if reason == "invalid_utf8":
            return SimRecord("iot", dev, b'{"device_id": "\xff\xfe", "value": 1}', at, label)
        if reason == "not_object":
            return SimRecord("iot", dev, b"[1, 2, 3]", at, label)
        if reason == "missing_field":
            good.pop("sensor_type")
        elif reason == "invalid_field":
            good["value"] = "high"
        elif reason == "too_large":
            good["debug_dump"] = "x" * 100_000
        elif reason == "unknown_device":
            good["device_id"] = f"GHOST-{self.counter:05d}"
            dev = good["device_id"].encode()
        elif reason == "out_of_area":
            good["lon"], good["lat"] = 116.40, 39.90  # Beijing
        elif reason == "future_timestamp":
            good["ts"] = iso(self.start + at + 86400 * 3)
        elif reason == "unknown_category":
            rec = orjson.loads(self._report(at).value)
            rec["category"] = "ufo_sighting"
            return SimRecord("report", rec["reporter_id"].encode(), orjson.dumps(rec), at, label)
        elif reason == "wrong_key":
            dev = b"not-" + dev
        return SimRecord("iot", dev, orjson.dumps(good), at, label)

    # -- scripted incidents ----------------------------------------------------

    def _scenarios(self, tick: int) -> Iterator[SimRecord]:
        def dev(device_id: str) -> dict:
            return self.by_id[device_id]

        # Rainstorm: three gauges at the underpass, rising from t=10 s, reported
        # every 5 s — blue (0.15 m) at ~80 s, yellow (0.30) ~100 s, orange (0.50) ~120 s:
        # the order escalates and emergency command joins; two cameras; a grid member and
        # a hotline caller.
        t0 = 10
        if tick >= t0 and (tick - t0) % 5 == 0:
            level = min(0.02 + 0.012 * (tick - t0), 0.62)
            for i, gauge in enumerate(("WLV-UP-01", "WLV-UP-02", "WLV-UP-03")):
                yield self._reading(dev(gauge), tick + 0.1 * i,
                                    value=level - 0.01 * i, label="scenario:rainstorm")
        if tick == t0 + 30:
            yield self._video(tick + 0.2, dev("CAM-UP-01"), "road_ponding", 0.88,
                              "scenario:rainstorm")
        if tick == t0 + 45:
            yield self._video(tick + 0.2, dev("CAM-UP-02"), "road_ponding", 0.91,
                              "scenario:rainstorm")
        if tick == t0 + 50:
            lon, lat = UNDERPASS.offset(15, -20)
            yield self._report(tick + 0.3, "waterlogging", lon, lat,
                               "隧道内积水约30厘米，车辆熄火，请速处置", "grid_app", "GM-0107",
                               "scenario:rainstorm")
        if tick == t0 + 70:
            lon, lat = UNDERPASS.offset(-40, 30)
            yield self._report(tick + 0.3, "waterlogging", lon, lat,
                               "市民来电：大街下穿积水，来电人电话13905331234，身份证370306199001011234",
                               "hotline_12345", "HL-12345", "scenario:rainstorm")
        # A second flooded spot 2 km east: a separate incident.
        if tick >= t0 + 20 and (tick - t0 - 20) % 5 == 0:
            level = min(0.03 + 0.005 * (tick - t0 - 20), 0.3)
            yield self._reading(dev("WLV-EP-01"), tick + 0.4, value=level,
                                label="scenario:rainstorm")
        if tick == t0 + 60:
            yield self._video(tick + 0.5, dev("CAM-EP-01"), "road_ponding", 0.83,
                              "scenario:rainstorm")
        # 设备故障: the east camera's platform reports a fault at t=40 s, back online at t=100 s.
        for at, status in ((40, "fault"), (100, "online")):
            if tick == at:
                body = {"device_id": "CAM-EP-01", "status": status, "ts": iso(self.start + tick + 0.55),
                        "detail": "视频信号丢失 video signal lost" if status == "fault" else None}
                yield SimRecord("device", b"CAM-EP-01", orjson.dumps({k: v for k, v in body.items() if v}),
                                tick + 0.55, "scenario:device_fault")
        # 设备离线: the gateway's pressure gauge reports every 5 s, silent from t=60 s to
        # t=120 s (offline after 15 s of silence), then back: a device fault that closes itself.
        if self.gateway and tick % int(GATEWAY_INTERVAL) == 0 and not 60 <= tick < 120:
            yield self._reading(dev(GATEWAY_GAUGE), tick + 0.65, value=0.32, label="scenario:gateway")
        # Gas leak at a restaurant from t=20 s: readings every 2 s.
        g0 = 20
        if tick >= g0 and (tick - g0) % 2 == 0:
            lel = min(1.0 + 2.5 * (tick - g0), 48.0)
            yield self._reading(dev("GAS-LEAK-01"), tick + 0.6, value=lel,
                                label="scenario:gas_leak")
        if tick == g0 + 15:
            lon, lat = RESTAURANT.offset(10, 5)
            yield self._report(tick + 0.7, "gas_leak", lon, lat, "饭店后厨有很浓的燃气味",
                               "citizen_app", "CZ-0999", "scenario:gas_leak")
        # Cable fire from t=30 s: cable temperature and residual current climb,
        # then smoke and a camera see fire.
        c0 = 30
        if tick >= c0 and (tick - c0) % 5 == 0:
            temp = min(40.0 + 0.6 * (tick - c0), 110.0)
            current = min(80.0 + 4.0 * (tick - c0), 600.0)
            yield self._reading(dev("CBT-FIRE-01"), tick + 0.8,
                                value=temp, label="scenario:cable_fire")
            yield self._reading(dev("RCM-FIRE-01"), tick + 0.85,
                                value=current, label="scenario:cable_fire")
        if tick >= c0 + 110 and (tick - c0) % 5 == 0:
            yield self._reading(dev("SMK-FIRE-01"), tick + 0.9, value=0.35,
                                label="scenario:cable_fire")
        if tick == c0 + 115:
            yield self._video(tick + 0.95, dev("CAM-FIRE-01"), "fire_smoke", 0.93,
                              "scenario:cable_fire")
