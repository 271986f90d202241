"""A batch stage as the runner (stream/runner.py) drives it, and the runner's settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiokafka import ConsumerRecord

from citybrain.domain.device_health import PartitionClock
from citybrain.domain.normalize import OriginalKept
from citybrain.stream.output import Output
from citybrain.stream.state import ChangelogState


class Stage(Protocol):
    """A batch stage (stream/normalise_stage.py NormaliseStage, stream/fuse_stage.py FuseStage)."""

    name: str
    group_id: str                        # its consumer group
    topics: list[str]                    # its inputs
    states: list[ChangelogState]
    state_topic: str | None              # the input topic whose partitions the states follow
    tick_seconds: float
    # Told what the stage has read of each partition of ``state_topic`` and how far behind
    # it is (a ``device_health.PartitionClock``), for timers judged on the stream's time.
    clock: PartitionClock | None
    ready: asyncio.Event                 # set while it runs with its partitions restored
    # Optional (read with getattr): output topics a person waits on, given a producer of
    # their own under at_least_once (the fuse stage's dispatch topics).
    # urgent_topics: frozenset[str]
    # … and how long a fetch waits for records when there are none (ms; default 20: the
    # hot path's latency).  A low-rate stage waits longer and asks the broker less often.
    # fetch_max_wait_ms: int

    def handle(self, m: ConsumerRecord, out: list[Output]) -> None:
        """One call per record, appending its outputs."""

    def source_of(self, m: ConsumerRecord) -> str:
        """The dead-letter ``source`` of an input record."""

    def on_assigned(self, partitions: set[int]) -> None:
        """Partitions whose state is restored and now this stage's."""

    def on_revoked(self, partitions: set[int]) -> None:
        """Partitions no longer this stage's (their state is dropped)."""

    def tick(self) -> list[Output]:
        """About every ``tick_seconds`` (between batches, and when idle): outputs that
        time rather than an input causes (supervision, automatic verification); each
        output's ``source`` names the partition it belongs to."""


@dataclass(frozen=True)
class RunnerSettings:
    bootstrap: str
    guarantee: str = "at_least_once"         # | exactly_once
    deadletter_topic: str = "deadletter"
    max_output_bytes: int = 1_000_000       # an output past this is refused before it is sent
    keep_original_bytes: int = 65536        # a dead letter's copy of the original
    keep_original: OriginalKept = "masked"  # … masked, full or none (IngestSettings.dead_letter_original)
    session_timeout_ms: int = 10000
    heartbeat_ms: int = 3000
    group_instance_id: str | None = None     # static membership (worker.instance_id); None: dynamic
    leave_group_on_stop: bool = True         # … and on a stop, leave at once (kafka/groups.py)
    backoff_seconds: tuple[float, float] = (0.5, 30.0)
    max_batch_records: int = 2000            # a batch at most (fewer when handling is slow: stream/batchsize.py)
    store_dir: Path | None = None            # local copies of the stage state (None: memory://)
