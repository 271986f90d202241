"""``citybrain warnings``: what the relayers of the bureaus' warnings type is checked before
anything is sent — each refusal names its option in 中文 and English (exit 2, no broker
asked) — and what is sent is a record the workers take; the list reads in 中文 with codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from citybrain.cli import main
from citybrain.cli.warnings import (
    Draft,
    OptionError,
    build_record,
    check_record,
    option_for,
    parse_time,
    warnings_table,
)
from citybrain.display import CITY_TZ, MAX_COLUMNS, width
from citybrain.domain.area_warnings import AreaShapes, read_warning_record

NOW = datetime(2026, 7, 12, 6, 0, tzinfo=UTC)            # 14:00 CST
ZHOUCUN = "370306"
# ~1 km square in 周村区, and one far out at sea.
INSIDE = [[117.90, 36.77], [117.91, 36.77], [117.91, 36.78], [117.90, 36.78], [117.90, 36.77]]
AT_SEA = [[123.0, 30.0], [123.1, 30.0], [123.1, 30.1], [123.0, 30.1], [123.0, 30.0]]
BASE = ["warnings", "publish", "--id", "SD-ZB-2026-RS-001", "--issuer", "淄博市气象台", "--kind", "rainstorm",
        "--level", "red", "--district", ZHOUCUN, "--from", "now", "--to", "+6h"]


@pytest.fixture(scope="module")
def shapes(config):
    return AreaShapes(config.city_map)


def draft(**over) -> Draft:
    fields = dict(warning_id="W-1", issuer="淄博市气象台", kind="rainstorm", level="yellow", districts=[ZHOUCUN],
                  streets=[], polygon=None, valid_from="now", valid_to="+1h")
    return Draft(**{**fields, **over})


def refused(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def with_option(argv: list[str], option: str, value: str | None) -> list[str]:
    """BASE with ``option`` set to ``value`` (None: left out)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == option:
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out if value is None else [*out, option, value]


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--level", "purple", ["--level", "等级无效", "unknown level 'purple'", "red 红色"]),
    ("--kind", "meteor", ["--kind", "种类无效", "unknown kind 'meteor'", "rainstorm 暴雨"]),
    ("--district", "3703", ["--district", "代码无效", "not a 6-digit code"]),
    ("--district", "370399", ["--district", "不在本市", "out_of_area", "370399 is not in the city"]),
    ("--street", "370306999", ["--street", "不在本市", "street 370306999 is not in the city"]),
    ("--to", "yesterday", ["--to", "时间无效", "not a time: 'yesterday'"]),
    ("--to", "2020-01-01T00:00", ["--to", "截止已过", "has passed"]),
    ("--from", "+7h", ["--to", "截止须晚于生效", "must end after it starts"]),
    ("--id", "   ", ["--id", "编号为空"]),
])
def test_publish_refuses_naming_the_option(option, value, says, capsys):
    argv = with_option(BASE, option, value)
    if option == "--street":
        argv = with_option(argv, "--district", None) + ["--street", value]
    err = refused(argv, capsys)
    assert err.startswith("预警未发布 warning not published — ")
    for s in says:
        assert s in err, (s, err)


def test_publish_without_an_area_or_with_a_bad_polygon_is_refused(tmp_path, capsys):
    no_area = with_option(BASE, "--district", None)
    assert "--district/--street/--polygon: 缺少区域" in refused(no_area, capsys)
    assert "--polygon: 文件无法读取" in refused([*no_area, "--polygon", str(tmp_path / "none.geojson")], capsys)
    (tmp_path / "point.geojson").write_text(json.dumps({"type": "Point", "coordinates": [117.9, 36.7]}))
    assert "--polygon: 不是多边形" in refused([*no_area, "--polygon", str(tmp_path / "point.geojson")], capsys)
    (tmp_path / "sea.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [AT_SEA]}))
    err = refused([*no_area, "--polygon", str(tmp_path / "sea.geojson")], capsys)
    assert "--polygon: 不在本市" in err and "outside the city" in err
    (tmp_path / "bow.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[117.90, 36.77], [117.91, 36.78], [117.91, 36.77], [117.90, 36.78], [117.90, 36.77]]]}))
    assert "--polygon: 无效" in refused([*no_area, "--polygon", str(tmp_path / "bow.geojson")], capsys)


def test_a_record_built_from_the_options_is_one_the_workers_take(shapes, tmp_path):
    (tmp_path / "area.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [INSIDE]}}]}))
    record = build_record(draft(kind="暴雨", level="红", districts=["370306,370302", ZHOUCUN],
                                streets=["370306001"], polygon=str(tmp_path / "area.geojson"),
                                valid_from="2026-07-12T15:00", valid_to="+3h"), NOW)
    assert record["kind"] == "rainstorm" and record["level"] == "red"
    assert record["area"]["district_codes"] == [ZHOUCUN, "370302"]       # comma-separated, once each
    assert record["area"]["street_codes"] == ["370306001"]
    assert record["valid_from"] == "2026-07-12T07:00:00Z"                 # no offset: city time (CST)
    assert record["valid_to"] == "2026-07-12T09:00:00Z"
    assert record["title"] == "暴雨红色预警信号"
    held = check_record(record, shapes, 65536)
    entry = read_warning_record(b"W-1", orjson.dumps(record), 65536, shapes)
    assert entry.warning is not None and entry.warning.record == held.record
    assert held.holds(NOW + timedelta(hours=2)) and not held.holds(NOW)


def test_times_and_the_options_of_fields():
    assert parse_time("now", NOW, "--from") == NOW
    assert parse_time("+90m", NOW, "--to") == NOW + timedelta(minutes=90)
    assert parse_time("+1.5d", NOW, "--to") == NOW + timedelta(hours=36)
    assert parse_time("2026-07-12T20:00+08:00", NOW, "--to") == datetime(2026, 7, 12, 20, tzinfo=CITY_TZ)
    with pytest.raises(OptionError, match=r"^--from: 时间无效"):
        parse_time("+2w", NOW, "--from")
    assert option_for("area.district_codes.2") == "--district"
    assert option_for("area.polygon") == "--polygon"
    assert option_for("area") == "--district/--street/--polygon"
    assert option_for("valid_to") == "--to" and option_for("key") == "--id" and option_for(None) == "--id"


def test_the_list_shows_holding_before_upcoming_with_codes_in_the_width(config, shapes):
    later = check_record(build_record(draft(warning_id="W-LATER", level="orange", valid_from="+2h",
                                            valid_to="+5h"), NOW), shapes, 65536)
    now = check_record(build_record(draft(warning_id="W-NOW", kind="flood", level="blue",
                                          districts=[ZHOUCUN, "370302"]), NOW), shapes, 65536)
    text = warnings_table([later, now], config, NOW)
    lines = text.splitlines()
    assert "状态 status" in lines[0] and "编号 id" in lines[0]
    assert "生效中 holding" in lines[1] and "蓝色 blue" in lines[1] and "洪水 flood" in lines[1] and "W-NOW" in lines[1]
    assert "周村区 370306" in lines[2] and "淄川区 370302" in lines[2] and "淄博市气象台" in lines[2]
    assert "待生效 upcoming" in lines[3] and "橙色 orange" in lines[3] and "07-12 16:00 → 07-12 19:00" in lines[3]
    assert all(width(line) <= MAX_COLUMNS for line in lines)
