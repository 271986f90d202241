"""A device of the registry (一源一码) as every worker holds it: compact, because every
worker holds the whole city's — 160,000 devices as pydantic models took 187 MB, as these
~55 MB (the wire model validates each record on the way in: wire.models.RegistryRecord)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citybrain.wire.models import RegistryRecord


def _shared(s: str | None) -> str | None:
    return None if s is None else sys.intern(s)


def _word(s: str) -> str:
    return sys.intern(s)


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    kind: str                        # sensor | camera
    sensor_type: str | None
    lon: float
    lat: float
    owner_department: str | None
    status: str                      # active | retired
    interval_seconds: float | None   # its own reporting interval, else its type's

    @classmethod
    def of(cls, record: RegistryRecord) -> Device:
        """From a validated ``RegistryRecord`` (the few distinct words shared)."""
        return cls(record.device_id, _word(record.kind), _shared(record.sensor_type), record.lon, record.lat,
                   _shared(record.owner_department), _word(record.status), record.interval_seconds)
