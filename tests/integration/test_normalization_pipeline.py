"""Ingest → normalisation → events.normalized | deadletter, through real Kafka and a
real worker process."""

import asyncio
import base64
import hashlib
import time

import orjson
import pytest

from citybrain.config import Config
from citybrain.domain.masking import mask_bytes
from citybrain.promtext import conservation_ok, outcomes, samples
from citybrain_tools.sample.registry_builder import load
from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import (
    WorkerProcess,
    consume,
    decode,
    new_prefix,
    prepare,
    produce,
    wait_for_metrics,
)

pytestmark = pytest.mark.integration


def j(**body) -> bytes:
    return orjson.dumps(body)


def reading(device="WLV-UP-01", st="water_level", value=0.02, ago=10.0, seq=None, **extra):
    body = {"device_id": device, "sensor_type": st, "value": value, "ts": iso(time.time() - ago), **extra}
    if seq is not None:
        body["seq"] = seq
    return j(**body)


@pytest.fixture(scope="module")
async def pipeline(kafka_bootstrap, tmp_path_factory):
    prefix = new_prefix("norm")
    topics = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path_factory.mktemp("state")).start()
    yield kafka_bootstrap, topics, worker
    worker.stop()


async def test_mixed_batch_lands_exactly_where_it_should(pipeline):
    bootstrap, t, worker = pipeline
    now = time.time()
    retired_dev = next(d for d in load(Config().registry_path)
                       if d["status"] == "retired" and d["kind"] == "sensor")
    retired = retired_dev["device_id"]
    valid = [
        # IoT: the hold starts (normal), then 70 s later an alarm; a duplicate; a normal device.
        (t.iot, b"WLV-UP-01", reading(value=0.31, ago=200, seq=1)),
        (t.iot, b"WLV-UP-01", reading(value=0.33, ago=130, seq=2, firmware="2.4.1")),
        (t.iot, b"WLV-UP-01", reading(value=0.33, ago=130, seq=2, firmware="2.4.1")),
        (t.iot, b"PM25-00001", reading("PM25-00001", "pm25", 40.0, seq=7)),
        # Video: above and below the threshold.
        (t.video, b"CAM-UP-01", j(alert_id="VA-it-1", camera_id="CAM-UP-01", algorithm="road_ponding",
                                  confidence=0.92, ts=iso(now - 60), snapshot_url="https://v/1.jpg")),
        (t.video, b"CAM-UP-02", j(alert_id="VA-it-2", camera_id="CAM-UP-02", algorithm="road_ponding",
                                  confidence=0.40, ts=iso(now - 60))),
        # A hotline report with a phone number and an ID card in its text.
        (t.reports, b"HL-1", j(report_id="R-it-1", channel="hotline_12345", reporter_id="HL-1",
                               category="waterlogging", ts=iso(now - 30), lon=117.8626, lat=36.7934,
                               description="积水很深，来电人13905331234，身份证370306199001011234",
                               contact_phone="13905331234", photos=["https://p/1.jpg"])),
    ]
    bad = [  # (topic, key, value, reason)
        (t.iot, b"WLV-UP-02", b"level=0.3", "not_json"),
        (t.iot, b"WLV-UP-02", b'{"device_id": "\xff\xfe"}', "invalid_utf8"),
        (t.iot, b"WLV-UP-02", b'"just a string"', "not_object"),
        (t.iot, b"WLV-UP-02", j(device_id="WLV-UP-02", value=0.1, ts=iso(now)), "missing_field"),
        (t.iot, b"WLV-UP-02", reading("WLV-UP-02", value="deep"), "invalid_field"),
        (t.iot, b"WLV-UP-02", reading("WLV-UP-02", junk="x" * 200_000), "too_large"),
        (t.iot, b"GHOST-9", reading("GHOST-9"), "unknown_device"),
        (t.iot, retired.encode(), reading(retired, retired_dev["sensor_type"], 1.0), "retired_device"),
        (t.iot, b"WLV-UP-02", reading("WLV-UP-02", "smoke", 0.0), "device_type_mismatch"),
        (t.iot, b"WLV-UP-02", reading("WLV-UP-02", value=55.0), "value_out_of_range"),
        (t.iot, b"WLV-UP-02", reading("WLV-UP-02", lon=121.47, lat=31.23), "out_of_area"),
        (t.iot, b"WLV-UP-02", reading("WLV-UP-02", ago=-86400 * 30), "future_timestamp"),
        (t.iot, b"WLV-UP-03", reading("WLV-UP-02"), "wrong_key"),
        (t.iot, b"WLV-UP-02", None, "not_json"),
        (t.video, b"CAM-X", j(alert_id="VA-bad", camera_id="CAM-X", algorithm="fire_smoke",
                              confidence=0.9, ts=iso(now)), "unknown_device"),
        (t.reports, b"CZ-1", j(report_id="R-bad", reporter_id="CZ-1", category="ufo", ts=iso(now),
                               lon=117.86, lat=36.79), "unknown_category"),
    ]
    metas = await produce(bootstrap, [r[:3] for r in valid + bad])
    bad_metas = metas[len(valid):]

    events = decode(await consume(bootstrap, t.events, want=3))
    dead_records = await consume(bootstrap, t.deadletter, want=len(bad))
    dead = decode(dead_records)

    # Exactly three events: the IoT alarm, the confident camera alert, the report.
    assert sorted((e["source"], e["kind"]) for e in events) == [
        ("iot", "alarm"), ("report", "report"), ("video", "alarm")]
    by_source = {e["source"]: e for e in events}
    alarm = by_source["iot"]
    assert alarm["device_id"] == "WLV-UP-01" and alarm["category"] == "waterlogging"
    # An unknown field (firmware) does not ride along unless [ingest] keep_extra_fields names it.
    assert alarm["value"] == 0.33 and alarm["source_ref"]["extra"] == {}
    assert alarm["location"]["street_code"] == "370306002"
    assert alarm["source_ref"]["offset"] == metas[1].offset
    report = by_source["report"]
    assert "13905331234" not in report["description"] and "370306199001011234" not in report["description"]
    assert report["contact_phone"] == "139****1234" and report["evidence"] == ["https://p/1.jpg"]
    assert by_source["video"]["alert_id"] == "VA-it-1"
    # events.normalized is keyed by street code (the area key).
    keys = {r.key for r in await consume(bootstrap, t.events, want=3, settle=0)}
    assert keys == {b"370306002"}

    # Every bad record is a dead letter with its reason, coordinates and original bytes.
    assert len(dead) == len(bad)
    got = {(d["source_topic"], d["source_partition"], d["source_offset"]): d for d in dead}
    for (topic, key, value, reason), m in zip(bad, bad_metas, strict=True):
        d = got[(topic, m.partition, m.offset)]
        assert d["reason"] == reason, (reason, d)
        original = value or b""
        # bounded (the rest is on its topic) and masked by default (personal data at rest)
        assert d["original_kept"] == "masked"
        assert base64.b64decode(d["original_b64"]) == mask_bytes(original[:65536])
        assert d["original_size"] == len(original)
        assert d["original_sha256"] == hashlib.sha256(original).hexdigest()
        assert d["original_key_b64"] == base64.b64encode(key).decode()
        assert d["detail"]
    for rec in dead_records:
        assert rec.key == base64.b64decode(orjson.loads(rec.value)["original_key_b64"])

    # The conservation law holds per source, with the exact split.
    text = worker.metrics()
    table = outcomes(text)
    assert table["iot"] == {"received": 18, "normal": 2, "event": 1, "suppressed": 1, "deadletter": 14}
    assert table["video"] == {"received": 3, "normal": 0, "event": 1, "suppressed": 1, "deadletter": 1}
    assert table["report"] == {"received": 2, "normal": 0, "event": 1, "suppressed": 0, "deadletter": 1}
    assert all(conservation_ok(row) for row in table.values())
    reasons = {(lab["source"], lab["reason"]): v for lab, v in samples(text, "citybrain_deadletter_total")}
    assert reasons[("iot", "not_json")] == 2 and reasons[("iot", "wrong_key")] == 1
    assert reasons[("video", "unknown_device")] == 1 and reasons[("report", "unknown_category")] == 1


