"""A field source's producer sends again what fails for a reason that passes, and makes a
new producer when the idempotent one's sequence state breaks."""

import asyncio
import time
from types import SimpleNamespace

import pytest
from aiokafka.errors import (
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
)

from citybrain_tools.simulate.source import FieldSource, again

from .test_runner import LeaderlessProducer


def test_what_is_sent_again_and_what_is_not():
    assert again(KafkaTimeoutError()) and again(LeaderNotAvailableError())
    assert not again(MessageSizeTooLargeError()) and not again(None)


class BrokenSequenceProducer(LeaderlessProducer):
    """The first producer's batch of k1 fails with OutOfOrderSequenceNumber (its leader lost
    batches only it had): that producer is done for; the next acknowledges everything."""

    def __init__(self, made: list):
        super().__init__()
        self.first = not made
        made.append(self)
        self.stopped = False

    async def stop(self):
        self.stopped = True

    async def send(self, topic, value, key=None, timestamp_ms=None):
        self.tries.append(key)
        future = asyncio.get_running_loop().create_future()
        if self.first and key == b"k1":
            future.set_exception(OutOfOrderSequenceNumber())
        else:
            future.set_result(SimpleNamespace(timestamp=time.time() * 1000))
            self.acked.append(key)
        return future


async def test_a_producer_whose_sequence_broke_is_replaced_and_its_failed_records_sent_again():
    made: list[BrokenSequenceProducer] = []
    source = await FieldSource(lambda: BrokenSequenceProducer(made)).start()
    for i in range(4):
        await source.send("t", b"{}", f"k{i}".encode())
    await source.settle()
    await source.stop()
    assert len(made) == 2 and made[0].stopped and made[1].stopped
    assert made[0].acked == [b"k0", b"k2", b"k3"] and made[1].acked == [b"k1"]
    assert source.retried == 1


async def test_a_record_refused_for_good_fails_the_settle():
    class Refusing(LeaderlessProducer):
        async def send(self, topic, value, key=None, timestamp_ms=None):
            future = asyncio.get_running_loop().create_future()
            future.set_exception(MessageSizeTooLargeError())
            return future
    source = await FieldSource(Refusing).start()
    await source.send("t", b"x" * 10, b"k")
    with pytest.raises(MessageSizeTooLargeError):   # not sent for ever
        await source.settle()
