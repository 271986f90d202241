"""区域预警 for the people who relay the weather and water bureaus' warnings (DESIGN §15,
docs/lifecycle.md "Area warnings"): ``publish`` one on ``ingest.warnings``, ``list`` those
holding and upcoming, ``end`` one now.

A record is checked here as the workers will check it (domain/area_warnings.py
``read_warning_record``: the wire model, the key, the city's districts and streets, the
polygon) before anything is sent — a refused record would also withdraw the warning
already under its id.  Every refusal names the option at fault, in 中文 and English.
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from citybrain.cli.common import broker_address, load_config
from citybrain.display import CITY_TZ, CLOCK_LABEL, MAX_COLUMNS, city_time, pad, width, wrap_items
from citybrain.wire.enums import WARNING_KIND_ZH, WARNING_RANK, WARNING_ZH

# The record's fields as the options that set them (the longest prefix wins).
OPTION_OF = {"key": "--id", "warning_id": "--id", "issuer": "--issuer", "kind": "--kind", "level": "--level",
             "area.district_codes": "--district", "area.street_codes": "--street", "area.polygon": "--polygon",
             "area": "--district/--street/--polygon", "valid_from": "--from", "valid_to": "--to", "title": "--title"}
REASON_ZH = {"missing_field": "缺少", "invalid_field": "无效", "out_of_area": "不在本市", "too_large": "过大",
             "wrong_key": "编号不符"}


class OptionError(ValueError):
    """A refusal naming its option: ``--level: 等级无效 …``."""

    def __init__(self, option: str, zh: str, en: str):
        super().__init__(f"{option}: {zh} {en}")
        self.option = option


def option_for(field: str | None) -> str:
    if not field:
        return "--id"
    for prefix in sorted(OPTION_OF, key=len, reverse=True):
        if field == prefix or field.startswith(prefix + "."):
            return OPTION_OF[prefix]
    return "--" + field.split(".")[0]


def _code(text: str, labels: dict[str, str], option: str, what_zh: str, what: str) -> str:
    """A kind or level given as its code or its 中文 (暴雨, 红色 or 红)."""
    t = text.strip()
    for code, zh in labels.items():
        if t.lower() == code or t in (zh, zh.removesuffix("色")):
            return code
    choices = ", ".join(f"{code} {zh}" for code, zh in labels.items())
    raise OptionError(option, f"{what_zh}无效", f"unknown {what} {text!r}; one of: {choices}")


_RELATIVE = re.compile(r"^\+(\d+(?:\.\d+)?)([mhd])$")


def parse_time(text: str, now: datetime, option: str) -> datetime:
    """``now``, ``+90m``/``+2h``/``+1d`` from now, or ISO 8601 (without an offset: the city's
    clock, CST)."""
    t = text.strip()
    if t == "now":
        return now
    rel = _RELATIVE.match(t)
    if rel:
        n, unit = float(rel.group(1)), rel.group(2)
        return now + timedelta(minutes=n * {"m": 1, "h": 60, "d": 1440}[unit])
    try:
        at = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise OptionError(option, "时间无效", f"not a time: {text!r} (ISO 8601 such as 2026-07-12T14:00, read as "
                                          "city time CST without an offset; now; +90m, +2h, +1d)") from None
    return at.replace(tzinfo=CITY_TZ) if at.tzinfo is None else at


def _codes(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated codes, in order, once each."""
    out: list[str] = []
    for v in values or ():
        for code in v.split(","):
            if code.strip() and code.strip() not in out:
                out.append(code.strip())
    return out


