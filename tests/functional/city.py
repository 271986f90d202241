"""The city in one process: the worker's stages, its order view and its API, wired by
topic name with no broker (issue 39's functional tier).

A record the API would send goes through what its topic feeds — ingest → the normalise
stage → the fusion inbox → the fuse stage → workorders.state → the order view — before
the send returns, so a test reads the API's answer straight after. Every output is kept
per topic (``city.on(topic)``). Time is a ``FakeClock``: ``city.advance(hours=…)`` moves
it and runs the fuse stage's timers, so a month of deadlines passes in milliseconds.

What this tier cannot show — delivery, restarts, rebalances, faults, security, the
browser — stays in tests/integration and tests/chaos, on real Kafka."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiokafka import ConsumerRecord

from citybrain.config import Config
from citybrain.domain.normalize import IngestLimits, Normalizer
from citybrain.domain.pseudonym import from_environment
from citybrain.kafka.topics import Topics
from citybrain.readmodels.orders import OrderView
from citybrain.stream import commands
from citybrain.stream.collaborators import collaborators
from citybrain.stream.fuse_stage import FuseStage
from citybrain.stream.normalise_stage import DeadLetterLog, NormaliseStage
from citybrain.stream.output import Output
from citybrain.web.api import Api
from citybrain.web.auth import TokenRegistry
from citybrain.wire.models import RegistryRecord
from citybrain_tools.sample.registry_builder import load

PARTITION = 0   # one partition of every topic: the stages' partition logic is the runner's


@dataclass
class FakeClock:
    now: float

    def __call__(self) -> float:
        return self.now


class ListSink:
    """The API's ``RecordSink``: each record goes into the city at once."""

    def __init__(self, city: City):
        self.city = city

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.city.put(topic, key, value)

    async def close(self) -> None:
        pass


class City:
    def __init__(self, config: Config | None = None, start: float | None = None):
        self.config = config = config or Config()
        self.topics = Topics("")
        self.clock = FakeClock(start if start is not None else time.time())
        self.registry = registry = {r["device_id"]: RegistryRecord.model_validate(r)
                                    for r in load(config.registry_path)}
        self.normalizer = Normalizer(
            taxonomy=config.taxonomy, sensor_rules=config.sensor_rules, video_thresholds=config.video_thresholds,
            city=config.city_map, registry=registry.get, limits=IngestLimits(65536, 300),
            gazetteer=config.gazetteer, pseudonym=from_environment({}, "CITYBRAIN_REPORTER_KEY"))
        collab = collaborators(config, clock=self.clock)   # as the worker builds them (stream/app.py)
        self.normalise = NormaliseStage(collab, self.topics, self.normalizer, "functional", DeadLetterLog())
        self.fuse = FuseStage(collab, self.topics, "functional")
        self.normalise.on_assigned({PARTITION})
        self.fuse.on_assigned({PARTITION})
        self.view = OrderView()
        self.records: dict[str, list[tuple[bytes | None, dict]]] = defaultdict(list)
        self.offsets: dict[str, int] = defaultdict(int)
        self.feeds: dict[str, Callable[[ConsumerRecord], None]] = {
            **{t: self._stage(self.normalise) for t in self.topics.ingest},
            self.topics.fusion_inbox: self._stage(self.fuse),
            self.topics.commands: self._command,
            self.topics.workorder_state: lambda m: self.view.add_state(orjson.loads(m.value)),
            self.topics.rejected: lambda m: self.view.add_rejection(orjson.loads(m.value)),
        }

    # -- the wiring ------------------------------------------------------------------

    def put(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """A record on ``topic``: kept, then handed to what reads that topic."""
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        if value is not None and not topic.endswith("-changelog"):
            try:
                self.records[topic].append((key, orjson.loads(value)))
            except orjson.JSONDecodeError:
                self.records[topic].append((key, {"raw": value}))
        feed = self.feeds.get(topic)
        if feed is not None:
            feed(ConsumerRecord(topic, PARTITION, offset, int(self.clock() * 1000), 0, key, value, None,
                                len(key or b""), len(value or b""), []))

    def _emit(self, outputs: list[Output]) -> None:
        for o in outputs:
            self.put(o.topic, o.key, o.value)

    def _stage(self, stage) -> Callable[[ConsumerRecord], None]:
        def handle(m: ConsumerRecord) -> None:
            out: list[Output] = []
            stage.handle(m, out)
            self._emit(out)
        return handle

    def _command(self, m: ConsumerRecord) -> None:
        """The command routing (stream/commands.py): what becomes of a command is judged there."""
        kind, detail = commands.judge(m.value)
        if kind == "forward":
            self.put(self.topics.fusion_inbox, detail.encode(), m.value)
        elif kind == "rejected":
            self.put(self.topics.rejected, m.key, detail.model_dump_json().encode())
        else:
            self.put(self.topics.deadletter, m.key, orjson.dumps({"reason": detail[0], "detail": detail[1]}))

    def register(self, device: dict) -> None:
        """A device added to the registry (what registry.devices carries to every worker)."""
        record = RegistryRecord.model_validate(device)
        self.registry[record.device_id] = record

    # -- time ------------------------------------------------------------------------

    def advance(self, *, hours: float = 0, minutes: float = 0, step_minutes: float = 10) -> None:
        """Move the clock, running the fuse stage's timers every ``step_minutes`` of it."""
        end = self.clock.now + hours * 3600 + minutes * 60
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + step_minutes * 60)
            self._emit(self.fuse.tick())

    # -- reading ---------------------------------------------------------------------

    def on(self, topic: str) -> list[dict]:
        return [v for _, v in self.records[topic]]

    def api(self) -> Api:
        c = self.config
        return Api(c, self.topics, "unused:9092", self.view, c.new_evaluation(), TokenRegistry.load(c.auth_path),
                   c.city_map, ready=lambda: True, sink=ListSink(self), media_sink=ListSink(self), clock=self.clock)
