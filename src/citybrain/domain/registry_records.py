"""What one ``registry.devices`` record means for the registry (pure: bytes in, a verdict out).

``registry.devices`` is compacted: the broker keeps the latest record per *key*, and a
tombstone (null value) deletes the key.  A worker that read the whole log and one that
reads it after compaction must hold the same registry, so the registry is a function of
the latest record under each key and of nothing else:

- a record names a device only under the device's own id: its key must be its
  ``device_id`` in UTF-8.  Otherwise it is a ``wrong_key`` dead letter and registers
  nothing — a device registered from key ``OTHER-X`` could not be retired or deleted
  under ``X``, and would come back from ``OTHER-X`` at the next restart;
- a record under key K replaces whatever K held: a usable record is device K; a
  tombstone, or a record that is a dead letter (too large, not JSON, invalid, wrong key),
  leaves K without a device — as compaction will once it has dropped K's older records.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from citybrain.domain.normalize import validation_failure
from citybrain.domain.registry import Device
from citybrain.wire.models import RegistryRecord


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """``key``: the record's key as text — the only device id it may change; None when it
    has none or it is not UTF-8 (no device is stored under such a key).  ``device``: the
    device the key names now (None: none — a tombstone, or a dead letter when ``reason``
    is set)."""

    key: str | None
    device: Device | None = None
    reason: str | None = None
    detail: str = ""
    field: str | None = None
    exception_type: str | None = None

    @property
    def dead(self) -> bool:
        return self.reason is not None


def key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


def read_registry_record(key: bytes | None, value: bytes | None, max_bytes: int) -> RegistryEntry:
    """The verdict on one record (raises only on a bug: see ``internal_error``)."""
    k = key_text(key)
    if value is None:   # a tombstone: the id is retired and forgotten
        return RegistryEntry(k)
    if len(value) > max_bytes:
        return RegistryEntry(k, reason="too_large", detail=f"record is {len(value)} bytes; the limit is {max_bytes}")
    try:
        rec = RegistryRecord.model_validate(orjson.loads(value))
    except orjson.JSONDecodeError as e:
        return RegistryEntry(k, reason="not_json", detail=f"not JSON: {e}")
    except ValidationError as e:
        reason, field, _ = validation_failure(e)
        return RegistryEntry(k, reason=reason, detail=str(e).splitlines()[0], field=field)
    if k != rec.device_id:
        shown = "null" if key is None else repr(key.decode("utf-8", "replace"))
        return RegistryEntry(k, reason="wrong_key", field="key",
                             detail=f"record key {shown} is not the device_id {rec.device_id!r}; registry.devices "
                                    "is compacted by key, so a device is registered, retired and deleted only "
                                    "under its own id")
    return RegistryEntry(k, Device.of(rec))


def internal_error(key: bytes | None, e: BaseException) -> RegistryEntry:
    """The verdict when reading the record raised: a dead letter like any unusable record."""
    return RegistryEntry(key_text(key), reason="internal_error", detail=f"{type(e).__name__}: {e}",
                         exception_type=type(e).__name__)


def apply_entry(devices: dict[str, Device], entry: RegistryEntry) -> Device | None:
    """The registry after the record: its key names ``entry.device`` or nothing.  Returns
    the device the key named before (None if none)."""
    if entry.key is None:
        return None
    if entry.device is not None:
        before = devices.get(entry.key)
        devices[entry.key] = entry.device
        return before
    return devices.pop(entry.key, None)