def load_polygon(path: str) -> dict[str, Any]:
    """A GeoJSON file's polygon: a Polygon/MultiPolygon geometry, or a Feature or a
    one-feature FeatureCollection holding one."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as e:
        raise OptionError("--polygon", "文件无法读取", f"cannot read {path}: {e.strerror or e}") from None
    except orjson.JSONDecodeError as e:
        raise OptionError("--polygon", "不是 JSON", f"{path} is not JSON: {e}") from None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features") or []
        if len(features) != 1:
            raise OptionError("--polygon", "须只含一个要素", f"{path}: a FeatureCollection of exactly one "
                                                        f"feature, not {len(features)}")
        doc = features[0]
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = doc.get("geometry")
    if not isinstance(doc, dict) or doc.get("type") not in ("Polygon", "MultiPolygon"):
        raise OptionError("--polygon", "不是多边形", f"{path}: a GeoJSON Polygon or MultiPolygon (lon, lat in WGS84)")
    return {"type": doc["type"], "coordinates": doc.get("coordinates")}


@dataclass(frozen=True)
class Draft:
    """What the options say, before the record is made."""

    warning_id: str
    issuer: str
    kind: str
    level: str
    districts: list[str]
    streets: list[str]
    polygon: str | None
    valid_from: str
    valid_to: str
    title: str | None = None


def _utc_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_record(d: Draft, now: datetime) -> dict[str, Any]:
    """The ``ingest.warnings`` record the options make; ``OptionError`` for the first fault
    the options themselves show (what the city knows is checked by ``check_record``)."""
    if not d.warning_id.strip():
        raise OptionError("--id", "编号为空", "the warning id is empty")
    if not d.issuer.strip():
        raise OptionError("--issuer", "发布单位为空", "the issuer is empty")
    kind = _code(d.kind, WARNING_KIND_ZH, "--kind", "种类", "kind")
    level = _code(d.level, WARNING_ZH, "--level", "等级", "level")
    districts, streets = _codes(d.districts), _codes(d.streets)
    for option, codes, digits in (("--district", districts, 6), ("--street", streets, 9)):
        for code in codes:
            if not re.fullmatch(rf"\d{{{digits}}}", code):
                raise OptionError(option, "代码无效", f"{code!r} is not a {digits}-digit code")
    polygon = load_polygon(d.polygon) if d.polygon else None
    if not (districts or streets or polygon):
        raise OptionError("--district/--street/--polygon", "缺少区域",
                          "name the area: --district (6 digits), --street (9 digits) or --polygon FILE")
    start, end = parse_time(d.valid_from, now, "--from"), parse_time(d.valid_to, now, "--to")
    if end <= now:
        raise OptionError("--to", "截止已过", f"{city_time(end, '%Y-%m-%d %H:%M')} CST has passed: the warning "
                                             "would never hold")
    if end <= start:
        raise OptionError("--to", "截止须晚于生效", f"the warning must end after it starts "
                                                f"({city_time(end, '%Y-%m-%d %H:%M')} ≤ {city_time(start, '%Y-%m-%d %H:%M')} CST)")
    area: dict[str, Any] = {}
    if districts:
        area["district_codes"] = districts
    if streets:
        area["street_codes"] = streets
    if polygon:
        area["polygon"] = polygon
    title = d.title if d.title is not None else f"{WARNING_KIND_ZH[kind]}{WARNING_ZH[level]}预警信号"
    return {"warning_id": d.warning_id.strip(), "issuer": d.issuer.strip(), "kind": kind, "level": level,
            "area": area, "valid_from": _utc_text(start), "valid_to": _utc_text(end), "ts": _utc_text(now),
            "title": title}


def check_record(record: dict[str, Any], shapes: Any, max_bytes: int) -> Any:
    """The workers' verdict on ``record`` (a HeldWarning), or ``OptionError`` for the
    option at fault — the wire model, the city's districts and streets, the polygon."""
    from citybrain.domain.area_warnings import read_warning_record
    entry = read_warning_record(str(record["warning_id"]).encode(), orjson.dumps(record), max_bytes, shapes)
    if entry.dead:
        raise OptionError(option_for(entry.field), REASON_ZH.get(entry.reason or "", "无效"),
                          f"{entry.reason}: {entry.detail}")
    return entry.warning


# -- the topic ------------------------------------------------------------------------------


