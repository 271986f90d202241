"""Reading our own /metrics text: outcome sums and the conservation check."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> list[tuple[dict, float]]:
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out.append((s.labels, s.value))
    return out


def outcomes(text: str) -> dict[str, dict[str, float]]:
    """source -> {received, normal, event, suppressed, deadletter}"""
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for labels, v in samples(text, "citybrain_ingested_total"):
        table[labels["source"]]["received"] = v
    for labels, v in samples(text, "citybrain_ingest_outcome_total"):
        table[labels["source"]][labels["outcome"]] = v
    return dict(table)


def conservation_ok(row: dict[str, float]) -> bool:
    parts = sum(row.get(k, 0.0) for k in ("normal", "event", "suppressed", "deadletter"))
    return row.get("received", 0.0) == parts


def outcome_table(text: str) -> str:
    lines = ["  来源 source   收到 received   正常 normal   事件 event   抑制 suppressed   死信 deadletter   守恒 balanced",]
    for source, row in sorted(outcomes(text).items()):
        lines.append(f"  {source:<12}{row.get('received', 0):>14,.0f}{row.get('normal', 0):>13,.0f}"
                     f"{row.get('event', 0):>12,.0f}{row.get('suppressed', 0):>17,.0f}"
                     f"{row.get('deadletter', 0):>17,.0f}   {'✓' if conservation_ok(row) else '✗'}")
    return "\n".join(lines)
