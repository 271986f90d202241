"""``config/notify.toml``: the notifier's channels, retries and escalation (validated).

Secrets are never in the file: the SMTP and SMPP passwords and the webhook HMAC key come
from the environment variables the file names.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from citybrain.envsecrets import env_secret
from citybrain.notify.roster import Channel
from citybrain.retrypolicy import RetryPolicy


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    sender: str = Field("citybrain@example.invalid", pattern=r"^[^@\s]+@[^@\s]+$")
    starttls: bool = False
    username: str = ""
    password_env: str = "CITYBRAIN_SMTP_PASSWORD"
    timeout_seconds: float = Field(10.0, gt=0)


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # HMAC-SHA256 key of the X-Citybrain-Signature header (sha256=<hex of the body's HMAC>).
    secret_env: str = "CITYBRAIN_WEBHOOK_SECRET"
    timeout_seconds: float = Field(5.0, gt=0)


class SmppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(2775, ge=1, le=65535)
    system_id: str = "citybrain"
    password_env: str = "CITYBRAIN_SMPP_PASSWORD"
    source_addr: str = "12345"
    timeout_seconds: float = Field(10.0, gt=0)
    # Delivery reports: a receiver bind (same system_id) that turns each deliver_sm receipt
    # into delivered / failed on notifications.deliveries (notify/receipts.py).
    receipts: bool = True


class RetrySettings(RetryPolicy):
    # Attempts per delivery before it is dead (failed, and a record on notifications.deadletter).
    attempts: int = Field(3, ge=1, le=20)


class EscalationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # An urgent dispatch (priority in `priorities`, or under emergency response) not
    # acknowledged within ack_minutes goes to the next person of the desk's roster, then to
    # the supervisors of `final_level`.
    enabled: bool = True
    priorities: list[str] = ["urgent"]
    ack_minutes: float = Field(15.0, gt=0)
    final_level: str = Field("district", pattern=r"^(street|district|city)$")


class LimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # At most this many messages to one person on one channel in any hour (urgent orders and
    # emergency changes are not limited); beyond it a notice is dropped and counted
    # skipped_rate_limited.  0: no limit.
    per_person_per_hour: int = Field(30, ge=0)


Unknown = Literal["resend", "report"]


class InFlightSettings(BaseModel):
    """A delivery is claimed (``sending`` on notifications.deliveries, acks=all) just before
    its channel gets it.  A notifier that finds its predecessor's claim without an outcome
    cannot know whether the message went out (docs/notifier.md, "Exactly once"): ``resend``
    under the same delivery id — for a receiver that deduplicates by it (a webhook's
    X-Citybrain-Delivery / Idempotency-Key) — or ``report`` it: status failed, detail
    outcome_unknown, a record on notifications.deadletter for a person to check; never sent
    twice.  An SMTP server and an SMSC do not deduplicate, so email and SMS report."""

    model_config = ConfigDict(extra="forbid")
    webhook: Unknown = "resend"
    email: Unknown = "report"
    sms: Unknown = "report"
    # Messages being handed to each channel at once: a claim is written only when a slot is
    # free, so at most this many per channel are ever in doubt after a crash.
    concurrency: int = Field(4, ge=1, le=64)


class NotifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The consumer group is <topic prefix><group>.
    group: str = "citybrain-notifier"
    # The changes of dispatch.<desk> that are a new dispatch for the desk's people.
    dispatch_changes: list[str] = ["dispatched", "assist_added"]
    # The channels used at all (a person's contact on another channel is not used).
    channels: list[Channel] = ["sms", "email", "webhook"]
    smtp: SmtpSettings = SmtpSettings()
    webhook: WebhookSettings = WebhookSettings()
    smpp: SmppSettings = SmppSettings()
    retry: RetrySettings = RetrySettings()
    escalation: EscalationSettings = EscalationSettings()
    limits: LimitSettings = LimitSettings()
    in_flight: InFlightSettings = InFlightSettings()

    @classmethod
    def load(cls, path: Path) -> NotifySettings:
        if not path.exists():
            return cls()
        with path.open("rb") as f:
            return cls.model_validate(tomllib.load(f))


def secret(env_name: str) -> str:
    """The variable's value, or its ``…_FILE``'s (a mounted secret: envsecrets.py); "" if neither."""
    return env_secret(env_name) or ""