async def _send(bootstrap: str, topic: str, record: dict[str, Any]) -> None:
    from citybrain.kafka.clients import kafka_producer
    producer = kafka_producer(bootstrap_servers=bootstrap, client_id="citybrain-warnings-cli")
    await producer.start()
    try:
        await producer.send_and_wait(topic, orjson.dumps(record), key=str(record["warning_id"]).encode())
    finally:
        await producer.stop()


def read_latest(bootstrap: str, topic: str) -> dict[str, dict[str, Any] | None] | None:
    """The latest record under each key of ``ingest.warnings`` (None: a tombstone or not a
    JSON object); None when the topic does not exist."""
    from citybrain.kafka.reading import read_topic_to_end
    latest: dict[str, dict[str, Any] | None] = {}

    def take(m) -> None:
        if m.key is None:
            return
        try:
            doc = orjson.loads(m.value) if m.value is not None else None
        except orjson.JSONDecodeError:
            doc = None
        latest[m.key.decode("utf-8", "replace")] = doc if isinstance(doc, dict) else None
    n = asyncio.run(read_topic_to_end(bootstrap, topic, take, "读取区域预警 reading ingest.warnings"))
    return None if n < 0 else latest


def _context():
    from citybrain.domain.area_warnings import AreaShapes
    from citybrain.kafka.topics import Topics
    cfg = load_config()
    return cfg, Topics(cfg.settings.kafka.topic_prefix).warnings, AreaShapes(cfg.city_map)


def _refused(e: OptionError) -> int:
    print(f"预警未发布 warning not published — {e}", file=sys.stderr)
    return 2


def cmd_warnings_publish(args) -> int:
    cfg, topic, shapes = _context()
    now = datetime.now(UTC)
    draft = Draft(args.id, args.issuer, args.kind, args.level, args.district or [], args.street or [],
                  args.polygon, args.valid_from, args.valid_to, args.title)
    try:
        record = build_record(draft, now)
        held = check_record(record, shapes, cfg.settings.ingest.max_record_bytes)
    except OptionError as e:
        return _refused(e)
    asyncio.run(_send(broker_address(), topic, record))
    print(f"区域预警已发布 published {held.label()} → {topic}")
    print(f"  {describe(held, cfg)}")
    return 0


def cmd_warnings_end(args) -> int:
    cfg, topic, shapes = _context()
    bootstrap = broker_address()
    latest = read_latest(bootstrap, topic)
    if latest is None:
        return 1
    record = latest.get(args.id)
    if record is None:
        print(f"无此预警 no warning {args.id!r} on {topic} (see `citybrain warnings list --all`)", file=sys.stderr)
        return 1
    # Whole seconds, as the record keeps them: a warning begun this very second has not held
    # (it is withdrawn below); amended to end "now" it would end at its own start, refused.
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        held = check_record(record, shapes, cfg.settings.ingest.max_record_bytes)
    except OptionError as e:   # its latest record is unusable: the workers hold nothing under it
        print(f"预警 {args.id} 的最新记录不可用 its latest record is refused by the workers ({e}); "
              "nothing held to end", file=sys.stderr)
        return 1
    r = held.record
    if r.cancelled or r.valid_to <= now:
        print(f"预警已结束 {held.label()} has ended already ({state_of(held, now)[1]}); nothing sent", file=sys.stderr)
        return 1
    # Holding: it ends now (valid_to moved earlier); not yet begun: withdrawn.
    amended = dict(record, ts=_utc_text(now))
    if r.valid_from < now:
        amended["valid_to"] = _utc_text(now)
        said = f"截止改为现在 valid_to amended to now ({city_time(now, '%Y-%m-%d %H:%M:%S')} CST)"
    else:
        amended["cancelled"] = True
        said = "尚未生效，已撤销 not begun: cancelled"
    try:
        check_record(amended, shapes, cfg.settings.ingest.max_record_bytes)
    except OptionError as e:
        print(f"预警未结束 not ended — {e}", file=sys.stderr)
        return 1
    asyncio.run(_send(bootstrap, topic, amended))
    print(f"区域预警已结束 ended {held.label()}: {said} → {topic}")
    return 0


