"""Kafka over TLS and SASL/SCRAM (issue 17): the project's local broker with a SASL_SSL
listener (a CA generated for it, a SCRAM-SHA-512 user) beside the plain one; a worker, the
topic and registry set-up and the test's own clients all reach it through the settings of
kafka/clients.py — and a client without them gets nothing."""

import asyncio
import os
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaError

from citybrain.kafka.clients import kafka_consumer
from citybrain_tools.local_kafka.broker import LocalBroker
from citybrain_tools.sample.sites import UNDERPASS
from citybrain_tools.simulate.traffic import iso

from .kafka_helpers import WorkerProcess, consume, decode, new_prefix, prepare, produce


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    broker = LocalBroker(Path(tmp_path_factory.mktemp("sasl-kafka")))
    broker.start(secure=True, die_with_parent=True)
    try:
        yield broker
    finally:
        broker.stop()


async def test_a_worker_works_over_sasl_ssl_and_a_plain_client_gets_nothing(secure_broker, tmp_path, monkeypatch):
    secure = secure_broker.secure
    assert secure is not None
    for name, value in secure.env().items():   # this process's clients: set-up, produce, consume
        monkeypatch.setenv(name, value)
    prefix = new_prefix("sasl")
    topics = await prepare(secure.address, prefix)
    security = {k: v for k, v in secure.env().items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    worker = WorkerProcess(secure.address, prefix, tmp_path, env=security).start()
    try:
        await asyncio.get_running_loop().run_in_executor(None, worker.wait_ready)
        lon, lat = UNDERPASS.offset(10, -10)
        report = {"report_id": "R-sasl-1", "reporter_id": "GM-0107", "channel": "grid_app",
                  "category": "waterlogging", "description": "下穿通道积水", "lon": lon, "lat": lat,
                  "ts": iso(time.time())}
        await produce(secure.address, [(topics.reports, b"GM-0107", orjson.dumps(report))])
        events = decode(await consume(secure.address, topics.events, want=1, timeout=60))
        assert [e["report_id"] for e in events] == ["R-sasl-1"]
        orders = decode(await consume(secure.address, topics.workorder_events, want=2, timeout=60))
        assert {o["type"] for o in orders} >= {"created", "dispatched"}
    finally:
        worker.stop()
    # Without TLS and SASL the listener gives nothing away.
    plain = AIOKafkaConsumer(topics.events, bootstrap_servers=secure.address, request_timeout_ms=3000)
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError, OSError)):
        await asyncio.wait_for(plain.start(), 10)
    await plain.stop()
    # A wrong password is refused.
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "not-the-password")
    wrong = kafka_consumer(topics.events, bootstrap_servers=secure.address, group_id=None, request_timeout_ms=3000)
    with pytest.raises((KafkaError, asyncio.TimeoutError, OSError)):
        await asyncio.wait_for(wrong.start(), 15)
    await wrong.stop()
    assert os.environ["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
