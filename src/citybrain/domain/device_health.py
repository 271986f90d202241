"""Device health (设备完好率, DESIGN §13): which sensors fell silent, which came back.

Each sensor type has an expected reporting interval and an offline limit
(``sensor_rules.toml``: ``interval_seconds``, ``offline_after``).  A device is *heard*
when a record of it arrives (its Kafka timestamp); it is *offline* once it has not been
heard for its limit, judged against a **reference time per partition** — never simply
the wall clock:

- while the stage is at the end of the partition (no lag at its last fetch), the
  reference is the time of that fetch: everything the partition held up to then has been
  read, so a device not heard since ``reference - limit`` is silent;
- while it is behind (a restart catching up, a lag spike), the reference is the Kafka
  time of the latest record it has read: the records are read in the order they were
  appended, so a device that kept reporting is heard before the reference passes its
  limit.  A whole partition therefore never "falls silent" because its worker was away.

A camera's platform states its status (``ingest.device.status``: online, offline, fault);
cameras are not watched for silence.

Pure: the caller says what was heard and what the partition's reference time is.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from citybrain.domain.registry import Device
    from citybrain.domain.sensor_rules import SensorRule

ONLINE, OFFLINE, FAULT = "online", "offline", "fault"


@dataclass(slots=True)
class Health:
    heard: float                 # Kafka time (epoch s) of the device's latest record
    state: str = ONLINE          # online | offline | fault
    since: float = 0.0           # when the state began

    def to_dict(self) -> dict[str, Any]:
        return {"h": self.heard, "s": self.state, "t": self.since}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Health:
        return cls(d["h"], d["s"], d["t"])


def offline_limit(device: Device | None, rules: dict[str, SensorRule]) -> float | None:
    """Seconds of silence after which a registered sensor is offline: its own interval
    (the registry's ``interval_seconds``) or its type's, times the type's
    ``offline_after``; None for cameras (their platform states their status), unknown
    devices and types without a rule."""
    if device is None or device.kind != "sensor" or device.sensor_type is None:
        return None
    rule = rules.get(device.sensor_type)
    if rule is None:
        return None
    limit: float = (device.interval_seconds or rule.interval_seconds) * rule.offline_after
    return limit


class SilenceWatch:
    """Per partition: each device's health, and a heap of when each online, watched device
    falls due (one entry per device, moved on lazily when it has been heard since)."""

    def __init__(self, limit_of: Callable[[str], float | None]):
        self.limit_of = limit_of            # device id → offline limit in seconds, None: not watched
        self.health: dict[int, dict[str, Health]] = {}
        self.heaps: dict[int, list[tuple[float, str]]] = {}
        self.watched: dict[int, set[str]] = {}    # devices with an entry in their partition's heap

    def load(self, partition: int, device: str, health: Health) -> None:
        """A device's stored health (a restart, a hand-over)."""
        self.health.setdefault(partition, {})[device] = health
        self._watch(partition, device, health)

    def _watch(self, partition: int, device: str, health: Health) -> None:
        limit = self.limit_of(device)
        watched = self.watched.setdefault(partition, set())
        if limit is not None and health.state == ONLINE and device not in watched:
            heapq.heappush(self.heaps.setdefault(partition, []), (health.heard + limit, device))
            watched.add(device)

    def heard(self, partition: int, device: str, at: float) -> tuple[Health, str | None]:
        """A record of the device arrived at Kafka time ``at``: its health, and the state
        it came back from (offline or fault) if it was not online."""
        devices = self.health.setdefault(partition, {})
        h = devices.get(device)
        if h is None:
            h = devices[device] = Health(at, ONLINE, at)
            self._watch(partition, device, h)
            return h, None
        h.heard = max(h.heard, at)
        if h.state == OFFLINE and self.limit_of(device) is not None:   # silence ended
            h.state, h.since = ONLINE, at
            self._watch(partition, device, h)
            return h, OFFLINE
        if device not in self.watched.get(partition, ()):   # e.g. the registry arrived after the state
            self._watch(partition, device, h)
        return h, None

    def status(self, partition: int, device: str, state: str, at: float) -> str | None:
        """A stated status (cameras): the previous state when it changed, else None."""
        devices = self.health.setdefault(partition, {})
        h = devices.get(device)
        if h is None:
            devices[device] = Health(at, state, at)
            return ONLINE if state != ONLINE else None
        h.heard = max(h.heard, at)
        if h.state == state:
            return None
        before, h.state, h.since = h.state, state, at
        return before

    def due(self, partition: int, reference: float) -> list[tuple[str, Health]]:
        """The watched devices of the partition silent past their limit at ``reference``;
        each is marked offline (since the moment its limit ran out)."""
        heap = self.heaps.get(partition)
        out = []
        devices = self.health.get(partition, {})
        watched = self.watched.setdefault(partition, set())
        while heap and heap[0][0] <= reference:
            _, device = heapq.heappop(heap)
            h = devices.get(device)
            limit = self.limit_of(device)
            if h is None or h.state != ONLINE or limit is None:
                watched.discard(device)
                continue
            if h.heard + limit > reference:          # heard since: look again later
                heapq.heappush(heap, (h.heard + limit, device))
                continue
            h.state, h.since = OFFLINE, h.heard + limit
            watched.discard(device)
            out.append((device, h))
        return out

    def drop(self, partitions: set[int]) -> None:
        for p in partitions:
            self.health.pop(p, None)
            self.heaps.pop(p, None)
            self.watched.pop(p, None)

    def counts(self) -> dict[str, str]:
        """device → state, over every partition held (for the gauges)."""
        return {d: h.state for devices in self.health.values() for d, h in devices.items()}


class PartitionClock:
    """The reference time each partition's silence is judged against (see the module's
    docstring): the last fetch's time while at the end, else the Kafka time of the latest
    record read; None before anything is known."""

    def __init__(self) -> None:
        self.latest: dict[int, float] = {}     # Kafka time of the latest record read
        self.at_end: dict[int, float] = {}     # the time of the last fetch that found no lag

    def read(self, partition: int, at: float) -> None:
        if at > self.latest.get(partition, 0.0):
            self.latest[partition] = at

    def fetched(self, partition: int, lag: int, fetched_at: float) -> None:
        if lag <= 0:
            self.at_end[partition] = fetched_at
        else:
            self.at_end.pop(partition, None)

    def reference(self, partition: int) -> float | None:
        end = self.at_end.get(partition)
        return end if end is not None else self.latest.get(partition)

    def drop(self, partitions: set[int]) -> None:
        for p in partitions:
            self.latest.pop(p, None)
            self.at_end.pop(p, None)