async def test_bad_registry_records_are_dead_letters_too(pipeline):
    bootstrap, t, worker = pipeline
    await produce(bootstrap, [(t.registry, b"BROKEN-1", b'{"device_id": "BROKEN-1", "kind": "drone"}')])
    dead = decode(await consume(bootstrap, t.deadletter, want=1, timeout=30))
    mine = [d for d in dead if d["source"] == "registry"]
    assert len(mine) == 1 and mine[0]["reason"] == "invalid_field" and mine[0]["field"] == "kind"


async def test_registry_updates_reach_a_running_worker(pipeline):
    bootstrap, t, worker = pipeline

    def unknown_devices() -> float:
        return sum(v for lab, v in samples(worker.metrics(), "citybrain_deadletter_total")
                   if lab["reason"] == "unknown_device")

    before_unknown = unknown_devices()
    before = outcomes(worker.metrics())["iot"]
    new = {"device_id": "WLV-NEW-1", "kind": "sensor", "sensor_type": "water_level",
           "lon": 117.87, "lat": 36.81, "status": "active"}
    await produce(bootstrap, [(t.registry, b"WLV-NEW-1", orjson.dumps(new))])
    await asyncio.sleep(1.0)  # the registry reader polls every 0.5 s
    await produce(bootstrap, [(t.iot, b"WLV-NEW-1", reading("WLV-NEW-1", seq=1))])
    text = await wait_for_metrics(
        worker, lambda m: outcomes(m)["iot"]["received"] > before["received"], timeout=30)
    after = outcomes(text)["iot"]
    # Accepted as a normal reading, not refused as an unknown device.
    assert after["received"] == before["received"] + 1
    assert after["normal"] == before["normal"] + 1
    assert unknown_devices() == before_unknown
