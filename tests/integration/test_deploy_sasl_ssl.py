"""docker-compose.yml's Kafka settings run for real (issue 38 item 3; no Docker engine here):
the three brokers' environment, rendered to server.properties as the apache/kafka image
does and completed as deploy/kafka/start-sasl-ssl.sh does (the keystore's passwords from
their files, the inter-broker JAAS user, the storage formatted with both SCRAM users), on
three Kafka JVMs from the project's jars — only the host names and ports swapped for free
ones on 127.0.0.1 and the secrets' directory for one made by scripts/kafka-dev-secrets.sh.
The controllers must form a quorum over mutual TLS, the brokers replicate over SCRAM
(every replica in sync), a client given worker-1's settings writes and reads, and a wrong
password gets nothing."""

import asyncio
import base64
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from citybrain.kafka.clients import KafkaSecurity, kafka_admin, kafka_consumer, kafka_producer
from citybrain_tools.local_kafka.broker import LocalBroker, ensure_jars, free_port

from ..deploy_files import SECRETS_DIR, broker_properties, compose, make_dev_secrets

BROKERS = ["kafka", "kafka-2", "kafka-3"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The compose cluster on 127.0.0.1: (bootstrap list, secrets directory)."""
    root = tmp_path_factory.mktemp("compose-kafka")
    secrets = root / "secrets"
    make_dev_secrets(secrets)
    services = compose()["services"]
    ports = {name: (free_port(), free_port()) for name in BROKERS}
    voters = ",".join(f"{services[n]['environment']['KAFKA_NODE_ID']}@127.0.0.1:{ports[n][1]}" for n in BROKERS)
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    libs = ensure_jars()
    read = {name: (secrets / name).read_text().strip() for name in ("keystore-password", "broker-password",
                                                                    "client-password")}
    spawned = []
    for name in BROKERS:
        env = services[name]["environment"]
        props = {k: v.replace(SECRETS_DIR, str(secrets)) for k, v in broker_properties(env).items()}
        port, controller = ports[name]
        props.update({"listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
                      "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
                      "controller.quorum.voters": voters, "log.dirs": str(root / name / "data")})
        # The image's configure step (passwords from the credential files), then the start script.
        props["ssl.keystore.password"] = props["ssl.key.password"] = read["keystore-password"]
        props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] = (
            'org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="broker" password="{read["broker-password"]}";')
        node = LocalBroker(root / name)
        node.state_dir.mkdir(parents=True)
        path = node.state_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        formatted = subprocess.run(
            ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", "--ignore-formatted",
             "--cluster-id", cluster_id, "-c", str(path),
             "--add-scram", f"SCRAM-SHA-512=[name=broker,password={read['broker-password']}]",
             "--add-scram", f"SCRAM-SHA-512=[name={env['SCRAM_CLIENT_USERNAME']},password={read['client-password']}]"],
            capture_output=True, text=True, timeout=120)
        assert formatted.returncode == 0, formatted.stdout + formatted.stderr
        node._heap, node._die_with_parent = "384m", True
        spawned.append((node, *node._spawn(libs, path), f"127.0.0.1:{port}"))
    try:   # none finishes starting before a quorum of controllers is up: spawned first
        bootstrap = ",".join(node._wait_started(proc, lines, address, 120) for node, proc, lines, address in spawned)
        yield bootstrap, secrets
    finally:   # scratch nodes: killed at once (a controlled shutdown of the last ones waits for a quorum)
        for node, *_ in spawned:
            pid = node.pid()
            if pid is not None:
                os.killpg(pid, signal.SIGKILL)
            node.stop()


def worker_settings(secrets: Path, **override: str) -> dict:
    """worker-1's Kafka settings from docker-compose.yml, its mounted files swapped for ours."""
    env = {k: str(v) for k, v in compose()["services"]["worker-1"]["environment"].items() if k.startswith("KAFKA_")}
    env.update(KAFKA_SASL_PASSWORD_FILE=str(secrets / "client-password"), KAFKA_SSL_CAFILE=str(secrets / "ca.pem"))
    return KafkaSecurity.from_env({**env, **override}).client_settings()


async def test_the_compose_brokers_form_a_sasl_ssl_cluster_a_worker_can_use(deployed):
    bootstrap, secrets = deployed
    settings = worker_settings(secrets)
    admin = kafka_admin(bootstrap_servers=bootstrap, **settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("deploy.check", 3, 3, topic_configs={"min.insync.replicas": "2"})])
        deadline = time.monotonic() + 30
        while True:   # every replica in sync: the brokers fetch from each other over SCRAM
            described = (await admin.describe_topics(["deploy.check"]))[0]["partitions"]
            # Just after the create, the broker asked may not know the topic yet: no
            # partitions at all is "not yet", not "all in sync" (all() of nothing is True).
            if (described and all(len(p["isr"]) == 3 for p in described)) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert [sorted(p["isr"]) for p in described] == [[1, 2, 3]] * 3
    finally:
        await admin.close()
    producer = kafka_producer(bootstrap_servers=bootstrap, **settings)   # acks=all, idempotent
    await producer.start()
    try:
        for i in range(30):
            await producer.send_and_wait("deploy.check", f"r{i}".encode(), key=f"k{i}".encode())
    finally:
        await producer.stop()
    consumer = kafka_consumer("deploy.check", bootstrap_servers=bootstrap, group_id="deploy-check", **settings)
    await consumer.start()
    try:
        got: set[bytes] = set()
        deadline = time.monotonic() + 30
        while len(got) < 30 and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            got |= {r.value for records in batches.values() for r in records}
    finally:
        await consumer.stop()
    assert got == {f"r{i}".encode() for i in range(30)}
    # A wrong password gets nothing.
    wrong = kafka_consumer("deploy.check", bootstrap_servers=bootstrap, request_timeout_ms=5000,
                           **worker_settings(secrets, KAFKA_SASL_PASSWORD="not-the-password"))
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError)):
        await asyncio.wait_for(wrong.start(), 20)
    await wrong.stop()
