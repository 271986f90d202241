"""What a stage consumed, what it produced, and what it may commit: the one interface the
stage runner (stream/runner.py) drives, whatever the processing guarantee
(``processing_guarantee``, docs/architecture.md), as quix-streams' ``Checkpoint`` is.

The runner hands each batch over (``add``), lets the checkpoint bound what is in flight
and commit what is due (``settle``), commits everything at a hand-over (``commit``), and
tells it of partitions claimed and released and of a failure (``recover``).  Everything
guarantee-specific lives behind it — the producers, the offset commits, the changelog
writes:

- ``AtLeastOnce`` (stream/at_least_once.py): outputs sent at once, changelog writes once
  they are acknowledged, offsets committed once those are, on the consumer, in order.
- ``ExactlyOnce`` (stream/exactly_once.py): outputs, changelog writes and offsets in one
  Kafka transaction per input partition number, each with its own transactional producer.

Both are unit-tested against fakes (tests/unit/stream/).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordTooLargeError,
)

from citybrain.stream.output import Output, Source

log = logging.getLogger("citybrain.stage")

Offsets = dict[TopicPartition, int]   # next offset to read, per input partition
Send = Callable[[Output], Awaitable[asyncio.Future]]
ProducerFactory = Callable[[str | None], Any]   # transactional id (None: none) → a new, unstarted producer

# Errors the broker gives for one record itself (not for the connection or the cluster):
# the input behind it becomes an ``output_rejected`` dead letter on the retry.
RECORD_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError, CorruptRecordException)


class Checkpoint(Protocol):
    """A processing guarantee as the runner's loop sees it."""

    async def start(self) -> None:
        """Before the first fetch: the producers the stage keeps all its life."""

    async def claim(self, partitions: set[int]) -> set[TopicPartition]:
        """Partition numbers about to be read back from their changelogs (exactly_once:
        their producers start, fencing a previous owner, so what is read is final).
        Returns the input partitions it has put the consumer on their committed offsets
        itself (exactly_once with one id per process: once no open transaction holds
        them); after a failure the runner rewinds the others."""

    async def release(self, partitions: set[TopicPartition]) -> None:
        """Partitions no longer this stage's (after their hand-over)."""

    async def add(self, offsets: Offsets, outputs: list[Output], state: list[Output]) -> list[asyncio.Future]:
        """Hand a batch over: its input offsets, outputs and changelog writes.  Returns
        futures done when its outputs are safe (acknowledged, or committed).  Raises
        ``ProduceFailed`` for an earlier batch's failure."""

    async def settle(self, fetched: bool) -> None:
        """Between batches: bound the batches in flight, commit what became committable;
        raises ``ProduceFailed`` (or the commit's error) for the first failure.
        ``fetched``: whether the batch just handed over came from the input (not a
        timer's outputs or an empty fetch)."""

    async def commit(self, state: list[Output]) -> None:
        """A hand-over: every batch handed over, and these last changelog writes,
        committed now."""

    async def recover(self) -> None:
        """After a failure: nothing pending will ever commit; producers that may be
        broken are replaced.  The runner then reads the state back and rewinds."""

    async def close(self) -> None:
        """The stage stops: the commit in flight lands (or fails), the producers stop."""


class ProduceFailed(Exception):
    """A produce or commit the broker did not acknowledge.  ``suspect``: the input whose
    output the broker refused for itself (too large, invalid), when that was the cause;
    ``fenced``: another worker has taken the partition over."""

    def __init__(self, cause: BaseException, suspect: Source | None = None):
        super().__init__(repr(cause))
        self.cause, self.suspect = cause, suspect
        self.fenced = isinstance(cause, ProducerFenced)


def quiet(fut: asyncio.Future) -> None:
    """Abandoned futures: retrieve their exception so asyncio does not log it again."""
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())


def suspect(failed: list[tuple[BaseException, Output]]) -> Source | None:
    """The input to blame for a record-level refusal: the largest refused output's
    (a refused batch fails every record in it; the largest one is the likely cause, and
    the next retry narrows it down if not)."""
    blamed = [(len(o.value or b""), o.source) for e, o in failed if isinstance(e, RECORD_ERRORS) and o.source]
    return max(blamed)[1] if blamed else None


def refusals(sent: list[tuple[asyncio.Future, Output]]) -> list[tuple[BaseException, Output]]:
    """The finished sends the broker refused, with their outputs (unfinished and
    cancelled ones left out: the caller is already failing)."""
    return [(e, o) for f, o in sent
            if f.done() and not f.cancelled() and (e := f.exception()) is not None]


def check(sent: list[tuple[asyncio.Future, Output]]) -> None:
    """Every send is finished; a refused one fails the batch (a cancelled one too:
    ``exception()`` raises CancelledError for it)."""
    failed = [(e, o) for f, o in sent if (e := f.exception()) is not None]
    if failed:
        raise ProduceFailed(failed[0][0], suspect(failed))


