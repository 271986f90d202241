"""Producers as aiokafka's looks to a field source while a cluster fails over."""

import asyncio
import time
from types import SimpleNamespace

from aiokafka.errors import KafkaTimeoutError, LeaderNotAvailableError, OutOfOrderSequenceNumber


class LeaderlessProducer:
    """A producer while a partition's leader is being replaced: the first send finds no
    room (``KafkaTimeoutError`` from the accumulator), record k2's first batch expires unsent
    and k3's first send meets a leader election; every later try is acknowledged."""

    def __init__(self):
        self.tries: list[bytes] = []
        self.acked: list[bytes] = []

    async def start(self):
        pass

    async def stop(self):
        pass

    async def flush(self):
        pass

    async def send(self, topic, value, key=None, timestamp_ms=None):
        self.tries.append(key)
        if len(self.tries) == 1:
            raise KafkaTimeoutError()
        future = asyncio.get_running_loop().create_future()
        if key == b"k2" and self.tries.count(key) == 1:
            future.set_exception(KafkaTimeoutError())
        elif key == b"k3" and self.tries.count(key) == 1:
            future.set_exception(LeaderNotAvailableError())
        else:
            future.set_result(SimpleNamespace(timestamp=time.time() * 1000))
            self.acked.append(key)
        return future


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

