"""The local broker's own pauses beside a latency tail: which dispatches were in flight while
the broker's JVM stood still for a collection (its ``-Xlog:gc`` file, local_kafka/broker.py).

A pause stops every hop at once — the source's produce, both stages' fetches and sends, the
department's fetch — so a dispatch whose path spans one waits for it whole.  Counting those
among the tail says how much of the tail the broker's collector explains, run by run."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from citybrain_tools.bench.stats import percentiles, tail

# [2026-12-06T11:31:25.169+0000][147.332s] GC(124) Pause Young (Normal) (G1 Evacuation Pause) 295M->209M(339M) 9.956ms
# The line is written as the pause ends: it spans [time − its length, time].
_PAUSE = re.compile(r"^\[(?P<at>[^\]]+)\]\[[^\]]*\] GC\(\d+\) Pause .+? (?P<ms>[0-9.]+)ms$")


def pauses(lines: Iterable[str], since: float, until: float) -> list[tuple[float, float]]:
    """The stop-the-world pauses (start, end; epoch seconds) that overlap [since, until]."""
    out = []
    for line in lines:
        m = _PAUSE.match(line.strip())
        if m is None:
            continue
        end = datetime.strptime(m["at"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        start = end - float(m["ms"]) / 1000
        if end >= since and start <= until:
            out.append((start, end))
    return sorted(out)


def read_pauses(gc_log: Path, since: float, until: float) -> list[tuple[float, float]] | None:
    """``pauses`` from the broker's log and its rotated predecessor; None with no log."""
    files = [p for p in (gc_log.with_name(gc_log.name + ".0"), gc_log) if p.exists()]
    if not files:
        return None
    lines: list[str] = []
    for p in files:
        lines += p.read_text(errors="replace").splitlines()
    return pauses(lines, since, until)


def spanned(rows: list[tuple[float, float, float, float]], paused: list[tuple[float, float]],
            since: float, until: float) -> dict:
    """``rows``: each dispatch as (receipt, hop, hop, hop) in seconds (bench/collector.py
    ``hops``).  The pauses in [since, until] (count, lengths, the share of the time), and how
    many dispatches' paths — source time to receipt — spanned one: in the tail (at or past
    the whole's p99, ``stats.tail``) and of all."""
    span = max(until - since, 1e-9)
    lengths = [end - start for start, end in paused]
    out: dict = {"pauses": {**percentiles(lengths), "share_of_time": round(sum(lengths) / span, 4)}}
    if not rows:
        return out

    def hit(row: tuple[float, float, float, float]) -> bool:
        receipt = row[0]
        sent = receipt - sum(row[1:])
        return any(start <= receipt and end >= sent for start, end in paused)
    _, slowest = tail(rows)
    out["tail_n"], out["tail_spanning"] = len(slowest), sum(1 for r in slowest if hit(r))
    out["all_n"], out["all_spanning"] = len(rows), sum(1 for r in rows if hit(r))
    return out
