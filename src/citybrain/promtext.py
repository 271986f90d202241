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


OUTCOME_COLUMNS = (("received", "收到 received"), ("normal", "正常 normal"), ("event", "事件 event"),
                   ("suppressed", "抑制 suppressed"), ("deadletter", "死信 deadletter"))


def outcome_table(text: str) -> str:
    """Per source: what came in and where it went, and whether it adds up (≤ 100 columns)."""
    from citybrain.display import pad, width
    rows = sorted(outcomes(text).items())
    first = max([width("来源 source"), *(len(s) for s, _ in rows)])
    lines = ["  " + pad("来源 source", first) + "".join(" " + h for _, h in OUTCOME_COLUMNS)
             + "  守恒 balanced"]
    for source, row in rows:
        lines.append("  " + pad(source, first)
                     + "".join(f"{row.get(k, 0):>{width(h) + 1},.0f}" for k, h in OUTCOME_COLUMNS)
                     + f"  {'✓' if conservation_ok(row) else '✗'}")
    return "\n".join(lines)
