"""What every command shares: the configuration and the broker's address."""

from __future__ import annotations

import sys

from citybrain.config import Config


def load_config() -> Config:
    return Config()


def broker_address() -> str:
    """The Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS, or the local broker this
    project started); exits with a message when there is none."""
    from citybrain.kafka.admin import NoBroker, bootstrap_servers
    try:
        return bootstrap_servers()
    except NoBroker as e:
        sys.exit(f"错误 error: {e}")
