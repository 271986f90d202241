"""The registry on the command line: `citybrain registry publish` keys every record by its
device_id (UTF-8) — the compacted topic keeps one record per key, and the workers register a
device only under its own id — and `citybrain kpis` reads the registry by the same rule."""

import json

import pytest

from citybrain.cli import main
from citybrain.kafka import admin
from citybrain.kafka.admin import publish_registry, registry_key


class FakeProducer:
    sent: list = []

    def __init__(self, **settings):
        self.settings = settings

    async def start(self):
        pass

    async def stop(self):
        pass

    async def send(self, topic, value, key=None):
        FakeProducer.sent.append((topic, key, value))

        async def ack():
            return None
        return ack()


@pytest.fixture
def producer(monkeypatch):
    FakeProducer.sent = []
    monkeypatch.setattr(admin, "kafka_producer", FakeProducer)
    return FakeProducer


def record(device_id, **extra):
    return {"device_id": device_id, "kind": "sensor", "sensor_type": "water_level", "lon": 117.87,
            "lat": 36.81, **extra}


async def test_every_record_is_keyed_by_its_device_id(producer):
    records = [record("WLV-1"), record("井盖-7"), record("WLV-1", status="retired")]
    assert await publish_registry("unused:9092", "registry.devices", records) == 3
    assert [(t, k) for t, k, _ in producer.sent] == [
        ("registry.devices", b"WLV-1"), ("registry.devices", "井盖-7".encode()), ("registry.devices", b"WLV-1")]
    assert all(json.loads(v)["device_id"].encode() == k for _, k, v in producer.sent)


@pytest.mark.parametrize("bad", [{"kind": "sensor"}, record(7), record(""), "WLV-1"])
async def test_a_record_that_cannot_be_keyed_fails_the_publish_before_anything_is_sent(producer, bad):
    with pytest.raises(ValueError, match="device_id"):
        await publish_registry("unused:9092", "registry.devices", [record("WLV-1"), bad])
    assert producer.sent == []
    with pytest.raises(ValueError):
        registry_key(bad)


def test_the_command_keys_the_file_by_device_id(producer, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "unused:9092")
    path = tmp_path / "devices.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [record("A-1"), record("水位-2")]) + "\n",
                    encoding="utf-8")
    assert main(["registry", "publish", "--file", str(path)]) == 0
    assert [k for _, k, _ in producer.sent] == [b"A-1", "水位-2".encode()]
    assert "2 devices/cameras" in capsys.readouterr().out


def test_the_command_refuses_a_file_the_workers_would_refuse(producer, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "unused:9092")
    path = tmp_path / "devices.jsonl"
    path.write_text(json.dumps(record("A-1")) + "\n" + json.dumps({"device_id": "B-1", "kind": "drone"}) + "\n",
                    encoding="utf-8")
    assert main(["registry", "publish", "--file", str(path)]) == 1
    assert producer.sent == []
    err = capsys.readouterr().err
    assert "line 2" in err and "not published" in err


def test_the_sample_registry_is_publishable(config):
    from citybrain.cli.setup import registry_problems
    from citybrain_tools.sample.registry_builder import load
    assert registry_problems(load(config.registry_path)) == []


def test_kpis_count_the_registry_as_the_workers_hold_it(monkeypatch, capsys):
    """`citybrain kpis`' 设备完好率 counts registered devices by the same key rule."""
    from types import SimpleNamespace

    from citybrain.cli import read

    def body(device_id, **extra):
        return json.dumps(record(device_id, **extra)).encode()
    log = [(b"A", body("A")), (b"B", body("B")), (b"OTHER-C", body("C")),        # C: wrong key
           (b"D", body("D")), (b"D", None),                                     # D: deleted
           (b"E", body("E")), (b"E", b"not json"),                              # E: refused last
           (b"F", body("F", status="retired"))]                                 # F: not active

    # devices.liveness: A heard, B silent (联网率 1 of 2)
    live = [(b"A", json.dumps({"device_id": "A", "networked": True, "at": 1.0}).encode()),
            (b"B", json.dumps({"device_id": "B", "networked": False, "at": 1.0}).encode())]

    async def fake_read(bootstrap, topic, on_record, label, start=None):
        records = log if topic.endswith("registry.devices") else live if topic.endswith("devices.liveness") else []
        for key, value in records:
            on_record(SimpleNamespace(key=key, value=value))
        return len(records)
    monkeypatch.setattr(read, "read_topic_to_end", fake_read)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "unused:9092")
    assert main(["kpis", "--period", "2026-11"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if "全部 all" in row)
    assert line.split()[2:] == ["2", "0", "100.0%", "50.0%"], out    # registered, faulty, 完好率, 联网率
