"""The project's Kafka clients, made in one place.

Every reader of stage outputs reads ``read_committed`` (DESIGN §11) — under exactly_once a
reader must never see a change whose transaction a crash then aborted — and a reader with
no position starts at the beginning unless it asks for ``latest``: aiokafka's own default
(``latest``) also applies on assignment, where it could overtake a ``seek_to_beginning``
and skip a partition whole (a state restore once read 35 of 44 changelog records).

Every client — stages, Faust, readers, the API, the CLI, the simulator, the benchmarks —
also takes the cluster's security settings from here (issue 17, docs/security.md): from
the environment, else from ``[kafka]`` in ``citybrain.toml`` (``security_protocol``,
``sasl_mechanism``, ``sasl_username``, ``ssl_cafile``; the password only from the
environment, never a file in the repository):

| variable | meaning |
|---|---|
| ``KAFKA_SECURITY_PROTOCOL`` | ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL`` |
| ``KAFKA_SASL_MECHANISM`` | ``SCRAM-SHA-512`` (default with SASL), ``SCRAM-SHA-256`` or ``PLAIN`` |
| ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD`` | the SASL user |
| ``KAFKA_SASL_PASSWORD_FILE`` | else the password from this file (a mounted secret: docker-compose.yml) |
| ``KAFKA_SSL_CAFILE`` | the CA (PEM) the brokers' certificates are checked against (else the system's) |
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.helpers import create_ssl_context

from citybrain.envsecrets import SecretFileError, env_secret
from citybrain.kafka.partitioner import kafka_partition
from citybrain.kafka.transactions_v2 import TransactionalProducer
from citybrain.paths import ConfigNotFound, config_dir

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class KafkaSecurityError(ValueError):
    pass


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    cafile: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> KafkaSecurity:
        protocol = (env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
        if protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"KAFKA_SECURITY_PROTOCOL {protocol!r} is none of {', '.join(PROTOCOLS)}")
        sasl = protocol.startswith("SASL")
        mechanism = (env.get("KAFKA_SASL_MECHANISM") or ("SCRAM-SHA-512" if sasl else "")).strip().upper() or None
        if sasl and mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"KAFKA_SASL_MECHANISM {mechanism!r} is none of {', '.join(MECHANISMS)}")
        username = env.get("KAFKA_SASL_USERNAME")
        try:
            password = env_secret("KAFKA_SASL_PASSWORD", env) if sasl else None
        except SecretFileError as e:
            raise KafkaSecurityError(str(e)) from e
        if sasl and not (username and password):
            raise KafkaSecurityError(f"{protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        cafile = env.get("KAFKA_SSL_CAFILE") or None
        if cafile and not os.path.isfile(cafile):
            raise KafkaSecurityError(f"KAFKA_SSL_CAFILE {cafile} is not a file")
        return cls(protocol, mechanism if sasl else None, username if sasl else None,
                   password if sasl else None, cafile)

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        return create_ssl_context(cafile=self.cafile) if self.tls else None

    def client_settings(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for this security (none for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            out["ssl_context"] = self.ssl_context()
        if self.mechanism:
            out.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                       sasl_plain_password=self.password)
        return out


_FILE_KEYS = {"security_protocol": "KAFKA_SECURITY_PROTOCOL", "sasl_mechanism": "KAFKA_SASL_MECHANISM",
              "sasl_username": "KAFKA_SASL_USERNAME", "ssl_cafile": "KAFKA_SSL_CAFILE"}


@functools.lru_cache(maxsize=8)
def _from_file(path: str) -> tuple[tuple[str, str], ...]:
    """The ``[kafka]`` security keys of ``citybrain.toml``, as the variables they stand for."""
    try:
        with open(path, "rb") as f:
            kafka = tomllib.load(f).get("kafka", {})
    except FileNotFoundError:
        return ()
    return tuple((var, str(kafka[key])) for key, var in _FILE_KEYS.items() if kafka.get(key))


def security() -> KafkaSecurity:
    """The cluster's security: the environment over the configuration file."""
    try:
        path = str(config_dir() / "citybrain.toml")
    except ConfigNotFound:
        path = ""
    return KafkaSecurity.from_env({**dict(_from_file(path) if path else ()), **os.environ})


def _secured(settings: dict[str, Any]) -> dict[str, Any]:
    return {**security().client_settings(), **settings}


