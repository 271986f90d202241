"""Reporter pseudonyms (假名化, DESIGN §16): a reporter's id — often a phone number — is
replaced at normalisation by ``rp_`` + 32 hex characters of HMAC-SHA256(key, id), so
``events.normalized``, ``workorders.*``, ``dispatch.*``, ``notifications.reporters`` and the
history store never hold it in clear.  The clear id stays only on ``ingest.reports`` (the
PII window, 7 days) and in the roster of reporters who asked to hear back.

Keyed, not a plain hash: the ids are few enough (every mobile number is ~10^10 of them)
that a plain hash is reversed by trying them all; without the key a pseudonym says nothing.
Stable: the same reporter is the same pseudonym on every order and every worker, so
equality (one reporter's reports, the follow-up's recipients) still works, and whoever
holds the key (the notifier, an operator's ``citybrain pseudonym``) can find a reporter's
records by computing it.  Pure: no Kafka, no configuration files.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

PREFIX = "rp_"
DEFAULT_ENV = "CITYBRAIN_REPORTER_KEY"
MIN_KEY_CHARS = 16
# Used when the key's variable is unset (demo, tests, a developer's machine): public, so its
# pseudonyms protect nothing — every process that falls back to it says so in its log.
DEVELOPMENT_KEY = "citybrain-development-reporter-key-not-secret"
_SHAPE = re.compile(r"^rp_[0-9a-f]{32}$")


class Pseudonymiser:
    __slots__ = ("_key", "development")

    def __init__(self, key: str | bytes, *, development: bool = False):
        raw = key.encode() if isinstance(key, str) else key
        if len(raw) < MIN_KEY_CHARS:
            raise ValueError(f"the reporter pseudonym key must be at least {MIN_KEY_CHARS} characters")
        self._key = raw
        self.development = development

    def __call__(self, reporter_id: str) -> str:
        digest = hmac.new(self._key, reporter_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return PREFIX + digest[:32]      # 128 bits: no two reporters of a city share one

    def matches(self, reporter_id: str, pseudonym: str) -> bool:
        """Is ``pseudonym`` this clear ``reporter_id``'s (compared in constant time)."""
        return hmac.compare_digest(self(reporter_id), pseudonym)

    def __repr__(self) -> str:            # never the key, not even in a traceback's locals
        return f"Pseudonymiser(development={self.development})"


def is_pseudonym(value: str | None) -> bool:
    return value is not None and _SHAPE.match(value) is not None


def from_environment(env: Mapping[str, str], variable: str = DEFAULT_ENV) -> Pseudonymiser:
    """The key from ``env[variable]``; unset or empty: the development key (flagged).  A key
    that is set but too short is refused (a typo must not become the city's key)."""
    key = env.get(variable, "")
    if not key:
        return Pseudonymiser(DEVELOPMENT_KEY, development=True)
    if len(key.encode()) < MIN_KEY_CHARS:
        raise ValueError(f"{variable}: the reporter pseudonym key must be at least {MIN_KEY_CHARS} "
                         "characters (32 random bytes, base64, recommended)")
    return Pseudonymiser(key)


DEVELOPMENT = Pseudonymiser(DEVELOPMENT_KEY, development=True)
