"""Photos for cases (DESIGN §14 "Media"): ``POST /api/v1/media`` stores one, content-
addressed (SHA-256), and returns its URL; ``GET /api/v1/media/<sha256>.<ext>`` serves it
to a token that may see an order carrying it (or to operators, gateways and whoever
uploaded it).

Kafka is the only shared store: an upload is written to the compacted ``media.objects``
topic (key: the hash; value: the bytes) before it is acknowledged, and every worker folds
that topic into a local directory, so any worker serves any photo and a new worker has
them all. Only images whose bytes are what they claim (JPEG, PNG, WebP magic) and no
larger than ``MAX_BYTES`` are taken."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from citybrain.web.auth import Principal, Refused, may_see
from citybrain.wire.media import NAME, url_of

log = logging.getLogger("citybrain.media")
MAX_BYTES = 5 * 1024 * 1024


def sniff(data: bytes) -> str | None:
    """The image type the bytes are, by their magic numbers (not by what a client says)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class MediaStore:
    """This worker's copy of the media topic: one file per hash, written whole (a temp
    file renamed), so a reader never sees half a photo."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.directory / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.path(sha).exists()

    def put(self, data: bytes) -> tuple[str, str]:
        """(sha256, content type); a ValueError when the bytes are not an image we take."""
        if len(data) > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        kind = sniff(data)
        if kind is None:
            raise ValueError("not a JPEG, PNG or WebP image")
        sha = hashlib.sha256(data).hexdigest()
        path = self.path(sha)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha, kind

    def fold(self, records) -> None:
        """Records of the media topic into the store; a record that is not an image, or
        whose bytes do not hash to its key, is logged and skipped."""
        for m in records:
            if m.value is None or m.key is None:
                continue
            key = m.key.decode("ascii", "replace")
            if self.has(key):
                continue
            try:
                sha, _ = self.put(m.value)
            except ValueError as e:
                log.warning("媒体跳过 media record skipped %s@%d/%d: %s", m.topic, m.partition, m.offset, e)
                continue
            if sha != key:
                log.warning("媒体键不符 media record %s@%d/%d keyed %s hashes to %s: skipped",
                            m.topic, m.partition, m.offset, key[:16], sha[:16])
                self.path(sha).unlink(missing_ok=True)


class MediaRoutes:
    def __init__(self, store: MediaStore, send: Callable[[str, bytes], Awaitable[None]],
                 orders_with: Callable[[str], list[dict]]):
        self.store, self.send, self.orders_with = store, send, orders_with
        self.uploaded_by: dict[str, str] = {}      # sha → the principal who uploaded it (this worker)

    async def upload(self, request: web.Request, p: Principal) -> dict:
        if request.content_length is not None and request.content_length > MAX_BYTES:
            raise Refused(413, "too_large", f"a photo may be at most {MAX_BYTES // (1024 * 1024)} MiB", "body")
        data = await request.content.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise Refused(413, "too_large", f"a photo may be at most {MAX_BYTES // (1024 * 1024)} MiB", "body")
        if not data:
            raise Refused(422, "invalid_field", "the body is empty: send the image's bytes", "body")
        declared = (request.content_type or "").lower()
        kind = sniff(data)
        if kind is None:
            raise Refused(415, "unsupported_media_type", "only JPEG, PNG and WebP images are taken", "body")
        if declared not in ("", "application/octet-stream", kind):
            raise Refused(415, "unsupported_media_type", f"the bytes are {kind}, not {declared}", "Content-Type")
        sha, stored = await asyncio.to_thread(self.store.put, data)
        await self.send(sha, data)          # in Kafka before the answer: every worker will have it
        self.uploaded_by[sha] = p.id
        return {"url": url_of(sha, stored), "sha256": sha, "size": len(data), "content_type": stored}

    def serve(self, request: web.Request, p: Principal) -> web.StreamResponse:
        name = request.match_info["name"]
        m = NAME.match(name)
        if m is None:
            raise Refused(404, "not_found", "no such media (names are <sha256>.jpg|png|webp)", "name")
        sha = m.group(1)
        if not self.store.has(sha):
            raise Refused(404, "not_found", f"no media {sha[:12]}… on this worker (yet)", "name")
        if not self._may_read(p, sha):
            raise Refused(403, "out_of_scope", "no order this token may see carries this photo", "name")
        kind = sniff(self.store.path(sha).read_bytes()[:16]) or "application/octet-stream"
        return web.FileResponse(self.store.path(sha), headers={
            "Content-Type": kind, "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff"})

    def _may_read(self, p: Principal, sha: str) -> bool:
        if p.role in ("operator", "gateway") or self.uploaded_by.get(sha) == p.id:
            return True
        return any(may_see(p, snap) for snap in self.orders_with(sha))
