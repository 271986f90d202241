"""``config/platforms.toml``: the platforms whose cases come in with an ``external_ref`` and the
webhook each hears its cases' public changes on (validated; docs/integration.md).

Secrets are never in the file: each platform's HMAC key comes from the environment variable
its ``secret_env`` names (the notifier's convention, docs/security.md).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from citybrain.envsecrets import env_secret
from citybrain.retrypolicy import RetryPolicy
from citybrain.wire.models import WorkOrderStatus

# The public changes of an order (docs/integration.md) are named by the status they reach:
# registered (受理 立案), dispatched (派遣), accepted (签收), handled (处置), closed (办结),
# cancelled (作废), merged (并单).  Internal ones (comments, evidence, supervision,
# extensions, escalation, assists, visits, categories, returns) never leave.
PublicChange = WorkOrderStatus
PUBLIC_CHANGES: tuple[PublicChange, ...] = get_args(WorkOrderStatus)


class RetrySettings(RetryPolicy):
    # Attempts per callback before it is dead (a record on `deadletter`, reason callback_failed).
    attempts: int = Field(5, ge=1, le=20)


class Platform(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    # external_ref.system of its cases (as the gateway sends it: "12345", "szcg")
    system: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    url: str = Field(pattern=r"^https?://\S+$")
    secret_env: str = Field(min_length=1, pattern=r"^[A-Z_][A-Z0-9_]*$")
    changes: list[PublicChange] = Field(default_factory=lambda: list(PUBLIC_CHANGES))
    timeout_seconds: float = Field(5.0, gt=0, le=120)
    retry: RetrySettings = RetrySettings()

    def key(self) -> bytes:
        """The HMAC key: ``secret_env``'s value, or its ``…_FILE``'s (envsecrets.py)."""
        return (env_secret(self.secret_env) or "").encode()


class PlatformsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The consumer group is <topic prefix><group>.
    group: str = Field("citybrain-platforms", min_length=1)
    platform: list[Platform] = []

    @model_validator(mode="after")
    def _unique(self) -> PlatformsConfig:
        for what in ("name", "system"):
            seen = [getattr(p, what) for p in self.platform]
            twice = sorted({v for v in seen if seen.count(v) > 1})
            if twice:
                raise ValueError(f"platform {what} {', '.join(twice)} appears more than once")
        return self

    def by_system(self) -> dict[str, Platform]:
        return {p.system: p for p in self.platform}

    @classmethod
    def load(cls, path: Path) -> PlatformsConfig:
        if not path.exists():
            return cls()
        with path.open("rb") as f:
            return cls.model_validate(tomllib.load(f))


def platforms_path(directory: Path) -> Path:
    """CITYBRAIN_PLATFORMS_FILE points elsewhere in deployment."""
    return Path(os.environ.get("CITYBRAIN_PLATFORMS_FILE") or directory / "platforms.toml")
