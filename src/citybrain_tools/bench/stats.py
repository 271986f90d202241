"""Percentiles as the benchmarks report them: seconds in, milliseconds out."""

from __future__ import annotations


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)

    def q(p: float) -> float:
        return round(v[min(len(v) - 1, int(p * len(v)))] * 1000, 2)

    return {"n": len(v), "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99),
            "max_ms": round(v[-1] * 1000, 2)}
