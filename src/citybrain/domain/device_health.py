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
from collections.abc import Callable, Collection, Iterable
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


# -- 完好率 and 联网率: the one definition (DESIGN §15) ----------------------------------
#
# Every place that shows device health — the API, the console, the metrics (and so the
# dashboard) and ``citybrain kpis`` — calls ``device_rates`` with the same three inputs:
#
# - the registry's **active** devices, each with its kind, district and owner department;
# - the devices with an open 设备故障 (device_fault) order (the evaluation's fold of
#   ``workorders.events``: the finders of every open device_fault order);
# - the devices **heard within their reporting interval** (``Liveness``, the fold of the
#   compacted ``devices.liveness`` topic the normalise stage writes on every change).
#
# 完好率 intact rate = in service (active, no open device_fault order) ÷ registered active;
# 联网率 networked rate = heard within the interval ÷ registered active.  A device that is
# not registered (or not active) counts in neither numerator nor denominator.

ALL_ROWS = "*"


@dataclass(frozen=True, slots=True)
class Registered:
    """One active device of the registry, where it counts."""
    device_id: str
    kind: str        # sensor | camera
    district: str    # 区县 code of its position ("" outside the city's layer)
    owner: str       # owner department ("" unowned)


def networked_state(state: str) -> bool:
    """Whether a device in this health state is heard within its interval: a sensor is
    ``online`` until its offline limit (interval × offline_after) passes without a reading;
    a camera is ``online`` once an alert or its platform's status ``online`` was read, and
    not while its platform states it offline or faulty."""
    return state == ONLINE


def liveness_record(device_id: str, networked: bool, at: float) -> dict[str, Any]:
    """The value of a ``devices.liveness`` record (key: the device id)."""
    return {"device_id": device_id, "networked": networked, "at": at}


class Liveness:
    """The fold of ``devices.liveness`` (compacted, key device id): which devices are heard
    within their reporting interval now.  Every worker folds the whole topic."""

    def __init__(self) -> None:
        self.networked: dict[str, bool] = {}

    def add(self, record: dict[str, Any]) -> None:
        self.networked[str(record["device_id"])] = bool(record["networked"])

    def forget(self, device_id: str) -> None:     # a tombstone
        self.networked.pop(device_id, None)

    def heard(self) -> set[str]:
        return {d for d, on in self.networked.items() if on}


def _row(registered: int, faulty: int, networked: int, labels: dict[str, str]) -> dict[str, Any]:
    in_service = registered - faulty
    return {**labels, "registered": registered, "in_service": in_service, "faulty": faulty,
            "networked": networked,
            "intact_rate": round(in_service / registered, 4) if registered else None,
            "networked_rate": round(networked / registered, 4) if registered else None}


def device_rates(devices: Iterable[Registered], faulty: Collection[str],
                 networked: Collection[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """完好率 and 联网率, grouped three ways, each with the ``*`` row for every device:

    - ``owner``: keys ``owner/kind`` (``unowned/kind`` without an owner);
    - ``district``: keys the 区县 code (``""``: outside the layer);
    - ``kind_district``: keys ``kind@district`` (the metrics' labels: kind × district).

    A row: registered, in_service, faulty, networked, intact_rate, networked_rate (None
    when nothing is registered)."""
    counts: dict[str, dict[tuple[str, str], list[int]]] = {"owner": {}, "district": {}, "kind_district": {}}
    total = [0, 0, 0]
    seen: set[str] = set()
    for d in devices:
        if d.device_id in seen:
            continue
        seen.add(d.device_id)
        bad, on = int(d.device_id in faulty), int(d.device_id in networked)
        for group, key in (("owner", (d.owner, d.kind)), ("district", (d.district, "")),
                           ("kind_district", (d.kind, d.district))):
            c = counts[group].setdefault(key, [0, 0, 0])
            c[0], c[1], c[2] = c[0] + 1, c[1] + bad, c[2] + on
        total[0], total[1], total[2] = total[0] + 1, total[1] + bad, total[2] + on
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for group, rows in counts.items():
        shown: dict[str, dict[str, Any]] = {}
        for key, (reg, bad, on) in sorted(rows.items()):
            if group == "owner":
                shown[f"{key[0] or 'unowned'}/{key[1]}"] = _row(reg, bad, on, {"owner": key[0], "kind": key[1]})
            elif group == "district":
                shown[key[0]] = _row(reg, bad, on, {"district": key[0]})
            else:
                shown[f"{key[0]}@{key[1]}"] = _row(reg, bad, on, {"kind": key[0], "district": key[1]})
        all_labels = {"owner": {"owner": ALL_ROWS, "kind": ALL_ROWS}, "district": {"district": ALL_ROWS},
                      "kind_district": {"kind": ALL_ROWS, "district": ALL_ROWS}}[group]
        shown[ALL_ROWS] = _row(total[0], total[1], total[2], all_labels)
        out[group] = shown
    return out


def registered_devices(devices: Iterable[Device], locate: Callable[[float, float], Any],
                       cache: dict[str, tuple[float, float, str]] | None = None) -> list[Registered]:
    """The registry's active devices with the district each lies in (``locate``: the city
    layer's point lookup; ``cache``: device → (lon, lat, district), kept between calls so a
    city of 160k devices is located once, not on every request)."""
    out = []
    for d in devices:
        if d.status != "active":
            continue
        hit = cache.get(d.device_id) if cache is not None else None
        if hit is not None and hit[0] == d.lon and hit[1] == d.lat:
            district = hit[2]
        else:
            where = locate(d.lon, d.lat)
            district = where.district_code if where else ""
            if cache is not None:
                cache[d.device_id] = (d.lon, d.lat, district)
        out.append(Registered(d.device_id, d.kind, district, d.owner_department or ""))
    return out
