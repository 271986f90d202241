"""The synthetic history the history benchmark writes: valid wire records, a realistic mix."""

from collections import Counter
from datetime import UTC, datetime

import orjson

from citybrain.domain.evaluation import Evaluation
from citybrain.wire.models import OrderState, WorkOrderChange
from citybrain_tools.simulate.history import generate

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def test_a_generated_history_is_valid_and_mixed(config):
    records = list(generate(config, days=12, per_day=200, open_orders=150, now=NOW, seed=3))
    events = [r for r in records if r.topic == "events"]
    states = [r for r in records if r.topic == "state"]
    changes = [WorkOrderChange.model_validate_json(r.value) for r in events]
    for r in states:
        OrderState.model_validate_json(r.value)
    assert all(r.timestamp_ms <= NOW.timestamp() * 1000 for r in records)
    kinds = Counter(c.type for c in changes)
    assert kinds["created"] == 12 * 200
    assert {"returned", "verification_rejected", "extended", "supervised", "cancelled"} <= set(kinds)
    latest = {}
    for c in changes:
        latest[c.work_order_id] = c.snapshot
    still_open = [s for s in latest.values() if s.status not in ("closed", "cancelled")]
    assert 100 <= len(still_open) <= 260
    # Every order's last state record is its latest snapshot; old open ones were rewritten within a day.
    last_state = {}
    for r in states:
        last_state[r.key.decode()] = (r.timestamp_ms, orjson.loads(r.value))
    assert all(last_state[wo][1]["version"] == s.version for wo, s in latest.items())
    day_ago = NOW.timestamp() * 1000 - 86_400_000
    assert all(last_state[s.work_order_id][0] >= day_ago for s in still_open)
    # The evaluation folds it: orders were closed on time and late.
    ev = Evaluation("Asia/Shanghai")
    for c in events:
        ev.add(orjson.loads(c.value))
    row = ev.figures("2026-11")["*"]
    assert row["closed"] > 1500 and 0 < row["on_time_closure_rate"] < 1


def test_records_come_in_time_order_as_a_live_system_appends_them(config):
    stamps = [r.timestamp_ms for r in generate(config, days=5, per_day=100, open_orders=60, now=NOW, seed=4)]
    assert stamps == sorted(stamps)
