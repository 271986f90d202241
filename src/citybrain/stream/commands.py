"""``route_commands`` (a Faust agent: commands are a low-rate stream): workorders.commands,
keyed by work-order id, forwarded to the fusion inbox partition that owns the order —
the group named in the id.  Malformed commands are dead letters; ids that are not ours
are refused on workorders.rejected."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import faust
from pydantic import ValidationError
from pydantic_core import to_json

from citybrain import metrics
from citybrain.domain.fusion import group_of
from citybrain.domain.normalize import RecordMeta, dead_letter, field_path
from citybrain.kafka.topics import Topics
from citybrain.wire.models import Command, CommandRejection

Emit = Callable[[str, bytes | None, bytes], Awaitable[None]]


def install(app: faust.App, topics: Topics, emit: Emit) -> None:
    commands = app.topic(topics.commands, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    @app.agent(commands, name="route_commands")
    async def route_commands(stream):
        async for event in stream.events():
            m = event.message
            try:
                cmd = Command.model_validate_json(event.value or b"")
            except ValidationError as e:
                err = e.errors(include_url=False)[0]
                meta = RecordMeta(m.topic, m.partition, m.offset, m.timestamp, m.key)
                await emit(topics.deadletter, m.key, to_json(dead_letter(
                    "command", event.value, meta,
                    "missing_field" if err["type"] == "missing" else "invalid_field",
                    str(e).splitlines()[0], field_path(err["loc"]))))
                continue
            group = group_of(cmd.work_order_id)
            if group is None:
                metrics.COMMANDS_REJECTED.labels("unknown_work_order").inc()
                await emit(topics.rejected, cmd.work_order_id.encode(), to_json(CommandRejection(
                    command=cmd, reason="unknown_work_order",
                    detail=f"{cmd.work_order_id} is not a work-order id", at=datetime.now(UTC))))
                continue
            await emit(topics.fusion_inbox, group.encode(), event.value)
