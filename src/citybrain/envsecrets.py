"""A secret from the environment: the variable itself, or the file its ``…_FILE`` twin
names — a mounted secret (compose's /run/secrets, a Kubernetes volume), so no deployment
file ever holds a password (docs/security.md).  The one way the project reads a credential:
Kafka's SASL password, the notifier's SMTP and SMPP passwords and webhook key, each
platform's callback key."""

from __future__ import annotations

import os
from collections.abc import Mapping


class SecretFileError(ValueError):
    """The ``…_FILE`` a secret is read from cannot be read, or is empty."""


def env_secret(name: str, env: Mapping[str, str] = os.environ) -> str | None:
    """``name``'s value, else the contents of the file ``name_FILE`` names (stripped), else
    None.  Raises ``SecretFileError`` naming the variable when that file is unreadable or
    empty: a deployment that mounts a secret means it to be used."""
    value = env.get(name)
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as e:
        raise SecretFileError(f"{name}_FILE {path}: {e.strerror or e}") from e
    if not value:
        raise SecretFileError(f"{name}_FILE {path} is empty")
    return value