# -- the list ------------------------------------------------------------------------------

STATE_ZH = {"holding": "生效中", "upcoming": "待生效", "ended": "已结束", "cancelled": "已撤销"}


def state_of(held: Any, now: datetime) -> tuple[str, str]:
    r = held.record
    code = ("cancelled" if r.cancelled else "holding" if r.valid_from <= now < r.valid_to
            else "upcoming" if now < r.valid_from else "ended")
    return code, f"{STATE_ZH[code]} {code}"


def area_text(held: Any, cfg: Any) -> str:
    area = held.record.area
    districts, streets = cfg.city_map.district_names, cfg.city_map.street_names
    parts = [f"{districts.get(c, '')} {c}".strip() for c in area.district_codes]
    parts += [f"{streets.get(c, '')} {c}".strip() for c in area.street_codes]
    if area.polygon is not None:
        parts.append("多边形 polygon")
    return "、".join(parts)


def describe(held: Any, cfg: Any) -> str:
    r = held.record
    return (f"{r.issuer} · 区域 area {area_text(held, cfg)} · {city_time(r.valid_from, '%m-%d %H:%M')} → "
            f"{city_time(r.valid_to, '%m-%d %H:%M')} {CLOCK_LABEL}")


def warnings_table(warnings: list[Any], cfg: Any, now: datetime) -> str:
    """Holding first, then upcoming (ended ones last when asked for), the highest level
    first: a row of codes, then the issuer and the area under it."""
    order = {"holding": 0, "upcoming": 1, "ended": 2, "cancelled": 3}
    rows = sorted(warnings, key=lambda w: (order[state_of(w, now)[0]], -WARNING_RANK[w.level], w.record.valid_from,
                                           w.warning_id))
    head = ["状态 status", "等级 level", "种类 kind", "编号 id", f"生效 from → 截止 to ({CLOCK_LABEL})"]
    body = []
    for w in rows:
        r = w.record
        body.append([state_of(w, now)[1], f"{WARNING_ZH[r.level]} {r.level}", f"{WARNING_KIND_ZH[r.kind]} {r.kind}",
                     r.warning_id, f"{city_time(r.valid_from, '%m-%d %H:%M')} → {city_time(r.valid_to, '%m-%d %H:%M')}"])
    widths = [max(width(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["  " + "  ".join(pad(c, w) for c, w in zip(head, widths, strict=True)).rstrip()]
    for w, row in zip(rows, body, strict=True):
        lines.append("  " + "  ".join(pad(c, n) for c, n in zip(row, widths, strict=True)).rstrip())
        lines.append(wrap_items("      ", [f"发布 issuer {w.record.issuer}", f"区域 area {area_text(w, cfg)}"],
                                sep=" · ", columns=MAX_COLUMNS, indent=8))
    return "\n".join(lines)


def cmd_warnings_list(args) -> int:
    cfg, topic, shapes = _context()
    latest = read_latest(broker_address(), topic)
    if latest is None:
        return 1
    from citybrain.domain.area_warnings import read_warning_record
    now = datetime.now(UTC)
    held = []
    for key, doc in latest.items():
        if doc is None:
            continue
        entry = read_warning_record(key.encode(), orjson.dumps(doc), cfg.settings.ingest.max_record_bytes, shapes)
        if entry.warning is not None:
            held.append(entry.warning)
    states = [state_of(w, now)[0] for w in held]
    shown = held if args.all else [w for w, s in zip(held, states, strict=True) if s in ("holding", "upcoming")]
    print(f"区域预警 area warnings on {topic} — 生效中 holding {states.count('holding')} · "
          f"待生效 upcoming {states.count('upcoming')}" + (f" · 已结束/撤销 ended/cancelled "
                                                       f"{states.count('ended') + states.count('cancelled')}"
                                                       if args.all else ""))
    print(warnings_table(shown, cfg, now) if shown else "  (无 none)")
    return 0
