"""The one read-until-the-end loop, against a fake consumer."""

from types import SimpleNamespace

from aiokafka import TopicPartition

from citybrain.kafka.reading import read_until, remaining, seek_to_committed, seek_to_first

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class FakeConsumer:
    """Partitions as lists of values; ``getmany`` hands out up to ``per_fetch`` records
    of each partition asked for, from its position."""

    def __init__(self, logs: dict[TopicPartition, list[bytes]], first: dict[TopicPartition, int] | None = None,
                 per_fetch: int = 2):
        self.logs, self.per_fetch = logs, per_fetch
        self.first = first or {tp: 0 for tp in logs}
        self.pos = {tp: 0 for tp in logs}
        self.asked: list[set[TopicPartition]] = []

    async def beginning_offsets(self, tps):
        return {tp: self.first[tp] for tp in tps}

    def seek(self, tp, offset):
        self.pos[tp] = offset

    async def position(self, tp):
        return self.pos[tp]

    async def getmany(self, *tps, timeout_ms=0, max_records=None):
        self.asked.append(set(tps))
        out = {}
        for tp in tps:
            start = self.pos[tp]
            values = self.logs[tp][start:start + self.per_fetch]
            if values:
                out[tp] = [SimpleNamespace(offset=start + i, value=v) for i, v in enumerate(values)]
                self.pos[tp] = start + len(values)
        return out


async def test_reads_every_partition_to_its_end_from_the_first_retained_offset():
    c = FakeConsumer({A: [b"a0", b"a1", b"a2", b"a3", b"a4"], B: [b"b0"]}, first={A: 1, B: 0})
    c.pos = {A: 4, B: 1}                 # wherever it was: seek_to_first sets it
    first = await seek_to_first(c, [A, B])
    assert first == {A: 1, B: 0} and c.pos == {A: 1, B: 0}
    end = {A: 5, B: 1}
    assert await remaining(c, end) == 5
    seen: list[bytes] = []
    counts: list[int] = []
    n = await read_until(c, end, lambda tp, recs: seen.extend(r.value for r in recs), after_batch=counts.append)
    assert n == 5 and sorted(seen) == [b"a1", b"a2", b"a3", b"a4", b"b0"]
    assert [v for v in seen if v.startswith(b"a")] == [b"a1", b"a2", b"a3", b"a4"]   # in order per partition
    assert counts == [3, 5]
    assert c.asked[-1] == {A}            # a partition at its end is not fetched again


async def test_nothing_to_read_fetches_nothing():
    c = FakeConsumer({A: [b"x"]})
    c.pos[A] = 1
    assert await read_until(c, {A: 1}, lambda tp, recs: None) == 0
    assert c.asked == []


async def test_enough_stops_early():
    c = FakeConsumer({A: [b"%d" % i for i in range(10)]})
    seen: list[bytes] = []
    n = await read_until(c, {A: 10}, lambda tp, recs: seen.extend(r.value for r in recs),
                         enough=lambda: len(seen) >= 3)
    assert n == 4 and len(c.asked) == 2


async def test_a_rewind_goes_to_each_committed_offset_or_the_first_retained_where_none():
    c = FakeConsumer({A: [b"a0", b"a1", b"a2"], B: [b"b0", b"b1"]}, first={A: 0, B: 1})
    c.pos = {A: 3, B: 2}
    await seek_to_committed(c, {A: 2, B: None})
    assert c.pos == {A: 2, B: 1}
