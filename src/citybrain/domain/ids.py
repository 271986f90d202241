"""Deterministic ids: the same source record always yields the same id."""

from __future__ import annotations

import hashlib


def stable_id(prefix: str, *parts: object) -> str:
    """``prefix-`` + 20 hex chars of SHA-1 over the parts (collision odds ~2^-80)."""
    h = hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return f"{prefix}-{h[:20]}"
