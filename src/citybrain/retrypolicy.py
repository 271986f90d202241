"""How often and how patiently an outbound delivery is tried again (validated settings).

The notifier's channels (``config/notify.toml``) and the platforms' callbacks
(``config/platforms.toml``) retry alike; each names its own number of attempts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Attempts before a delivery is dead (a record on its dead-letter topic).
    attempts: int = Field(3, ge=1, le=20)
    # Waits between attempts: backoff_seconds × 2^(attempt-1), at most max_backoff_seconds.
    backoff_seconds: float = Field(1.0, ge=0)
    max_backoff_seconds: float = Field(60.0, ge=0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next."""
        return min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)
