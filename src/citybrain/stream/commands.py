"""``route_commands`` (a Faust agent: commands are a low-rate stream): workorders.commands,
keyed by work-order id, forwarded to the fusion inbox partition that owns the order —
the group named in the id (a ``merge`` goes first to the group of its ``into``, the
survivor: docs/lifecycle.md "Merge and split").  Malformed, oversized or otherwise unusable commands are dead
letters; ids that are not ours are refused on workorders.rejected.  No record stops the
agent: whatever happens to one command is that command's outcome."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import faust
from pydantic import ValidationError
from pydantic_core import to_json

from citybrain import metrics
from citybrain.domain.fusion import group_of
from citybrain.domain.normalize import (
    KEEP_ORIGINAL_BYTES,
    OriginalKept,
    dead_letter,
    dead_letter_key,
    validation_failure,
)
from citybrain.kafka.topics import Topics
from citybrain.stream.records import record_meta
from citybrain.wire.models import Command, CommandRejection

Emit = Callable[[str, bytes | None, bytes], Awaitable[None]]
log = logging.getLogger("citybrain.commands")


def install(app: faust.App, topics: Topics, emit: Emit, keep_bytes: int = KEEP_ORIGINAL_BYTES,
            keep_original: OriginalKept = "masked") -> None:
    commands = app.topic(topics.commands, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    async def dead(m, value: bytes | None, reason: str, detail: str, field: str | None = None,
                   exc: str | None = None) -> None:
        metrics.count_dead("command", reason)
        await emit(topics.deadletter, dead_letter_key(m.key), to_json(dead_letter(
            "command", value, record_meta(m, timestamp_ms=False), reason, detail, field,
            keep_bytes=keep_bytes, exception_type=exc, keep_original=keep_original)))

    async def route(m, value: bytes | None) -> None:
        kind, detail = judge(value, keep_bytes)
        if kind == "dead":
            return await dead(m, value, *detail)
        if kind == "rejected":
            metrics.COMMANDS_REJECTED.labels("unknown_work_order").inc()
            return await emit(topics.rejected, detail.command.work_order_id.encode(), to_json(detail))
        assert value is not None   # judge routes only a command it parsed from these bytes
        await emit(topics.fusion_inbox, detail.encode(), value)

    @app.agent(commands, name="route_commands")
    async def route_commands(stream):
        async for event in stream.events():
            m = event.message
            try:
                await route(m, event.value)
            except Exception as e:  # noqa: BLE001 - one command never stops the agent
                log.exception("指令内部错误 internal error on command %s[%d]@%d", m.topic, m.partition, m.offset)
                try:
                    await dead(m, event.value, "internal_error", f"{type(e).__name__}: {e}",
                               exc=type(e).__name__)
                except Exception:  # noqa: BLE001 - not even the dead letter went out: logged
                    log.exception("死信发送失败 could not dead-letter command %s[%d]@%d", m.topic,
                                  m.partition, m.offset)


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
