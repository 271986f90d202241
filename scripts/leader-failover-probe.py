"""Bare failover probe (issue 38 §1; docs/performance.md "A partition leader killed"): a 3-node cluster, one topic 6 partitions 3/2, a producer (acks=all,
idempotent) sending to every partition every 20 ms, a reader (assign), a group member
committing every 200 ms.  Kill a node (the busiest leader, or the active controller), restart
it 5 s later; report the worst end-to-end wait of records sent after the kill, the gap, and
the broker-log timeline."""

import asyncio
import re
import sys
import time
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from citybrain.kafka.clients import HOT_PATH_PRODUCER, kafka_admin, kafka_consumer, kafka_producer
from citybrain_tools.local_kafka.cluster import LocalCluster

PARTS = 6


def controller_leader(cluster: LocalCluster) -> int | None:
    best = (None, "")
    for n in range(1, cluster.count + 1):
        log = (cluster.node(n).state_dir / "broker.log").read_text(errors="replace")
        for m in re.finditer(r"^\[([^\]]+)\] INFO \[RaftManager id=(\d+)\] Completed transition to Leader", log, re.M):
            if m.group(1) > best[1]:
                best = (int(m.group(2)), m.group(1))
    return best[0]


async def main(state: str, which: str) -> None:
    cluster = LocalCluster(Path(state))
    bootstrap = cluster.start(die_with_parent=True)
    topic = f"probe-{int(time.time())}"
    admin = kafka_admin(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTS, 3, topic_configs={"min.insync.replicas": "2"})])
    await asyncio.sleep(2)
    [d] = await admin.describe_topics([topic])
    await admin.close()
    led = {p["partition"]: p["leader"] for p in d["partitions"]}
    prod = kafka_producer(bootstrap_servers=bootstrap, **HOT_PATH_PRODUCER)
    await prod.start()
    reader = kafka_consumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=20)
    await reader.start()
    reader.assign([TopicPartition(topic, p) for p in range(PARTS)])
    member = kafka_consumer(topic, bootstrap_servers=bootstrap, group_id=topic + "-g", enable_auto_commit=False,
                            group_instance_id="probe-1", session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await member.start()
    got: list[tuple[float, float, int]] = []     # (receipt, sent, partition)
    acks: list[tuple[float, float, int]] = []
    commits: list[tuple[float, float, str]] = []
    stop = False

    async def send_loop():
        i = 0
        while not stop:
            for p in range(PARTS):
                sent = time.time()
                fut = await prod.send(topic, repr(sent).encode(), partition=p)
                fut.add_done_callback(lambda f, s=sent, p=p: acks.append((time.time(), s, p)))
            i += 1
            await asyncio.sleep(0.02)

    async def read_loop():
        while not stop:
            batch = await reader.getmany(timeout_ms=100)
            now = time.time()
            for tp, ms in batch.items():
                for m in ms:
                    got.append((now, float(m.value), tp.partition))

    async def member_loop():
        while not stop:
            await member.getmany(timeout_ms=50)
            t0 = time.time()
            try:
                await member.commit()
                commits.append((t0, time.time(), "ok"))
            except Exception as e:  # noqa: BLE001
                commits.append((t0, time.time(), type(e).__name__))
            await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(f()) for f in (send_loop, read_loop, member_loop)]
    await asyncio.sleep(6)
    ctl = controller_leader(cluster)
    counts = {}
    for n in led.values():
        counts[n] = counts.get(n, 0) + 1
    busiest = max(counts, key=counts.get)
    if which == "controller":
        victim = ctl
    elif which == "noncontroller":
        victim = next(n for n in sorted(counts, key=counts.get, reverse=True) if n != ctl)
    else:
        victim = busiest
    killed = time.time()
    cluster.kill(victim)
    await asyncio.sleep(5)
    t_restart = time.time()
    await asyncio.to_thread(cluster.restart, victim, die_with_parent=True)
    back = time.time()
    await asyncio.sleep(15)
    stop = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await prod.stop()
    await reader.stop()
    await member.stop()

    def worst(rows, since, until, parts=None):
        w = [(r - s, s - killed) for r, s, p in rows if since <= s < until and (parts is None or p in parts)]
        return max(w, default=(0, 0))

    victim_parts = {p for p, n in led.items() if n == victim}
    other = set(range(PARTS)) - victim_parts
    receipts = sorted(r for r, s, p in got if r >= killed)
    gap = max((b - a for a, b in zip([killed, *receipts], receipts, strict=False)), default=0)
    fence = []
    for n in range(1, cluster.count + 1):
        log = (cluster.node(n).state_dir / "broker.log").read_text(errors="replace")
        for m in re.finditer(r"^\[([^\]]+)\] INFO (.*?(Fencing broker|Completed transition to Leader|Completed transition to Unattached|transition to Candidate|Completed transition to Prospective).*)$", log, re.M):
            ts = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + int(m.group(1)[20:23]) / 1000
            if killed - 1 < ts < killed + 60:
                fence.append((round(ts - killed, 2), n, m.group(2)[:110]))
    bad_commits = [(round(a - killed, 2), round(b - a, 2), e) for a, b, e in commits if a >= killed - 1 and (e != "ok" or b - a > 0.5)]
    print(f"victim {victim} ({which}; controller was {ctl}; led {sorted(victim_parts)}), restart began +{t_restart - killed:.1f}s, up +{back - killed:.1f}s")
    print(f"  read gap after kill {gap:.2f}s; worst e2e of records sent in [kill-1, kill+5): victim's partitions "
          f"{worst(got, killed - 1, killed + 5, victim_parts)[0]:.2f}s, others {worst(got, killed - 1, killed + 5, other)[0]:.2f}s")
    print(f"  worst ack of sends in [kill-1,kill+5): victim's {worst(acks, killed - 1, killed + 5, victim_parts)[0]:.2f}s others {worst(acks, killed - 1, killed + 5, other)[0]:.2f}s;"
          f" around the restart [restart, +15): e2e {worst(got, back - 5, back + 15)[0]:.2f}s (sent at +{worst(got, back - 5, back + 15)[1]:.1f}s)")
    fenced_at = min((t for t, n, msg in fence if "Fencing broker" in msg and t > 0), default=None)
    if fenced_at is not None:
        fa = killed + fenced_at
        def resumed(parts):
            stuck = [r for r, s_, p in got if s_ < fa and r >= fa and p in parts]
            return max(stuck, default=fa) - fa
        print(f"  fenced +{fenced_at:.2f}s; records sent before the fence all read by fence +{resumed(victim_parts):.2f}s "
              f"(victim's partitions), +{resumed(other):.2f}s (others)")
    print(f"  commits slow/failed: {bad_commits[:8]}")
    for row in sorted(fence):
        print("   ", row)


if __name__ == "__main__":   # state dir of a new cluster, then busiest | controller | noncontroller
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "busiest"))
