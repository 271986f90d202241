"""The paced sender: records go out in order, never early, and generating the next ones
never holds the event loop for more than one slice."""

import asyncio
import time

from citybrain.kafka.topics import Topics
from citybrain_tools.simulate import runner
from citybrain_tools.simulate.traffic import SimRecord

from .fakes import LeaderlessProducer


class SlowSimulator:
    """Two ticks of ten records, generated slowly: each slice of five costs 3 ms."""

    duration = 0.2
    events: list[str]

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def slices(self):
        for tick in range(2):
            batch = []
            for i in range(10):
                time.sleep(0.0006)
                batch.append(SimRecord("iot", b"k", b"{}", tick * 0.1 + i * 0.01, "normal"))
                if i % 5 == 4:
                    self.events.append("slice")
                    yield None
            yield from batch


async def test_paced_sending_is_in_order_never_early_and_yields_between_slices():
    events: list[str] = []
    sent: list[tuple[float, float]] = []
    done = asyncio.Event()

    async def heartbeat():
        while not done.is_set():
            events.append("beat")
            await asyncio.sleep(0)

    async def send(rec):
        sent.append((rec.at, time.monotonic() - start))

    beats = asyncio.create_task(heartbeat())
    start = time.monotonic()
    await runner._paced(SlowSimulator(events), send, start, pace_every=0.002)
    done.set()
    await beats
    assert [at for at, _ in sent] == sorted(at for at, _ in sent) and len(sent) == 20
    assert all(when >= at - 0.002 for at, when in sent)
    slices = [i for i, e in enumerate(events) if e == "slice"]
    assert len(slices) == 4
    # between one slice and the next the loop ran something else
    assert all("beat" in events[a + 1:b] for a, b in zip(slices, slices[1:], strict=False))


def test_ack_latency_is_the_time_from_create_time_to_the_ack():
    class Done:
        def __init__(self, ts_ms):
            self._ts = ts_ms

        def cancelled(self):
            return False

        def exception(self):
            return None

        def result(self):
            return type("Meta", (), {"timestamp": self._ts})()

    acks = runner.AckLatency()
    now_ms = time.time() * 1000
    for back in (1.0, 2.0, 40.0):
        acks.on_ack(Done(now_ms - back))
    got = acks.percentiles()
    assert got["n"] == 3 and 1.0 <= got["p50_ms"] < 5.0 and got["max_ms"] >= 40.0


class ListSimulator:
    """Four records at once, unpaced."""

    duration = 0.0

    def records(self):
        return [SimRecord("iot", f"k{i}".encode(), b"{}", 0.0, "normal") for i in range(4)]


async def test_a_record_without_a_leader_is_tried_again_not_lost(monkeypatch):
    producer = LeaderlessProducer()
    monkeypatch.setattr(runner, "kafka_producer", lambda **_: producer)
    result = await runner.run(ListSimulator(), "127.0.0.1:1", Topics(""), paced=False)
    assert sorted(producer.acked) == [b"k0", b"k1", b"k2", b"k3"]
    assert [producer.tries.count(k) for k in (b"k0", b"k1", b"k2", b"k3")] == [2, 1, 2, 2]
    assert result["sent"] == 4 and result["retried"] == 3
    assert "重试 sent again: 3" in runner.summary_text(result)