# A hung broker (a long pause, a stalled disk; bench failover ``hang``) keeps its connections
# open and answers nothing: a client learns that its partitions have new leaders (the
# controller fences the node after its session, 3 s in deploy/) only from its next metadata
# refresh, and a request already sent to it only from its own timeout.  With aiokafka's
# defaults (metadata every 5 min, requests 40 s) dispatching stopped for the whole of a
# 15 s hang (docs/performance.md).  A metadata request is small; every client asks every 2 s.
METADATA_MAX_AGE_MS = 2000
# A produce (or a transaction's request) unanswered this long is retried — idempotent, so
# never written twice — on the partition's leader of the moment.
PRODUCER_REQUEST_TIMEOUT_MS = 5000
# A hot-path consumer's (stream/wiring.py): its heartbeat to a hung group coordinator waited
# aiokafka's 40 s while the group moved to another coordinator, which expired the member
# after its 10 s session — a rebalance after every hang.  Unanswered 5 s, the coordinator is
# marked dead and found again.  Not every consumer's: a timed-out request closes the
# connection and fails the others on it, and a busy box's reader (a suite's output reader
# under four test processes) had fetches time out at 5 s.
HOT_PATH_CONSUMER_REQUEST_TIMEOUT_MS = 5000


def kafka_consumer(*topics: str, **settings: Any) -> AIOKafkaConsumer:
    settings.setdefault("isolation_level", "read_committed")
    settings.setdefault("auto_offset_reset", "earliest")
    settings.setdefault("metadata_max_age_ms", METADATA_MAX_AGE_MS)
    return AIOKafkaConsumer(*topics, **_secured(settings))


# The hot path's producer settings: the stages', and the dispatch benchmark's source, loop and
# echo floor send alike.  linger 0: aiokafka keeps one produce request in flight per broker
# and producer, so records sent while one is out batch by themselves; a 1 ms linger only
# delayed each hop (measured at 1,000/s: ours p50 9.3 → 6.7 ms, drain not slower —
# docs/performance.md).  1 MB batches: with the default 16 KB a burst of snapshots went a
# round trip each.
HOT_PATH_PRODUCER: dict[str, Any] = {"linger_ms": 0, "acks": "all", "max_batch_size": 1024 * 1024}


# A stage's transaction lasts milliseconds; one left open by a worker lost for good holds
# its partitions' offsets (and a read_committed reader) until the broker aborts it after
# this long — Kafka Streams' exactly_once figure (aiokafka's default: a minute).
TRANSACTION_TIMEOUT_MS = 10_000


def kafka_producer(**settings: Any) -> AIOKafkaProducer:
    settings.setdefault("partitioner", kafka_partition)   # aiokafka's own, with a native hash
    # acks=all and idempotent unless a caller asks otherwise (DESIGN §17): with replicas, a
    # leader that acknowledged alone can lose the record when it fails, and a produce
    # retried across a leader change must not write a record twice.
    settings.setdefault("acks", "all")
    if settings["acks"] in ("all", -1) and not settings.get("transactional_id"):
        settings.setdefault("enable_idempotence", True)
    settings.setdefault("metadata_max_age_ms", METADATA_MAX_AGE_MS)
    settings.setdefault("request_timeout_ms", PRODUCER_REQUEST_TIMEOUT_MS)
    if settings.get("transactional_id"):
        settings.setdefault("transaction_timeout_ms", TRANSACTION_TIMEOUT_MS)
        # Kafka 4's transaction protocol v2 where the cluster finalizes it: two round trips
        # a transaction fewer (kafka/transactions_v2.py).
        return TransactionalProducer(**_secured(settings))
    return AIOKafkaProducer(**_secured(settings))


def kafka_admin(**settings: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**_secured(settings))


def kafka_client(**settings: Any) -> AIOKafkaClient:
    """The bare client (metadata only: the broker watch)."""
    return AIOKafkaClient(**_secured(settings))


class Stoppable(Protocol):
    async def stop(self) -> None: ...


async def stop_quietly(client: Stoppable, seconds: float = 30.0) -> None:
    """Stop a producer (or any client) and go on whatever happens: an idempotent aiokafka
    producer's ``stop`` waits for ever for a batch no leader takes (aiokafka#1101), and one
    that cannot flush raises — neither may hold up what stops it."""
    try:
        await asyncio.wait_for(client.stop(), seconds)
    except Exception as e:  # noqa: BLE001 - a producer that cannot flush while stopping
        logging.getLogger(__name__).warning("生产者停止失败 producer stop failed: %r", e)
