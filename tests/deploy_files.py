"""The deployment files as the programs that read them see them: docker-compose.yml, a
broker's environment turned into server.properties as the apache/kafka image does it
(tests/unit/test_deploy_security.py, tests/integration/test_deploy_sasl_ssl.py), and what a
worker process hosts given its environment (the deploy tests, the bench's worker shapes)."""

import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from citybrain.config import Config
from citybrain.paths import PROJECT_ROOT

SECRETS_DIR = "/etc/kafka/secrets"            # where the image reads its TLS files
START_SCRIPT = PROJECT_ROOT / "deploy" / "kafka" / "start-sasl-ssl.sh"
# The image's variables that are no broker properties (KafkaDockerWrapper's exclusions).
_NOT_PROPERTIES = {"KAFKA_VERSION", "KAFKA_HEAP_OPT", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS",
                   "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS", "KAFKA_LOG4J_ROOT_LOGLEVEL",
                   "KAFKA_LOG4J_LOGGERS", "KAFKA_TOOLS_LOG4J_LOGLEVEL", "KAFKA_JMX_HOSTNAME"}


def hosted(env: Mapping[str, object]) -> tuple[list[str], bool]:
    """What a worker process with this environment hosts — its stages, and whether the
    console — as the worker's configuration reads it (which refuses a process that would
    host nothing).  Values taken from elsewhere (a k8s ``valueFrom``) are left out."""
    w = Config(env={k: str(v) for k, v in env.items() if not isinstance(v, dict)}).settings.worker
    return w.stages, w.console


def broker_properties(env: dict) -> dict[str, str]:
    """server.properties as the image writes it: KAFKA_ dropped, lower case, ``_`` → ``.``,
    ``___`` → ``-``, ``__`` → ``_``; the keystore's location from its file name (the image's
    configure step).  The start script adds the SASL_SSL listener's JAAS settings."""
    props = {}
    for key, value in env.items():
        if key.startswith("KAFKA_") and key not in _NOT_PROPERTIES:
            name = key[len("KAFKA_"):].lower().replace("_", ".").replace("...", "-").replace("..", "_")
            props[name] = str(value)
    props["ssl.keystore.location"] = f"{SECRETS_DIR}/{props['ssl.keystore.filename']}"
    return props


def listeners(value: str) -> dict[str, str]:
    """``NAME://host:port,…`` → {name: host:port}."""
    return dict(item.split("://", 1) for item in value.split(","))


def protocol_map(props: dict) -> dict[str, str]:
    return dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))


def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def make_dev_secrets(out: Path, *args: str) -> str:
    """scripts/kafka-dev-secrets.sh into ``out``; its standard output."""
    done = subprocess.run([str(PROJECT_ROOT / "scripts" / "kafka-dev-secrets.sh"), *args], capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "CITYBRAIN_KAFKA_SECRETS_DIR": str(out)})
    assert done.returncode == 0, done.stderr
    return done.stdout
