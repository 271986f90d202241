"""The command routing, a batch stage (stream/runner.py) like the hot path's: workorders.commands,
keyed by work-order id, forwarded to the fusion inbox partition that owns the order —
the group named in the id (a ``merge`` goes first to the group of its ``into``, the
survivor: docs/lifecycle.md "Merge and split").  Malformed, oversized or otherwise unusable commands are dead
letters; ids that are not ours are refused on workorders.rejected.  No record stops the
stage: whatever happens to one command is that command's outcome (the runner's guard).

Why a stage and not a Faust agent (as it was): the runner's checkpoint is the processing
guarantee's (under exactly_once a command is forwarded in a transaction with its offsets;
the agent's forwards were outside any), and the routing gets the stages' metrics, restarts,
static membership and hand-over.  Hosted where the fuse stage is, whose input it feeds.
(It did not shorten a command's wait under a hung node: that is the node's partitions on
the command's hops — docs/performance.md, "The command routing made a stage".)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from pydantic import ValidationError
from pydantic_core import to_json

from citybrain import metrics
from citybrain.domain.device_health import PartitionClock
from citybrain.domain.fusion import group_of
from citybrain.domain.normalize import (
    KEEP_ORIGINAL_BYTES,
    OriginalKept,
    dead_letter,
    dead_letter_key,
    validation_failure,
)
from citybrain.kafka.topics import Topics
from citybrain.stream.output import Output
from citybrain.stream.records import record_meta
from citybrain.stream.state import ChangelogState
from citybrain.wire.models import Command, CommandRejection


def command_group(group_id: str) -> str:
    """The command routing's consumer group (and transactional ids' stem)."""
    return f"{group_id}-commands"


class CommandStage:
    """The runner's ``Stage`` (stream/stage.py): stateless, no timers."""

    def __init__(self, topics: Topics, group_id: str, keep_bytes: int = KEEP_ORIGINAL_BYTES,
                 keep_original: OriginalKept = "masked"):
        self.topic_names, self.keep_bytes, self.keep_original = topics, keep_bytes, keep_original
        self.name, self.group_id, self.topics = "commands", command_group(group_id), [topics.commands]
        self.states: list[ChangelogState] = []
        self.state_topic: str | None = None
        self.tick_seconds = 3600.0   # nothing is timed here
        # A person's click, not a sensor's stream: 100 ms is unnoticed, and the idle consumer
        # asks each broker 10 times a second instead of the hot path's 50.
        self.fetch_max_wait_ms = 100
        self.clock: PartitionClock | None = None
        self.ready = asyncio.Event()

    def handle(self, m: ConsumerRecord, out: list[Output]) -> None:
        kind, detail = judge(m.value, self.keep_bytes)
        if kind == "dead":
            reason, text, field = detail
            metrics.count_dead("command", reason)
            out.append(Output(self.topic_names.deadletter, dead_letter_key(m.key), to_json(dead_letter(
                "command", m.value, record_meta(m), reason, text, field,
                keep_bytes=self.keep_bytes, keep_original=self.keep_original))))
        elif kind == "rejected":
            metrics.COMMANDS_REJECTED.labels("unknown_work_order").inc()
            out.append(Output(self.topic_names.rejected, detail.command.work_order_id.encode(), to_json(detail)))
        else:
            out.append(Output(self.topic_names.fusion_inbox, detail.encode(), m.value))

    def source_of(self, m: ConsumerRecord) -> str:
        return "command"

    def on_assigned(self, partitions: set[int]) -> None:
        pass

    def on_revoked(self, partitions: set[int]) -> None:
        pass

    def tick(self) -> list[Output]:
        return []


def judge(value: bytes | None, keep_bytes: int = KEEP_ORIGINAL_BYTES):
    """What becomes of one command record, decided without Kafka: ("dead", (reason,
    detail, field)) | ("rejected", CommandRejection) | ("forward", fusion group)."""
    if value is not None and len(value) > keep_bytes:
        return "dead", ("too_large", f"command is {len(value)} bytes; the limit is {keep_bytes}", None)
    try:
        cmd = Command.model_validate_json(value or b"")
    except ValidationError as e:
        reason, field, err = validation_failure(e)
        return "dead", ("not_json" if err["type"] == "json_invalid" else reason, str(e).splitlines()[0], field)
    group = group_of(cmd.work_order_id)
    if group is None:
        return "rejected", CommandRejection(command=cmd, reason="unknown_work_order",
                                            detail=f"{cmd.work_order_id} is not a work-order id",
                                            at=datetime.now(UTC))
    if cmd.action == "merge" and cmd.into:
        # 并单 starts where the survivor lives: it must be open to take the duplicate.
        into = group_of(cmd.into)
        if into is None:
            return "rejected", CommandRejection(command=cmd, reason="unknown_work_order",
                                                detail=f"merge into {cmd.into}: not a work-order id",
                                                at=datetime.now(UTC))
        return "forward", into
    return "forward", group
