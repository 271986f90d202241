"""The demo's area warning, without a broker: the command it runs a minute in is one the
CLI takes (a yellow rainstorm warning for the underpass's district, one hour), and its
summary counts the orders each warning raised."""

from __future__ import annotations

from datetime import datetime, timedelta

from citybrain.cli import main
from citybrain.display import MAX_COLUMNS, width
from citybrain_tools.simulate import demo


def test_the_demo_publishes_a_yellow_rainstorm_warning_the_cli_takes(monkeypatch, capsys):
    ran: list[list[str]] = []

    class Done:
        returncode, stderr = 0, ""

    def fake_run(argv, **kw):
        ran.append(argv)
        return Done()
    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    demo.publish_warning(["python", "-m", "citybrain"], {})
    assert "⑤ 区域预警" in capsys.readouterr().out
    (argv,) = ran
    assert argv[:5] == ["python", "-m", "citybrain", "warnings", "publish"]

    sent: list[dict] = []

    async def fake_send(bootstrap, topic, record):
        sent.append(record)
    monkeypatch.setattr("citybrain.cli.warnings._send", fake_send)
    monkeypatch.setattr("citybrain.cli.warnings.broker_address", lambda: "127.0.0.1:1")
    assert main(argv[3:]) == 0, capsys.readouterr().err
    (record,) = sent
    assert (record["kind"], record["level"], record["area"]) == ("rainstorm", "yellow", {"district_codes": ["370306"]})
    span = datetime.fromisoformat(record["valid_to"]) - datetime.fromisoformat(record["valid_from"])
    assert span == timedelta(hours=1)


def test_the_summary_counts_the_orders_each_warning_raised(config):
    def order(n: int, warnings: dict) -> dict:
        return {"work_order_id": f"WO-{n}", "version": 1, "type": "registered",
                "snapshot": {"work_order_id": f"WO-{n}", "department": "water", "category_name": "路面积水",
                             "finders": [], "status": "registered", "events": [1], "warning_level": "yellow",
                             "location": {"district_code": "370306"}, "area_warnings": warnings}}
    changes = [order(1, {"DEMO-RS-1": "yellow"}), order(2, {"DEMO-RS-1": "yellow"}), order(3, {})]
    lines = demo.summary_lines(config, [], changes)
    assert "  区域预警 area warnings — orders raised by each: DEMO-RS-1 ×2" in lines
    assert all(width(line) <= MAX_COLUMNS for line in lines)
