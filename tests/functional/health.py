"""Device health in one process (stream/health.py; DESIGN §13, §15): the city of city.py
with the part of the runner that device health depends on.

Silence is judged against a partition clock the runner keeps (domain/device_health.py):
the time of a fetch that found the partition at its end, else the Kafka time of the
latest record read. So ``ingest.iot.readings`` here is a partition log: a reading put on
it is appended with the fake clock's time as its Kafka time, and the worker reads it
only when it polls —

- ``poll()`` is one step of stream/runner.py's loop: the partition clock told how far
  behind the fetch is (the batch fetched counts as not yet read), the stage's tick
  (devices found silent), then the batch read, handled and its state's changelog
  writes committed;
- ``run(minutes=…)``: time passing — the gauges report every interval, the worker polls
  (while up), the fuse stage's timers run (city.advance);
- ``kill()`` / ``restart()``: the worker gone without a hand-over (what its state had not
  yet written to the changelog is lost) and back with only what the changelog holds,
  reading the backlog in batches; ``freeze()`` / ``thaw()``: a lag spike — the same
  stage, memory kept, behind.

Every other topic is read at once, as in city.py, and the worker's views fold
``workorders.events`` (the evaluation's open device faults) and ``devices.liveness``
for 完好率 and 联网率. What only Kafka shows — the runner's real fetch positions, a
restore from the changelog topic — stays in tests/integration/test_device_health.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import orjson
from aiokafka import ConsumerRecord

from citybrain.stream.normalise_stage import NormaliseStage
from citybrain.stream.output import Output
from citybrain.stream.views import OrderLogViews
from citybrain.web.api import Api

from .city import PARTITION, City


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class HealthCity:
    def __init__(self, city: City, batch: int = 50):
        self.city, self.topics, self.batch = city, city.topics, batch
        self.log: list[ConsumerRecord] = []         # ingest.iot.readings, the one partition
        self.position = 0                            # the worker's next offset in it
        self.changelog: dict[str, dict[str, bytes]] = {}   # state name → what its changelog holds
        self.up = True
        self.seq = 0
        self.stage = self._wire(city.normalise)
        self.views = OrderLogViews(city.config, city.topics, "unused:9092")
        self.views.devices = lambda: city.registry.values()
        city.feeds[self.topics.iot] = self.log.append
        for topic in set(self.topics.ingest) - {self.topics.iot}:
            city.feeds[topic] = self._now
        city.feeds[self.topics.workorder_events] = lambda m: self.views._fold_changes([m])
        city.feeds[self.topics.liveness] = lambda m: self.views._fold_liveness([m])

    def _wire(self, stage: NormaliseStage) -> NormaliseStage:
        for state in stage.states:   # lazy changelog writes fall due on the fake clock
            state.clock = self.city.clock
        stage.health.devices = lambda: self.city.registry.values()
        return stage

    def _emit(self, outputs: Iterable[Output]) -> None:
        for o in outputs:
            self.city.put(o.topic, o.key, o.value)

    def _now(self, m: ConsumerRecord) -> None:
        """A record of a topic read at once (device status, video, reports)."""
        assert self.up, "only ingest.iot.readings waits for a worker away here"
        out: list[Output] = []
        self.stage.handle(m, out)
        self._emit(out)

    # -- the gauges and the platform -------------------------------------------------

    def send(self, devices: Iterable[str], value: float = 0.01) -> None:
        """One reading of each device, now."""
        for device in sorted(devices):
            self.seq += 1
            self.city.put(self.topics.iot, device.encode(), orjson.dumps(
                {"device_id": device, "sensor_type": "water_level", "value": value,
                 "ts": iso(self.city.clock()), "seq": self.seq}))

    def status(self, device: str, status: str) -> None:
        """A platform's statement of a camera's status (ingest.device.status)."""
        self.city.put(self.topics.device_status, device.encode(), orjson.dumps(
            {"device_id": device, "status": status, "ts": iso(self.city.clock())}))

    # -- the worker ------------------------------------------------------------------

    def poll(self) -> int:
        """One step of the runner's loop; the number of records read."""
        if not self.up:
            return 0
        stage, now = self.stage, self.city.clock()
        fetched = self.log[self.position:self.position + self.batch]
        first = fetched[0].offset if fetched else self.position
        assert stage.clock is not None
        stage.clock.fetched(PARTITION, len(self.log) - first, now)
        self._emit(stage.tick())
        if fetched:
            stage.clock.read(PARTITION, fetched[-1].timestamp / 1000)
        for m in fetched:
            out: list[Output] = []
            stage.handle(m, out)
            self._emit(out)
        self.position += len(fetched)
        for state in stage.states:    # committed with the batch
            held = self.changelog.setdefault(state.name, {})
            for o in state.drain():
                if o.value is None:
                    held.pop(o.key.decode(), None)
                else:
                    held[o.key.decode()] = o.value
        return len(fetched)

    def catch_up(self) -> None:
        while self.poll():
            pass

    def run(self, *, minutes: float, reporting: Iterable[str] = (), every: float = 300.0,
            step: float = 60.0) -> None:
        """``minutes`` pass in steps of ``step`` seconds: ``reporting`` devices send a
        reading every ``every`` seconds (their interval), the worker polls each step."""
        end = self.city.clock() + minutes * 60
        reporting, next_send = set(reporting), self.city.clock()
        while self.city.clock() < end:
            if reporting and self.city.clock() >= next_send:
                self.send(reporting)
                next_send += every
            self.poll()
            self.city.advance(minutes=step / 60, step_minutes=step / 60)
        self.poll()

    def kill(self) -> None:
        self.up = False

    def restart(self) -> None:
        """A new worker: the stage's memory of the partition gone (all it holds, as at a
        revocation) and its state restored from the changelog, as the runner restores it at
        an assignment; it reads on from the committed position (the backlog, in batches)."""
        stage = self.stage
        stage.on_revoked({PARTITION})
        for state in stage.states:
            state.drop({PARTITION})
            state.data[PARTITION] = dict(self.changelog.get(state.name, {}))
        stage.on_assigned({PARTITION})
        self.up = True

    def freeze(self) -> None:
        self.up = False

    def thaw(self) -> None:
        self.up = True

    # -- reading ---------------------------------------------------------------------

    def sent(self, device: str) -> float:
        """The Kafka time of the device's latest reading."""
        return max(m.timestamp for m in self.log if m.key == device.encode()) / 1000

    def faults(self, kind: str | None = None) -> list[dict]:
        """The device_fault events on events.normalized (``kind``: alarm | recovery)."""
        return [e for e in self.city.on(self.topics.events)
                if e["category"] == "device_fault" and kind in (None, e["kind"])]

    def api(self) -> Api:
        """The city's API with the worker's device health views (as stream/app.py wires it)."""
        api = self.city.api()
        api.evaluation, api.devices = self.views.evaluation, self.views.devices
        api.device_health = self.views.device_health
        return api
