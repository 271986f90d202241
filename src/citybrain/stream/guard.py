"""No record can stop a stage: each input record handed to the stage gets exactly one
outcome — its outputs, or one dead letter: ``internal_error`` when handling it raised,
``output_rejected`` when an output is over the size limit or the broker refused one of
its outputs on an earlier try (``poison``)."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import ConsumerRecord
from pydantic_core import to_json

from citybrain import metrics
from citybrain.domain.normalize import dead_letter, dead_letter_key
from citybrain.logfilter import ThrottledLog
from citybrain.stream.output import Output, Source
from citybrain.stream.records import record_meta
from citybrain.stream.stage import RunnerSettings, Stage

log = logging.getLogger("citybrain.stage")


class RecordGuard:
    SLICE_SECONDS = 0.005   # handling gives the event loop back this often (handle_in_slices)
    SLICE_RECORDS = 16      # … looking at the clock after this many records

    def __init__(self, stage: Stage, settings: RunnerSettings):
        self.stage, self.settings = stage, settings
        self.poison: set[Source] = set()   # inputs whose outputs the broker refused
        self.say = ThrottledLog(log)

    async def handle_in_slices(self, records: list[ConsumerRecord]) -> list[Output]:
        """``handle`` the batch, giving the event loop back every ``SLICE_SECONDS`` of
        work: the worker's stages, readers and clients share one loop, and a full batch
        (2,000 records, 30–60 ms) held the other stage's fetches and acknowledgements —
        a dispatch waiting behind a normalise batch — for all of it.  The runner's lock
        stays held: a rebalance still waits for the whole batch."""
        out: list[Output] = []
        i, n = 0, len(records)
        while True:
            deadline = time.perf_counter() + self.SLICE_SECONDS
            with metrics.batched():   # a slice's counts added once, not per record
                while i < n:
                    out += self.handle(records[i:i + self.SLICE_RECORDS])
                    i += self.SLICE_RECORDS
                    if time.perf_counter() >= deadline:
                        break
            if i >= n:
                return out
            await asyncio.sleep(0)

    def handle(self, records: list[ConsumerRecord]) -> list[Output]:
        """The records' outcomes, each output naming its input (``source``)."""
        out: list[Output] = []
        limit = self.settings.max_output_bytes
        for m in records:
            source = (m.topic, m.partition, m.offset)
            mark = len(out)
            if source in self.poison:
                out.append(self._dead(m, "output_rejected", "the broker refused an output of this record"))
            else:
                try:
                    self.stage.handle(m, out)
                    big = next((o for o in out[mark:] if len(o.value or b"") + len(o.key or b"") > limit), None)
                    if big is not None:
                        del out[mark:]
                        out.append(self._dead(m, "output_rejected", f"its output to {big.topic} would be "
                                              f"{len(big.value or b'')} bytes; the limit is {limit}"))
                except Exception as e:  # noqa: BLE001 - one record never stops a stage
                    del out[mark:]
                    self.say(logging.ERROR, f"internal/{type(e).__name__}",
                             "内部错误 internal error in %s on %s[%d]@%d, record dead-lettered: %r",
                             self.stage.name, m.topic, m.partition, m.offset, e, exc_info=e)
                    out.append(self._dead(m, "internal_error", f"{type(e).__name__}: {e}",
                                          exception_type=type(e).__name__))
            for o in out[mark:]:
                o.source = source
        return out

    def _dead(self, m: ConsumerRecord, reason: str, detail: str, exception_type: str | None = None) -> Output:
        source = self.stage.source_of(m)
        dead = dead_letter(source, m.value, record_meta(m), reason, detail,
                           keep_bytes=self.settings.keep_original_bytes, exception_type=exception_type,
                           keep_original=self.settings.keep_original)
        metrics.count_dead(source, reason)
        return Output(self.settings.deadletter_topic, dead_letter_key(m.key), to_json(dead))
