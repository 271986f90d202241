"""A stage runner put together: its consumer, and the checkpoint of the configured
processing guarantee — the one place that asks which guarantee a stage runs under."""

from __future__ import annotations

from typing import Any

from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from citybrain.kafka.clients import HOT_PATH_CONSUMER_REQUEST_TIMEOUT_MS, kafka_consumer
from citybrain.stream.at_least_once import AtLeastOnce
from citybrain.stream.checkpoint import Checkpoint, ProducerFactory
from citybrain.stream.exactly_once import ExactlyOnce
from citybrain.stream.replayguard import ReplayGuard
from citybrain.stream.runner import StageRunner
from citybrain.stream.stage import RunnerSettings, Stage


def stage_consumer(stage: Stage, settings: RunnerSettings) -> Any:
    """The stage's consumer group member (not started).  Range assignment: partition n of
    every input topic goes to the same member, so under exactly_once one transactional id
    per partition number covers all its inputs; eager rebalancing (aiokafka's only kind)
    revokes, and so commits, a partition's work before the group moves on — what one
    transactional id per process relies on (KIP-447, stream/exactly_once.py)."""
    return kafka_consumer(
        bootstrap_servers=settings.bootstrap, group_id=stage.group_id, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=settings.max_batch_records,
        fetch_max_wait_ms=getattr(stage, "fetch_max_wait_ms", 20),
        session_timeout_ms=settings.session_timeout_ms, heartbeat_interval_ms=settings.heartbeat_ms,
        isolation_level="read_committed", partition_assignment_strategy=(RangePartitionAssignor,),
        group_instance_id=settings.group_instance_id, client_id=f"citybrain-{stage.name}",
        request_timeout_ms=HOT_PATH_CONSUMER_REQUEST_TIMEOUT_MS)   # a hung coordinator left in 5 s (kafka/clients.py)


def stage_checkpoint(stage: Stage, settings: RunnerSettings, consumer: Any,
                     new_producer: ProducerFactory) -> Checkpoint:
    """``new_producer``: transactional id (None: none) → a new, unstarted producer."""
    if settings.guarantee == "exactly_once":
        return ExactlyOnce(new_producer, stage.group_id, stage.name, consumer=consumer,
                           instance_id=settings.group_instance_id)
    urgent = frozenset(getattr(stage, "urgent_topics", ()))
    return AtLeastOnce(consumer, new_producer, stage.name, urgent=urgent,
                       replay=ReplayGuard(settings.bootstrap, urgent, stage.group_id) if urgent else None)


def stage_runner(stage: Stage, settings: RunnerSettings, new_producer: ProducerFactory) -> StageRunner:
    consumer = stage_consumer(stage, settings)
    return StageRunner(stage, settings, consumer, stage_checkpoint(stage, settings, consumer, new_producer))
