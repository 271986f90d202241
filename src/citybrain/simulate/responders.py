"""Simulated people for the demo: departments that accept and handle what they are sent,
an operator who triages what routing could not place, grid members who verify on site.

``next_move`` is the pure decision (what the next person does to an order, and after how
long); ``respond`` follows workorders.events and sends those commands on
workorders.commands, so the demo's orders travel the whole loop and close.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time

from citybrain.kafka.clients import kafka_consumer
import orjson
from aiokafka import AIOKafkaProducer

from citybrain.kafka.topics import Topics

TRIAGE_DEPARTMENT = "city_mgmt"   # where the demo operator sends what nothing routed


def next_move(snapshot: dict, rng: random.Random) -> tuple[float, dict] | None:
    """(delay seconds, command fields) for the next step of an order, or None."""
    status = snapshot["status"]
    dept = snapshot.get("department")
    community = snapshot["location"]["community_code"]
    if status == "registered":
        return rng.uniform(5, 15), {"action": "dispatch", "department": TRIAGE_DEPARTMENT,
                                    "actor": {"id": "op-demo", "role": "operator"},
                                    "note": "演示分拨 demo triage"}
    if status == "dispatched" and dept:
        return rng.uniform(5, 20), {"action": "accept", "actor": {"id": f"{dept}-demo", "role": "department",
                                                                  "department": dept}}
    if status == "accepted" and dept:
        return rng.uniform(10, 30), {"action": "handle", "note": "已处置 handled on site",
                                     "actor": {"id": f"{dept}-demo", "role": "department", "department": dept}}
    if status == "handled":
        return rng.uniform(5, 15), {"action": "verify", "note": "现场核查通过 checked on site",
                                    "actor": {"id": f"GM-{community[-3:]}", "role": "grid",
                                              "grid_prefix": community}}
    return None


async def respond(bootstrap: str, topics: Topics, stop: asyncio.Event, seed: int = 1) -> int:
    rng = random.Random(seed)
    consumer = kafka_consumer(topics.workorder_events, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="citybrain-responders")
    await consumer.start()
    await producer.start()
    due: list[tuple[float, int, str, str, int, dict]] = []
    status: dict[str, str] = {}        # each order's latest status
    planned: dict[str, str] = {}       # the status a move is planned for
    sent = n = 0
    try:
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for m in records:
                    change = orjson.loads(m.value)
                    snap, wo = change["snapshot"], change["work_order_id"]
                    status[wo] = snap["status"]
                    if planned.get(wo) == snap["status"]:
                        continue   # more evidence on an order whose next step is planned already
                    move = next_move(snap, rng)
                    if move is not None:
                        n += 1
                        planned[wo] = snap["status"]
                        heapq.heappush(due, (time.monotonic() + move[0], n, wo, snap["status"],
                                             change["version"], move[1]))
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, _, wo, was, version, fields = heapq.heappop(due)
                if status.get(wo) != was:
                    continue   # the order moved on meanwhile
                cmd = {"command_id": f"demo-{wo}-{version}", "work_order_id": wo, "ts": _now(), **fields}
                await producer.send_and_wait(topics.commands, orjson.dumps(cmd), key=wo.encode())
                sent += 1
    finally:
        await producer.stop()
        await consumer.stop()
    return sent


def _now() -> str:
    from datetime import UTC, datetime
    return datetime.now(UTC).isoformat()
