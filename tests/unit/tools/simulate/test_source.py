"""A field source's producer sends again what fails for a reason that passes, and makes a
new producer when the idempotent one's sequence state breaks."""

import asyncio

import pytest
from aiokafka.errors import (
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
)

from citybrain_tools.simulate.source import FieldSource, again

from .fakes import BrokenSequenceProducer, LeaderlessProducer


def test_what_is_sent_again_and_what_is_not():
    assert again(KafkaTimeoutError()) and again(LeaderNotAvailableError())
    assert not again(MessageSizeTooLargeError()) and not again(None)


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


async def test_a_failure_of_a_producer_already_replaced_does_not_replace_the_new_one():
    made: list[BrokenSequenceProducer] = []
    source = await FieldSource(lambda: BrokenSequenceProducer(made)).start()
    await source.send("t", b"{}", b"k1")            # through the first producer: its sequence breaks …
    stale = source.pending[0]
    await source.settle()                           # … so a second producer takes over
    source.pending.append(stale)                    # a late failure of the first, seen again
    await source.settle()
    assert len(made) == 2 and not made[1].stopped   # the second stays
    assert made[1].acked == [b"k1", b"k1"] and source.retried == 2
