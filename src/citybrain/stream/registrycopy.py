"""The device registry on local disk, with the ``registry.devices`` offsets it reflects,
so a restarted worker reads only the topic's tail (issue 38: a worker's start-to-ready).

Measured: a city's registry (162,853 devices) took 2.2–2.8 s to read and validate from
the topic — on the path of every restart, since the stages wait for it.  The copy is
the devices as the domain holds them (``Device``), written whole and atomically (a
temporary file renamed over the last), in JSON by column: nothing in it runs as code.  A copy of
another topic, or of another shape of ``Device`` (a release that changed it), is
ignored; so is one the topic never had the offsets of (stream/logreader.py rejects
those; the registry is then read from the beginning).  A copy is a cache: deleting it
costs one full read."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

import orjson

from citybrain.domain.registry import Device

log = logging.getLogger("citybrain.registry")

SHAPE = [f.name for f in fields(Device)]   # a copy written with other fields is not read
# Fields with few distinct values (kind, sensor type, department, status): written once in
# a vocabulary, each device naming them by index — read back as shared strings, as
# Device.of interns them (memory: every worker holds the whole city's registry).
WORDS = ("kind", "sensor_type", "owner_department", "status")


class RegistryCopy:
    NAME = "registry-devices.json"

    def __init__(self, directory: Path):
        self.path = directory / self.NAME

    def load(self, topic: str) -> tuple[dict[str, Device], dict[int, int]] | None:
        """(devices, the next offset per partition of ``topic``), or None (no usable copy)."""
        try:
            head = orjson.loads(self.path.read_bytes())
            if head.get("topic") != topic or head.get("shape") != SHAPE:
                return None
            columns = head["columns"]
            vocabulary = [None, *(sys.intern(w) for w in head["vocabulary"])]   # index 0: None
            for name in WORDS:
                columns[name] = [vocabulary[i] for i in columns[name]]
            ids = columns["device_id"]
            if any(len(columns[name]) != len(ids) for name in SHAPE):
                raise ValueError("columns of different lengths")
            devices = dict(zip(ids, map(Device, *(columns[name] for name in SHAPE)), strict=True))
            offsets = {int(p): int(o) for p, o in head["offsets"].items()}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, IndexError) as e:   # a damaged copy: read the topic
            log.warning("设备台账本地副本不可读 local registry copy %s unreadable (%r): reading the topic whole",
                        self.path, e)
            return None
        return devices, offsets

    def save(self, topic: str, devices: dict[str, Device], offsets: dict[int, int]) -> None:
        """Blocking (run it in a thread): ~160k devices are ~8 MB of JSON."""
        index: dict[str | None, int] = {None: 0}
        columns: dict[str, list] = {}
        for name in SHAPE:
            values = [getattr(d, name) for d in devices.values()]
            columns[name] = [index.setdefault(v, len(index)) for v in values] if name in WORDS else values
        body = orjson.dumps({"topic": topic, "shape": SHAPE, "saved_at": time.time(),
                             "offsets": {str(p): o for p, o in offsets.items()},
                             "vocabulary": list(index)[1:], "columns": columns})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, self.path)   # never half a copy

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
