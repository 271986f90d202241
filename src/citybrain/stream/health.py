"""Device health in the normalise stage (设备完好率, 联网率; DESIGN §13, §15): when each device
was last heard, on the stage's partition clock; a device silent past its limit raises a
device fault, its next reading closes it; the ``device_health`` changelog keeps it across
restarts and ``devices.liveness`` tells every worker."""

from __future__ import annotations

import logging
import time
from collections import Counter

import orjson

from citybrain import metrics
from citybrain.domain.device_health import (
    ONLINE,
    Health,
    PartitionClock,
    SilenceWatch,
    liveness_record,
    networked_state,
    offline_limit,
)
from citybrain.domain.normalize import Normalizer, RecordMeta, _utc
from citybrain.domain.sensor_rules import SensorRule
from citybrain.gauges import GaugeCounts
from citybrain.kafka.topics import Topics
from citybrain.stream.output import Output
from citybrain.stream.state import ChangelogState
from citybrain.wire.models import (
    CityEvent,
)


def _utc_iso(epoch: float) -> str:
    return _utc(epoch).isoformat(timespec="seconds")

log = logging.getLogger("citybrain.stages")


class DeviceHealth:
    """设备完好率 in the normalise stage: each device's health per partition (the
    ``device_health`` changelog), silence judged per partition against its clock
    (domain/device_health.py), and the devices gauge."""

    GAUGE_EVERY = 10.0
    # Counted as states change (never by walking every device: at city scale, 160k devices
    # walked on the event loop every few seconds would be a stall of tens of ms each time).

    def __init__(self, rules: dict[str, SensorRule], topics: Topics, normalizer: Normalizer, changelog: str,
                 devices):
        self.normalizer, self.topics, self.devices = normalizer, topics, devices
        self.state = ChangelogState("device_health", changelog, encode=_encode_health)
        registry = normalizer.registry

        self.watch = SilenceWatch(lambda device_id: offline_limit(registry(device_id), rules))
        self.clock = PartitionClock()
        self.owned: set[int] = set()
        self.last_gauge = 0.0
        self.gauge = GaugeCounts(metrics.DEVICES)
        self.registered = GaugeCounts(metrics.DEVICES_REGISTERED)
        self.labels: dict[str, tuple[str, str, str]] = {}   # device → (district, kind, owner)
        self.counts: Counter = Counter()                     # (district, kind, owner, state) → devices
        self.registered_size = -1
        # 联网率: what devices.liveness says of each device this worker has written, and the
        # records still to go out with the current input (domain/device_health.py).
        self.published: dict[str, bool] = {}
        self.pending: list[tuple[str, bool, float]] = []

    def _live(self, device: str, h: Health, at: float) -> None:
        """Record a change of the device's "heard within its interval" for devices.liveness
        (once per device and process, then only on a change: a dict lookup per reading)."""
        now = networked_state(h.state)
        if self.published.get(device) is not now:
            self.published[device] = now
            self.pending.append((device, now, at))

    def drain(self, out: list[Output]) -> None:
        """The pending devices.liveness records, into the outputs of the input that made them."""
        for device, now, at in self.pending:
            out.append(Output(self.topics.liveness, device.encode(), orjson.dumps(liveness_record(device, now, at))))
        self.pending.clear()

    def _moved(self, device: str, before: str | None, after: str | None) -> None:
        label = self._label(device)
        if label is None or before == after:
            return
        if before is not None:
            self.counts[(*label, before)] -= 1
        if after is not None:
            self.counts[(*label, after)] += 1

    def _store(self, partition: int, device: str, h: Health, lazy: bool) -> None:
        # Lazily: a Health changes in place (SilenceWatch), and every change stores it again.
        if lazy:
            self.state.set_later(partition, device, h)
        else:
            self.state.set(partition, device, _encode_health(h))

    def heard(self, partition: int, device: str, meta: RecordMeta) -> CityEvent | None:
        new = device not in self.watch.health.get(partition, ())
        h, came_back = self.watch.heard(partition, device, meta.timestamp)
        if new or came_back is not None:
            self._moved(device, None if new else came_back, ONLINE)
        self._store(partition, device, h, lazy=came_back is None)   # only "heard again" may lag behind
        self._live(device, h, meta.timestamp)
        if came_back is None:
            return None
        return self.normalizer.health_event(device, "recovery", meta.timestamp, meta,
                                            f"heard again after {came_back} (设备恢复)")

    def stated(self, partition: int, status, meta: RecordMeta) -> CityEvent | None:
        at = status.ts.timestamp()
        known = self.watch.health.get(partition, {}).get(status.device_id)
        was = known.state if known is not None else None
        before = self.watch.status(partition, status.device_id, status.status, at)
        h = self.watch.health[partition][status.device_id]
        self._moved(status.device_id, was, h.state)
        self._store(partition, status.device_id, h, lazy=before is None)
        self._live(status.device_id, h, at)
        if before is None:
            return None
        if status.status == ONLINE:
            return self.normalizer.health_event(status.device_id, "recovery", at, meta,
                                                f"platform reports online (was {before})")
        if before != ONLINE:
            return None   # offline ↔ fault: still one open fault
        why = {"offline": "平台报告离线 platform reports offline", "fault": "平台报告故障 platform reports a fault"}
        return self.normalizer.health_event(status.device_id, "alarm", at, meta,
                                            why[status.status] + (f": {status.detail}" if status.detail else ""))

    def due(self) -> list[tuple[int, CityEvent | None, RecordMeta, list[Output]]]:
        """Each device found silent: its partition, its device_fault event (None for a
        device the registry does not know), and its devices.liveness record."""
        out = []
        for partition in sorted(self.owned):
            reference = self.clock.reference(partition)
            if reference is None:
                continue
            for device, h in self.watch.due(partition, reference):
                log.info("设备离线 device offline: %s (partition %d) last heard %s, judged at %s (%s)",
                         device, partition, _utc_iso(h.heard), _utc_iso(reference),
                         "at the end" if partition in self.clock.at_end else "behind: latest record read")
                self._moved(device, ONLINE, h.state)
                self._store(partition, device, h, lazy=False)
                self._live(device, h, h.since)
                meta = RecordMeta(self.topics.iot, partition, -1, reference, device.encode())
                event = self.normalizer.health_event(device, "alarm", h.since, meta,
                                                     f"silent since {_utc_iso(h.heard)} (设备离线 offline)")
                live: list[Output] = []
                self.drain(live)
                out.append((partition, event, meta, live))
        now = time.monotonic()
        if now - self.last_gauge >= self.GAUGE_EVERY:
            self.last_gauge = now
            self.export()
        return out

    def assigned(self, partitions: set[int]) -> None:
        self.owned |= partitions
        for p in partitions:
            for device, raw in self.state.items(p):
                h = Health.from_dict(orjson.loads(raw))
                self.watch.load(p, device, h)
                self._moved(device, None, h.state)

    def revoked(self, partitions: set[int]) -> None:
        self.owned -= partitions
        for p in partitions:
            for device, h in self.watch.health.get(p, {}).items():
                self._moved(device, h.state, None)
                self.published.pop(device, None)
        self.watch.drop(partitions)
        self.clock.drop(partitions)

    def _label(self, device_id: str) -> tuple[str, str, str] | None:
        found = self.labels.get(device_id)
        if found is None:
            d = self.normalizer.registry(device_id)
            if d is None:
                return None
            where = self.normalizer.city.locate(d.lon, d.lat)
            found = self.labels[device_id] = (where.district_code if where else "", d.kind,
                                              d.owner_department or "")
        return found

    def export(self) -> None:
        """citybrain_devices{district,kind,owner,state} over the partitions held, and
        citybrain_devices_registered{district,kind,owner} (the same on every worker)."""
        self.gauge.set_all(Counter({k: n for k, n in self.counts.items() if n > 0}))
        devices = self.devices()
        if len(devices) == self.registered_size:
            return    # (a registry update that keeps the size is picked up at the next change)
        self.registered_size = len(devices)
        registered: Counter = Counter()
        for d in devices:
            if d.status != "active":
                continue
            label = self._label(d.device_id)
            if label is not None:
                registered[label] += 1
        self.registered.set_all(registered)


def _encode_health(h: Health) -> bytes:
    return orjson.dumps(h.to_dict())
