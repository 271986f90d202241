"""The worker's windows feed over its store, without Kafka: a batch's counts, dedupe entries
and offsets land together, so a new feed on the same data directory (a restart) resumes at
the stored offsets and a batch read again — or a change delivered twice — counts once."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from citybrain.domain.aggregates import fold
from citybrain.domain.analytics import AnalyticsConfig
from citybrain.kafka.topics import Topics
from citybrain.stream.analytics import WindowsFeed, window_record

CN = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 1, 9, tzinfo=CN)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def change(wo: str, version: int, kind: str, minutes: int, street: str = "370306002") -> dict:
    return {"work_order_id": wo, "version": version, "type": kind, "at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "snapshot": {"status": "closed" if kind == "verified" else "dispatched", "category": "waterlogging",
                         "location": {"district_code": street[:6], "street_code": street}}}


def feed(tmp_path) -> WindowsFeed:
    return WindowsFeed("-", Topics(), "g", tmp_path, AnalyticsConfig())


def test_a_restart_resumes_where_the_store_is_and_counts_nothing_twice(tmp_path):
    log = [change("WO-1", 1, "created", 0), change("WO-2", 1, "created", 5, "370306001"),
           change("WO-1", 2, "returned", 70), change("WO-1", 3, "verified", 130),
           change("WO-2", 2, "verification_rejected", 200)]
    records = [Record("workorders.events", 0, i, orjson.dumps(c)) for i, c in enumerate(log)]
    records.insert(3, Record("workorders.events", 0, 99, b"{not json"))     # skipped, logged
    first = feed(tmp_path)
    first._apply(records[:3])
    assert first.store.positions() == {0: 3}
    first.store.close()

    again = feed(tmp_path)                                 # a restart: the store's offsets and dedupe
    resume = again.store.positions()[0]
    redelivered = {**log[0], "at": (T0 + timedelta(hours=3)).isoformat()}
    again._apply([r for r in records if r.offset >= resume - 1]            # one record read again …
                 + [Record("workorders.events", 0, 6, orjson.dumps(redelivered))])   # … and one delivered twice
    want = fold(log)
    got = {tuple(row[:5]): dict(zip(("opened", "closed", "overdue", "returned", "reworked"), row[5:], strict=True))
           for row in again.store.dirty()}
    assert got == want
    key, value = window_record(again.store.dirty()[0])
    assert key.decode().count("|") == 4 and orjson.loads(value)["window_start"] == key.decode().split("|")[0]
