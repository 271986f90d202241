"""The cluster's security settings: the environment over citybrain.toml's [kafka]."""

import pytest

from citybrain.kafka import clients
from citybrain.kafka.clients import KafkaSecurity, KafkaSecurityError


def test_plaintext_by_default_adds_nothing():
    assert KafkaSecurity.from_env({}).client_settings() == {}


def test_sasl_ssl_settings_for_aiokafka():
    sec = KafkaSecurity.from_env({"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_USERNAME": "u",
                                  "KAFKA_SASL_PASSWORD": "p"})
    got = sec.client_settings()
    assert (got["security_protocol"], got["sasl_mechanism"], got["sasl_plain_username"]) == \
        ("SASL_SSL", "SCRAM-SHA-512", "u")
    assert got["ssl_context"] is not None


@pytest.mark.parametrize("env, names", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u",
      "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SSL_CAFILE": "/nowhere/ca.pem"}, "KAFKA_SSL_CAFILE"),
])
def test_a_wrong_setting_names_itself(env, names):
    with pytest.raises(KafkaSecurityError, match=names):
        KafkaSecurity.from_env(env)


def test_the_environment_wins_over_the_file_and_the_password_comes_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "citybrain.toml").write_text(
        '[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "SCRAM-SHA-256"\nsasl_username = "from-file"\n')
    monkeypatch.setenv("CITYBRAIN_CONFIG_DIR", str(tmp_path))
    for var in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SSL_CAFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "secret")
    clients._from_file.cache_clear()
    sec = clients.security()
    assert (sec.protocol, sec.mechanism, sec.username, sec.password) == \
        ("SASL_PLAINTEXT", "SCRAM-SHA-256", "from-file", "secret")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "from-env")
    assert clients.security().username == "from-env"
    clients._from_file.cache_clear()


def test_the_password_may_come_from_a_mounted_secret_file(tmp_path):
    secret = tmp_path / "kafka_client_password"
    secret.write_text("from-a-secret\n")
    base = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "citybrain",
            "KAFKA_SASL_PASSWORD_FILE": str(secret)}
    assert KafkaSecurity.from_env(base).password == "from-a-secret"
    assert KafkaSecurity.from_env({**base, "KAFKA_SASL_PASSWORD": "env"}).password == "env"   # the variable wins
    with pytest.raises(KafkaSecurityError, match="KAFKA_SASL_PASSWORD_FILE"):
        KafkaSecurity.from_env({**base, "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})
    secret.write_text("\n")
    with pytest.raises(KafkaSecurityError, match="KAFKA_SASL_PASSWORD_FILE .* is empty"):
        KafkaSecurity.from_env(base)


async def test_every_client_refreshes_metadata_every_2_s_and_a_producer_gives_up_on_a_request_after_5_s():
    """A hung broker answers nothing (bench failover ``hang``): the clients learn of the new
    leaders from a metadata refresh and a producer gives up on a request sent to it by its
    timeout (a stage's consumer too: stream/wiring.py); a caller may override."""
    from citybrain.kafka.clients import kafka_consumer, kafka_producer
    producer = kafka_producer(bootstrap_servers="127.0.0.1:1")
    consumer = kafka_consumer("orders", bootstrap_servers="127.0.0.1:1", group_id=None)
    slow = kafka_producer(bootstrap_servers="127.0.0.1:1", request_timeout_ms=30000)
    try:
        assert (producer.client._metadata_max_age_ms, producer.client._request_timeout_ms) == (2000, 5000)
        assert (consumer._client._metadata_max_age_ms, consumer._client._request_timeout_ms) == (2000, 40000)
        assert slow.client._request_timeout_ms == 30000
    finally:
        for client in (producer, slow):
            await client.stop()
        await consumer.stop()


async def test_a_transactional_producer_times_its_transactions_out_after_10_s():
    """A worker lost for good leaves a transaction open that holds its partitions' offsets
    until the broker aborts it: 10 s (Kafka Streams' figure), not aiokafka's minute."""
    from citybrain.kafka.clients import kafka_producer
    producer = kafka_producer(bootstrap_servers="127.0.0.1:1", transactional_id="grp@w-3")
    try:
        assert producer._txn_manager.transaction_timeout_ms == 10_000
    finally:
        await producer.stop()
