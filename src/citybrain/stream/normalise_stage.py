"""The normalise stage (the runner's ``Stage`` protocol), a thin shell around the pure
domain: ingest.iot.readings / ingest.video.alerts / ingest.reports / ingest.device.status →
events.normalized + the fusion inbox | deadletter; per-device alarm state in the
``sensor_state`` changelog (partitions follow ingest.iot.readings, keyed by device_id) and
device health (stream/health.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

import orjson
from aiokafka import ConsumerRecord
from pydantic_core import to_json

from citybrain import metrics
from citybrain.domain.device_health import PartitionClock
from citybrain.domain.normalize import Normalizer, RecordMeta, Result, dead_letter_key
from citybrain.domain.registry import Device
from citybrain.domain.sensor_rules import DeviceState
from citybrain.kafka.topics import Topics
from citybrain.logfilter import ThrottledLog
from citybrain.stream.collaborators import Collaborators
from citybrain.stream.health import DeviceHealth
from citybrain.stream.output import Output
from citybrain.stream.records import record_meta
from citybrain.stream.state import ChangelogState
from citybrain.stream.topology import changelogs

log = logging.getLogger("citybrain.stages")


class DeadLetterLog:
    """One log line per source and reason every 10 s at most, with the count: readable at 3 a.m."""

    def __init__(self, every: float = 10.0):
        self.say = ThrottledLog(log, every)

    def note(self, source: str, reason: str, detail: str) -> None:
        self.say(logging.WARNING, f"{source}/{reason}", "死信 dead letter %s/%s (e.g. %s)", source, reason,
                 detail[:300])


class NormaliseStage:
    """The normalise stage: every ingest record to one outcome, each device's alarm state
    (``sensor_state``) and health (``device_health``).  ``registry()``: every device of
    the registry (for the registered-devices gauge)."""

    def __init__(self, collab: Collaborators, topics: Topics, normalizer: Normalizer, group_id: str,
                 dead_log: DeadLetterLog, registry: Callable[[], Collection[Device]] = lambda: ()):
        self.topic_names, self.normalizer = topics, normalizer
        self.dead_log, self.registry = dead_log, registry
        self.router = collab.rules.router   # an event's fusion group keys it on the fusion inbox
        self.sensor_state = ChangelogState("sensor_state", changelogs(group_id)["sensor_state"],
                                           encode=_encode_state)
        self.decoded: dict[tuple[int, str], DeviceState] = {}   # parsed sensor_state, per (partition, device)
        self.health = DeviceHealth(collab.sensor_rules, topics, normalizer, changelogs(group_id)["device_health"], registry)
        self.sources = {topics.iot: "iot", topics.video: "video", topics.reports: "report",
                        topics.device_status: "device"}
        # What the runner reads (the Stage protocol).
        self.name, self.group_id, self.topics = "normalise", f"{group_id}-normalise", topics.ingest
        self.states = [self.sensor_state, self.health.state]
        self.state_topic: str | None = topics.iot
        self.tick_seconds = collab.health_tick_seconds   # how often device health looks for silence
        self.clock: PartitionClock | None = self.health.clock
        self.ready = asyncio.Event()

    def state_of(self, partition: int) -> Callable[[str], DeviceState]:
        def get(device_id: str) -> DeviceState:
            key = (partition, device_id)
            st = self.decoded.get(key)
            if st is None:
                raw = self.sensor_state.get(partition, device_id)
                st = DeviceState.from_dict(orjson.loads(raw)) if raw else DeviceState()
                self.decoded[key] = st
            return st
        return get

    def outputs_of(self, source: str, result: Result, meta: RecordMeta, out: list[Output],
                   derived: bool = False) -> None:
        """Serialised before anything is counted or stored: if this raises, the record
        becomes an internal_error dead letter with nothing half done.  ``derived``: an
        event besides the record's own outcome (a device heard again, a silence found by
        the clock) — counted as an event, not as a second input."""
        if result.event is not None:
            ev = result.event
            body = to_json(ev)
            out.append(Output(self.topic_names.events, ev.location.street_code.encode(), body))
            # Straight on to fusion, keyed by fusion group (one hop less than
            # re-reading events.normalized).
            out.append(Output(self.topic_names.fusion_inbox, self.router.group(ev.category).encode(), body))
            metrics.inc(metrics.EVENTS, source, ev.kind, ev.category)
        elif result.dead is not None:
            out.append(Output(self.topic_names.deadletter, dead_letter_key(meta.key), to_json(result.dead)))
            self.dead_log.note(source, result.dead.reason, result.dead.detail)
        if not derived:
            metrics.count_outcome(source, result.outcome, result.reason)

    def handle(self, m: ConsumerRecord, out: list[Output]) -> None:
        meta = record_meta(m)
        if m.topic == self.topic_names.iot:
            result = self.normalizer.reading(m.value, meta, self.state_of(m.partition))
            self.outputs_of("iot", result, meta, out)
            if result.outcome != "deadletter":   # the device spoke: it is not silent
                event = self.health.heard(m.partition, m.key.decode(), meta)
                if event is not None:
                    self.outputs_of("iot", Result("event", event=event), meta, out, derived=True)
                self.health.drain(out)
            device = result.state_key
            if result.state is not None and device is not None:
                before = self.decoded.get((m.partition, device))
                # A change of the alarm state itself is written with this batch; a
                # change of only the dedupe marks (last ts/seq) may follow lazily: a
                # replay after a crash re-applies readings that changed nothing else.
                if before is not None and _alarm_state(before) == _alarm_state(result.state):
                    self.sensor_state.set_later(m.partition, device, result.state)   # frozen
                else:
                    self.sensor_state.set(m.partition, device, _encode_state(result.state))
                self.decoded[(m.partition, device)] = result.state
        elif m.topic == self.topic_names.video:
            result = self.normalizer.video(m.value, meta)
            self.outputs_of("video", result, meta, out)
            if result.outcome != "deadletter" and m.key:   # a camera heard by its alert (联网率)
                self.health.heard(m.partition, m.key.decode(errors="replace"), meta)
                self.health.drain(out)
        elif m.topic == self.topic_names.device_status:
            result, status = self.normalizer.device_status(m.value, meta)
            event = self.health.stated(m.partition, status, meta) if status is not None else None
            # A status that opens or closes a fault has that event as its outcome.
            self.outputs_of("device", result if event is None else Result("event", event=event), meta, out)
            self.health.drain(out)
        else:
            self.outputs_of("report", self.normalizer.report(m.value, meta), meta, out)

    def source_of(self, m: ConsumerRecord) -> str:
        return self.sources[m.topic]

    def forget(self, partitions: set[int]) -> None:
        for key in [k for k in self.decoded if k[0] in partitions]:
            del self.decoded[key]

    def on_assigned(self, partitions: set[int]) -> None:
        self.forget(partitions)
        self.health.assigned(partitions)

    def on_revoked(self, partitions: set[int]) -> None:
        self.forget(partitions)
        self.health.revoked(partitions)

    def tick(self) -> list[Output]:
        out: list[Output] = []
        for partition, event, meta, mine in self.health.due():
            if event is not None:
                self.outputs_of("iot", Result("event", event=event), meta, mine, derived=True)
            for o in mine:   # caused by the partition's clock, not an input
                o.source = (self.topic_names.iot, partition, -1)
            out += mine
        return out


def _encode_state(s: DeviceState) -> bytes:
    return orjson.dumps(s.to_dict())


def _alarm_state(s: DeviceState) -> tuple:
    return (s.alarm, s.pending_since, s.alarm_since, s.level, s.level_pending)
