"""Issue 11, through Kafka: every record that used to stop a worker (and keep stopping it
after restarts) is now a bounded dead letter or a counted refusal, and the worker keeps
going — including the good alarm that shares a batch with them."""

import signal
import time
import urllib.request

import orjson
import pytest

from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, consume, decode, new_prefix, prepare, produce, wait_for_metrics

pytestmark = pytest.mark.integration


REGISTRY_TOO_LARGE = 'citybrain_deadletter_total{reason="too_large",source="registry"} 1.0'


def smoke(value: float, ago: float, seq: int | None = None, **extra) -> bytes:
    body = {"device_id": "SMK-00001", "sensor_type": "smoke", "value": value, "ts": iso(time.time() - ago),
            **extra}
    if seq is not None:
        body["seq"] = seq
    return orjson.dumps(body)


def deep(depth: int) -> bytes:
    return smoke(0.0, 30)[:-1] + b',"extra":' + b'{"x":' * depth + b"1" + b"}" * depth + b"}"


async def test_poison_records_beside_a_good_alarm(kafka_bootstrap, tmp_path):
    prefix = new_prefix("poison")
    t = await prepare(kafka_bootstrap, prefix)
    worker = WorkerProcess(kafka_bootstrap, prefix, tmp_path).start()
    try:
        big_report = orjson.dumps({"report_id": "R-big", "reporter_id": "GM-0107", "category": "road_damage",
                                   "description": "路" * 300_000, "ts": iso(time.time() - 5),
                                   "lon": 117.86, "lat": 36.79})                         # ~900 KB
        poison = [
            (t.iot, b"SMK-00001", smoke(0.0, 40, blob="x" * 786_000), "iot", "too_large"),
            (t.iot, b"SMK-00001", deep(255), "iot", "invalid_field"),
            (t.iot, b"SMK-00001", smoke(0.0, 35, seq=18446744073709551615), "iot", "invalid_field"),
            (t.reports, b"GM-0107", big_report, "report", "too_large"),
            (t.registry, b"SMK-BAD", b'{"device_id": "' + b"x" * 1_000_000 + b'"}', "registry", "too_large"),
            (t.commands, b"WO-x", b"\xff not json", "command", "not_json"),
            (t.commands, b"WO-y", b'{"command_id": "' + b"c" * 1_000_000 + b'"}', "command", "too_large"),
        ]
        # The alarm in the same partition and the same batch as the poison readings.
        await produce(kafka_bootstrap, [(tp, k, v) for tp, k, v, _, _ in poison[:3]]
                      + [(t.iot, b"SMK-00001", smoke(0.3, 20, seq=2))] + [(tp, k, v) for tp, k, v, _, _ in poison[3:]])

        dead = decode(await consume(kafka_bootstrap, t.deadletter, want=len(poison), timeout=60))
        got = sorted((d["source"], d["reason"]) for d in dead)
        assert got == sorted((src, reason) for *_, src, reason in poison), got
        assert all(len(orjson.dumps(d)) < 200_000 for d in dead)       # bounded, whatever came in

        changes = decode(await consume(kafka_bootstrap, t.workorder_events, want=2, timeout=60))
        smoke_orders = {c["work_order_id"] for c in changes
                        if any(e["finder"] == "SMK-00001" for e in c["snapshot"]["events"])}
        assert len(smoke_orders) == 1, "the alarm beside the poison records became its order"
        assert {c["type"] for c in changes} >= {"created", "dispatched"}

        # Still running and ready; killed and restarted on the same topics, it does not
        # crash-loop on them, and a new alarm goes through.
        text = await wait_for_metrics(worker, lambda m: REGISTRY_TOO_LARGE in m, timeout=10)
        assert REGISTRY_TOO_LARGE in text and 'citybrain_deadletter_total{reason="not_json",source="command"} 1.0' in text
        assert worker.proc.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/readyz", timeout=5) as r:
            assert r.status == 200
        worker.stop(signal.SIGKILL)
        worker.start()
        await produce(kafka_bootstrap, [(t.iot, b"SMK-00002", orjson.dumps(
            {"device_id": "SMK-00002", "sensor_type": "smoke", "value": 0.4, "ts": iso(time.time() - 5)}))])
        changes = decode(await consume(kafka_bootstrap, t.workorder_events, want=4, timeout=60))
        finders = {e["finder"] for c in changes for e in c["snapshot"]["events"]}
        assert {"SMK-00001", "SMK-00002"} <= finders and worker.proc.poll() is None
        print(f"\npoison records: {len(poison)} → dead letters {got}; worker alive after restart")
    finally:
        worker.stop()
