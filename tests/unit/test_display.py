"""What a person reads (issue 35 item 6): one clock (CST), and every line of the demo's
and `citybrain kpis`'s output within 100 display columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citybrain.cli.read import KPI_COLUMNS, kpi_table
from citybrain.display import CLOCK_LABEL, MAX_COLUMNS, city_time, clip, width, wrap_items, wrap_words
from citybrain.domain.evaluation import STAGES, Figures
from citybrain.promtext import outcome_table
from citybrain_tools.sample.sites import SCENARIO_DEVICES
from citybrain_tools.simulate.demo import summary_lines
from citybrain_tools.simulate.runner import summary_text


def widest(text: str) -> int:
    return max(width(line) for line in text.split("\n"))


# --- one clock ---------------------------------------------------------------------------

def test_city_time_is_cst_whatever_the_offset():
    # a sensor stamps +08:00, the worker UTC: the same instant shows the same time
    assert city_time("2026-12-05T05:22:16.120+08:00") == "05:22:16"
    assert city_time("2026-12-04T21:22:16.120Z") == "05:22:16"
    assert city_time("2026-12-04T21:22:16.120+00:00") == "05:22:16"
    assert city_time("2026-12-04T16:22:16-05:00") == "05:22:16"
    assert city_time(datetime(2026, 12, 4, 21, 22, 16, tzinfo=UTC), "%Y-%m-%d %H:%M") == "2026-12-05 05:22"
    assert city_time(datetime(2026, 12, 4, 21, 22, 16)) == "05:22:16"        # naive: UTC
    assert city_time(datetime(2026, 12, 5, 5, 22, tzinfo=timezone(timedelta(hours=8))), "%H:%M") == "05:22"
    assert "CST" in CLOCK_LABEL


# --- width ----------------------------------------------------------------------------------

def test_width_counts_cjk_twice():
    assert width("abc") == 3
    assert width("燃气泄漏") == 8
    assert width("全部 *") == 6
    assert width("× — · █ ✓") == 9   # ambiguous-width signs: one column in a terminal
    assert clip("城管执法 city_mgmt", 8) == "城管执…"
    assert width(clip("城管执法 city_mgmt", 8)) <= 8


@given(st.lists(st.text(alphabet="ab 中文,", min_size=1, max_size=30), max_size=40))
def test_wrap_items_never_exceeds(items):
    text = wrap_items("  事件 events: ", items)
    assert widest(text) <= MAX_COLUMNS


@given(st.text(alphabet="abc 中文-/", max_size=400))
def test_wrap_words_never_exceeds(text):
    assert widest(wrap_words(text)) <= MAX_COLUMNS


def test_wrap_items_keeps_items_whole_and_in_order():
    items = [f"违法建设 illegal_construction ×{i}" for i in range(12)]
    text = wrap_items("  事件 events.normalized: 521 — ", items)
    assert widest(text) <= MAX_COLUMNS and len(text.split("\n")) > 1
    assert " ".join(text.split()) == " ".join(("  事件 events.normalized: 521 — " + ", ".join(items)).split())


# --- citybrain kpis ---------------------------------------------------------------------------

def realistic(codes: list[str]) -> dict[str, dict]:
    """Big figures for every row: six-digit counts, hours in the hundreds."""
    rows = {}
    for i, code in enumerate(["*", *codes]):
        f = Figures(code, closed=123_456 + i, on_time=100_000, reworked=1_234, extended=999, dispatches=150_000,
                    returns=12_345, assists=12_345, assists_handled=11_111, assists_returned=1_234,
                    visits=50_000, satisfied=45_000)
        for n, stage in enumerate(STAGES):
            f.hours[stage] = [0.004, 0.5 + n, 123.4 * (n + 1), 999.9]
        rows[code] = f.as_dict()
    rows["idle"] = Figures("idle").as_dict()       # nothing closed: dashes
    return rows


@pytest.fixture(scope="module")
def desks(config):
    return config.desks          # every department and street desk of the SAMPLE config


def test_kpi_tables_fit_in_100_columns(desks, config):
    figures = realistic(list(desks))
    text = kpi_table(figures, desks)
    assert widest(text) <= MAX_COLUMNS, max(text.split("\n"), key=width)
    for _, title in KPI_COLUMNS:      # every figure still has its column
        assert title in text
    for code in desks:                # and every desk its row
        assert code in text
    by_district = realistic(list(config.city_map.district_names))
    text = kpi_table(by_district, {**config.city_map.district_names, "*": "全市"}, "区县 district", joint=False)
    assert widest(text) <= MAX_COLUMNS
    assert "协办" not in text


def test_kpi_table_names_too_long_are_clipped_not_overflowing():
    figures = realistic(["x"])
    text = kpi_table(figures, {"x": "一个名字非常非常非常非常非常非常非常非常非常非常非常长的部门"})
    assert widest(text) <= MAX_COLUMNS
    assert "…" in text


# --- the demo's summary --------------------------------------------------------------------

def demo_records(config) -> tuple[list[dict], list[dict]]:
    streets = list(config.city_map.street_names)
    events, changes = [], []
    cats = [("违法建设", "illegal_construction"), ("占道经营", "street_vending"), ("违章停车", "illegal_parking"),
            ("垃圾满溢", "garbage_overflow"), ("噪声扰民", "noise"), ("路面积水", "waterlogging"),
            ("燃气泄漏", "gas_leak"), ("设备故障", "device_fault"), ("井盖缺失", "manhole_missing")]
    finders = [d[0] for d in SCENARIO_DEVICES]
    desks = list(config.desks)
    districts = list(config.city_map.district_names)
    for i in range(400):
        name, cat = cats[i % len(cats)]
        finder = finders[i % len(finders)]
        stamp = "2026-12-05T05:22:16.120+08:00" if i % 2 else "2026-12-04T21:22:21.001Z"
        events.append({"category_name": name, "category": cat, "occurred_at": stamp, "kind": "alarm",
                       "device_id": finder, "location": {"street_code": streets[i % len(streets)],
                                                         "grid_code": "370306002002005"}})
        changes.append({"work_order_id": f"WO-{cat}-{i:020x}", "version": 3, "type": "assist_added",
                        "snapshot": {"work_order_id": f"WO-{cat}-{i:020x}", "department": desks[i % len(desks)],
                                     "category_name": name, "finders": [finder], "status": "closed",
                                     "events": [1, 2, 3], "warning_level": "orange", "emergency_level": "II",
                                     "location": {"district_code": districts[i % len(districts)]},
                                     "assists": [{"department": d, "status": "handled"}
                                                 for d in ("fire", "police", "emergency", "health", "water")]}})
    return events, changes


def test_demo_summary_fits_and_shows_one_clock(config):
    events, changes = demo_records(config)
    lines = summary_lines(config, events, changes)
    text = "\n".join(lines)
    assert widest(text) <= MAX_COLUMNS, max(text.split("\n"), key=width)
    assert CLOCK_LABEL in text
    alarms = [line for line in text.split("\n") if line.startswith("    05:22:")]
    assert len(alarms) == 12                       # both stamps on the city's clock
    assert "fire(handled), police(handled)" in text and "…" not in text
    assert not any(line.startswith("    21:22") for line in text.split("\n"))


def test_simulation_summary_and_outcome_table_fit():
    result = {"sent": 12_084_000, "seconds": 59.99, "rate": 201_000.0,
              "by_source": {"iot": 10_583_000, "video": 1_129_000, "report": 371_000, "device": 1},
              "by_label": {"drift": 220, "duplicate": 54, "flap": 117, "normal": 11_518,
                           **{f"scenario:{k}": 12 for k in ("cable_fire", "device_fault", "gas_leak", "gateway",
                                                             "rainstorm")},
                           **{f"malformed:{k}": 8 for k in ("future_timestamp", "invalid_field", "invalid_utf8",
                                                             "missing_field", "not_json", "not_object",
                                                             "out_of_area", "too_large", "unknown_category",
                                                             "unknown_department", "wrong_type")}}}
    assert widest(summary_text(result)) <= MAX_COLUMNS
    metrics = "\n".join(f'citybrain_ingest_outcome_total{{source="{s}",outcome="{o}"}} 123456789'
                        for s in ("device", "iot", "report", "video")
                        for o in ("normal", "event", "suppressed", "deadletter"))
    metrics += "\n" + "\n".join(f'citybrain_ingested_total{{source="{s}"}} 493827156'
                                for s in ("device", "iot", "report", "video"))
    table = outcome_table(metrics)
    assert widest(table) <= MAX_COLUMNS and "✓" in table


def test_timeline_prints_cst_within_100_columns(monkeypatch, capsys):
    import types

    import orjson

    import citybrain.cli.read as read
    created = {"work_order_id": "WO-1", "version": 1, "type": "created", "at": "2026-12-04T21:22:21.5+00:00",
               "actor": {"role": "system", "id": "fuse"}, "snapshot": {"status": "new", "notes": []}}
    dispatched = {**created, "version": 2, "type": "dispatched", "at": "2026-12-05T05:22:25+08:00",
                  "snapshot": {"status": "dispatched", "notes": ["请尽快处置 " * 30]}}

    async def fake_read(_bootstrap, topic, on_record, _title, **_kw):
        if topic.endswith("workorders.events"):
            for c in (created, dispatched):
                on_record(types.SimpleNamespace(key=b"WO-1", value=orjson.dumps(c)))
        return 2
    monkeypatch.setattr(read, "read_topic_to_end", fake_read)
    monkeypatch.setattr(read, "broker_address", lambda: "kafka:9092")
    assert read.cmd_timeline(types.SimpleNamespace(work_order_id="WO-1")) == 0
    out = capsys.readouterr().out
    assert CLOCK_LABEL in out
    assert "2026-12-05 05:22:21" in out and "2026-12-05 05:22:25" in out   # one clock
    assert widest(out.rstrip("\n")) <= MAX_COLUMNS
