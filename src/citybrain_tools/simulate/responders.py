"""Simulated people for the demo: departments that accept and handle what they are sent
(as lead or as assist), an operator who triages what routing could not place, grid
members who verify on site.

``next_moves`` is the pure decision (what each person does next to an order, and after
how long: the lead and every assisting department work in parallel, the lead handles once
the parts are done); ``respond`` follows workorders.events and sends those commands on
workorders.commands, so the demo's orders travel the whole loop and close.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time

import orjson

from citybrain.kafka.clients import kafka_consumer, kafka_producer
from citybrain.kafka.topics import Topics
from citybrain.wire.enums import OPEN_PARTS
from citybrain.wire.models import OPEN_STATUSES

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
        if any(a["status"] in OPEN_PARTS for a in snapshot.get("assists") or ()):
            return None    # the lead's handle waits for the assisting parts (协办未完成)
        return rng.uniform(10, 30), {"action": "handle", "note": "已处置 handled on site",
                                     "actor": {"id": f"{dept}-demo", "role": "department", "department": dept}}
    if status == "handled":
        return rng.uniform(5, 15), {"action": "verify", "note": "现场核查通过 checked on site",
                                    "actor": {"id": f"GM-{community[-3:]}", "role": "grid",
                                              "grid_prefix": community}}
    reports = [e.get("report_id") for e in snapshot.get("events") or () if e.get("report_id")]
    if status == "closed" and reports and not snapshot.get("visits"):
        # 回访: the hotline calls the first reporter back (mostly satisfied, as in practice).
        roll = rng.random()
        satisfaction = "satisfied" if roll < 0.8 else "basically_satisfied" if roll < 0.95 else "unsatisfied"
        return rng.uniform(5, 15), {"action": "visit", "satisfaction": satisfaction, "report_id": reports[0],
                                    "actor": {"id": "op-demo", "role": "operator"}, "note": "演示回访 demo call-back"}
    return None


def next_moves(snapshot: dict, rng: random.Random) -> list[tuple[float, str, dict]]:
    """(delay seconds, whose step — ``lead:<status>`` or ``<department>:<part status>`` —,
    command fields) for every person with a next step on this order."""
    moves = []
    lead = next_move(snapshot, rng)
    if lead is not None:
        moves.append((lead[0], f"lead:{snapshot['status']}", lead[1]))
    if snapshot["status"] in OPEN_STATUSES:
        for a in snapshot.get("assists") or ():
            dept = a["department"]
            actor = {"id": f"{dept}-demo", "role": "department", "department": dept}
            if a["status"] == "dispatched":
                moves.append((rng.uniform(5, 20), f"{dept}:dispatched", {"action": "accept", "actor": actor}))
            elif a["status"] == "accepted":
                moves.append((rng.uniform(10, 30), f"{dept}:accepted",
                              {"action": "handle", "note": "协办已处置 part done on site", "actor": actor}))
    return moves


def steps_of(snapshot: dict) -> set[str]:
    """Whose steps an order is at now (the keys ``next_moves`` gives)."""
    return {f"lead:{snapshot['status']}"} | {f"{a['department']}:{a['status']}" for a in snapshot.get("assists") or ()}


async def respond(bootstrap: str, topics: Topics, stop: asyncio.Event, seed: int = 1) -> int:
    rng = random.Random(seed)
    consumer = kafka_consumer(topics.workorder_events, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", enable_auto_commit=False)
    producer = kafka_producer(bootstrap_servers=bootstrap, acks="all", client_id="citybrain-responders")
    await consumer.start()
    await producer.start()
    due: list[tuple[float, int, str, str, int, dict]] = []
    at: dict[str, set[str]] = {}            # each order's current steps
    planned: dict[str, set[str]] = {}       # the steps a move is planned for
    sent = n = 0
    try:
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for m in records:
                    change = orjson.loads(m.value)
                    snap, wo = change["snapshot"], change["work_order_id"]
                    at[wo] = steps_of(snap)
                    mine = planned.setdefault(wo, set())
                    mine &= at[wo]
                    for delay, step, fields in next_moves(snap, rng):
                        if step in mine:
                            continue   # more evidence on an order whose next step is planned already
                        n += 1
                        mine.add(step)
                        heapq.heappush(due, (time.monotonic() + delay, n, wo, step, change["version"], fields))
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, _, wo, step, version, fields = heapq.heappop(due)
                if step not in at.get(wo, ()):
                    continue   # the order moved on meanwhile
                cmd = {"command_id": f"demo-{wo}-{version}-{step}", "work_order_id": wo, "ts": _now(), **fields}
                await producer.send_and_wait(topics.commands, orjson.dumps(cmd), key=wo.encode())
                sent += 1
    finally:
        await producer.stop()
        await consumer.stop()
    return sent


def _now() -> str:
    from datetime import UTC, datetime
    return datetime.now(UTC).isoformat()
