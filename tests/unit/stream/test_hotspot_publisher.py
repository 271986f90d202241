"""高发 on analytics.hotspots: a hotspot is written when it appears or changes, once, and a
tombstone goes when it is found no more."""

import asyncio
import math

import orjson

from citybrain.domain.hotspots import HotspotConfig, HotspotRule
from citybrain.stream.analytics import HotspotPublisher

NOW = 1_800_000_000.0


class Store:
    def __init__(self):
        self.rows = []

    def points(self, since):
        return [r for r in self.rows if r[4] >= since]


class Producer:
    def __init__(self):
        self.sent = []

    async def send(self, topic, value, key=None):
        self.sent.append((key.decode(), None if value is None else orjson.loads(value)))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def spot(store, n, lon, lat, first=0):
    for i in range(first, first + n):
        store.rows.append((f"WO-{lon}-{i:02d}", "manhole_cover", lon + 1e-5 * math.cos(i), lat + 1e-5 * math.sin(i),
                           NOW - 3600 * (10 - i), "370306002"))   # later ones newer: the centre stays


async def test_appears_changes_and_ends(monkeypatch):
    monkeypatch.setattr("citybrain.stream.analytics.time.time", lambda: NOW)
    store, producer = Store(), Producer()
    pub = HotspotPublisher("-", "analytics.hotspots", store,
                           HotspotConfig(default=HotspotRule(min_orders=3, radius_m=50, days=30)), "Asia/Shanghai")
    pub.sent = {}                      # (what the topic held when this worker took over: nothing)
    spot(store, 3, 117.80, 36.74)
    assert await pub.publish(producer) == 1
    (key, rec), = producer.sent
    assert key == rec["hotspot_id"] and rec["count"] == 3
    assert await pub.publish(producer) == 0 and len(producer.sent) == 1     # nothing new: nothing sent
    spot(store, 1, 117.80, 36.74, first=3)                                   # a fourth order joins
    assert await pub.publish(producer) == 1 and producer.sent[-1][1]["count"] == 4
    spot(store, 3, 117.90, 36.70)                                           # another place
    assert await pub.publish(producer) == 1
    store.rows = [r for r in store.rows if r[0].startswith("WO-117.9")]     # the first one ends
    assert await pub.publish(producer) == 1 and producer.sent[-1] == (key, None)


async def test_no_store_no_hotspots():
    pub = HotspotPublisher("-", "t", None, HotspotConfig(), "Asia/Shanghai")
    pub.sent = {"HS-x": b"{}"}
    producer = Producer()
    assert await pub.publish(producer) == 1 and producer.sent == [("HS-x", None)]
