"""One lane's transactions, alone: what exactly_once pays per transaction on each
protocol (kafka/transactions_v2.py).  A transactional producer runs transactions back to
back as a lane does — three records over two partitions, the group's offset, commit — on
the first protocol and on v2 in turn, rounds alternating; each transaction timed begin →
committed, and split into begin → sent and offsets recorded, and its EndTxn."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from citybrain.kafka.admin import create_topics
from citybrain.kafka.clients import kafka_producer
from citybrain.kafka.topics import TopicSpec
from citybrain_tools.bench.common import drop_bench_topics, fresh_prefix
from citybrain_tools.bench.stats import percentiles

PROTOCOLS = (1, 2)
WARM_UP = 20   # transactions per round not counted (the first find their coordinator)


async def one_round(bootstrap: str, topic: str, protocol: int, transactions: int) -> dict:
    producer = kafka_producer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-{protocol}-{uuid.uuid4().hex[:6]}",
                              linger_ms=0, retry_backoff_ms=10, transaction_protocol=protocol)
    await producer.start()
    whole, prepared, ends = [], [], []
    try:
        for i in range(WARM_UP + transactions):
            t0 = time.perf_counter()
            await producer.begin_transaction()   # then as a lane prepares (stream/exactly_once.py)
            sent = [await producer.send(topic, b"x" * 200, partition=k % 2) for k in range(3)]
            await producer.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(i + 1, "")},
                                                       f"{topic}.group")
            await asyncio.gather(*sent)
            t1 = time.perf_counter()
            await producer.commit_transaction()
            t2 = time.perf_counter()
            if i >= WARM_UP:
                whole.append(t2 - t0)
                prepared.append(t1 - t0)
                ends.append(t2 - t1)
    finally:
        await producer.stop()
    return {"protocol": protocol, "transaction": percentiles(whole), "prepared": percentiles(prepared),
            "end": percentiles(ends)}


async def bench(bootstrap: str, rounds: int, transactions: int = 200) -> dict:
    topic = await fresh_prefix(bootstrap, "txn") + "out"
    await create_topics(bootstrap, [TopicSpec(topic, 2)])
    runs = []
    try:
        for r in range(rounds):
            for protocol in PROTOCOLS:
                print(f"  第 {r + 1} 轮 round {r + 1}: 协议 protocol v{protocol}, {transactions} transactions …", flush=True)
                runs.append(await one_round(bootstrap, topic, protocol, transactions))
    finally:
        await drop_bench_topics(bootstrap)
    return {"transactions_per_round": transactions, "runs": runs}


def report(result: dict) -> str:
    lines = [f"事务 transactions back to back, one producer (3 records over 2 partitions + the group's offset each; "
             f"{result['transactions_per_round']} a round after {WARM_UP} not counted), ms:",
             "  round protocol | transaction p50    p95    p99    max | begin → sent and offsets p50 p99 | EndTxn p50 p99"]
    for i, run in enumerate(result["runs"]):
        t, s, e = run["transaction"], run["prepared"], run["end"]
        lines.append(f"  {i // len(PROTOCOLS) + 1:>5} v{run['protocol']:<7} |        {t['p50_ms']:>6} {t['p95_ms']:>6} "
                     f"{t['p99_ms']:>6} {t['max_ms']:>6} |                 {s['p50_ms']:>6} {s['p99_ms']:>6} | "
                     f"{e['p50_ms']:>6} {e['p99_ms']:>6}")
    return "\n".join(lines)
