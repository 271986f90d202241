"""Media URLs as evidence carries them (part of the contract): ``/api/v1/media/<sha256>.<ext>``,
the SHA-256 of the image's bytes, so the same photo has one URL on every worker."""

from __future__ import annotations

import re

URL_PREFIX = "/api/v1/media/"
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
NAME = re.compile(r"^([0-9a-f]{64})\.(jpg|png|webp)$")


def url_of(sha: str, content_type: str) -> str:
    return f"{URL_PREFIX}{sha}.{EXTENSIONS[content_type]}"


def sha_of_url(url: str) -> str | None:
    """The hash a media URL names (relative or absolute), or None for any other URL."""
    i = url.find(URL_PREFIX)
    if i < 0:
        return None
    m = NAME.match(url[i + len(URL_PREFIX):])
    return m.group(1) if m else None
