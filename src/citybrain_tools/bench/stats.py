"""Percentiles as the benchmarks report them: seconds in, milliseconds out."""

from __future__ import annotations

from typing import TypeVar


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)

    def q(p: float) -> float:
        return round(v[min(len(v) - 1, int(p * len(v)))] * 1000, 2)

    return {"n": len(v), "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99),
            "max_ms": round(v[-1] * 1000, 2)}


Row = TypeVar("Row", bound=tuple[float, ...])


def tail(rows: list[Row]) -> tuple[float, list[Row]]:
    """A dispatch's hops as (receipt, hop, hop, …) in seconds: the p99 of their sums, and the
    rows at or past it (the tail both the hops' split and the broker's pauses look at)."""
    totals = sorted(sum(r[1:]) for r in rows)
    p99 = totals[min(len(totals) - 1, int(0.99 * len(totals)))]
    return p99, [r for r in rows if sum(r[1:]) >= p99]
