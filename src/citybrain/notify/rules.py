"""通知规则 What reaches whom (pure: no I/O, unit-tested).

- ``dispatch.<desk>``: a change in ``dispatch_changes`` (``dispatched``, ``assist_added``)
  → the desk's people on duty (narrowed by their grid prefix);
- ``command.emergency``: every change → the emergency roster on duty;
- ``dispatch.supervision.<level>``: → that level's supervisors on duty (all of them when
  none is on duty: a supervision must reach someone);
- ``notifications.reporters``: → the reporter's own contact if the roster knows it (else
  skipped, counted ``no_contact``);
- escalation: an urgent dispatch nobody acknowledged → the next person of the desk's roster,
  then the supervisors of the final level.

Each notice is one (order, version, person, channel); its delivery id is a hash of those four.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from citybrain.domain.pseudonym import DEVELOPMENT
from citybrain.notify.roster import Channel, Person, Roster
from citybrain.notify.settings import NotifySettings
from citybrain.wire import enums

Kind = Literal["dispatch", "emergency", "supervision", "reporter", "escalation"]
CST = ZoneInfo("Asia/Shanghai")
PRIORITY_ZH = enums.PRIORITY_ZH   # the labels of every enumeration: wire/enums.py
LEVEL_ZH = enums.SUPERVISION_ZH
CLOCK_ZH = {"order": "结案", "accept": "签收", "handle": "处置"}
CHANGE_ZH = {"created": "立案", "dispatched": "派遣", "accepted": "签收", "handled": "处置完成",
             "closed": "结案", "verified": "核查通过", "escalated": "升级", "deescalated": "降级",
             "cancelled": "作废", "assist_added": "增派协办", "supervised": "督办", "commented": "批注",
             "evidence_added": "新增线索", "returned": "退回", "extended": "延期"}


def delivery_id(work_order_id: str, version: int, person_id: str, channel: str) -> str:
    """The delivery's id: the same (order, version, person, channel) always has the same id."""
    raw = f"{work_order_id}\x1f{version}\x1f{person_id}\x1f{channel}".encode()
    return "D-" + hashlib.sha256(raw).hexdigest()[:24]


def cst(ts: str | datetime | None) -> str:
    if ts is None or ts == "":
        return "—"
    at = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    return at.astimezone(CST).strftime("%Y-%m-%d %H:%M") + "（北京时间）"


@dataclass(frozen=True)
class Notice:
    kind: Kind
    work_order_id: str
    version: int
    person: Person
    channel: Channel
    desk: str
    urgent: bool = False
    step: int = 0            # escalation step: 0 the first notice, 1… each escalation
    final: bool = False      # the last step of its escalation (nothing follows)
    summary: dict[str, Any] = field(default_factory=dict)   # what the text says

    @property
    def delivery_id(self) -> str:
        return delivery_id(self.work_order_id, self.version, self.person.id, self.channel)

    def subject(self) -> str:
        s = self.summary
        head = {"dispatch": "新派单", "emergency": "应急指挥", "supervision": "督办",
                "reporter": "办理进度", "escalation": "升级提醒"}[self.kind]
        return f"【城市大脑·{head}】{s.get('category_name', '')} {self.work_order_id}"

    def text(self) -> str:
        """The message, 中文: order id, category, place, due time (CST), and the receipt number."""
        s = self.summary
        order = (f"工单 {self.work_order_id}，类别：{s.get('category_name', '')}"
                 f"（{PRIORITY_ZH.get(s.get('priority', ''), s.get('priority', ''))}），"
                 f"地点：{s.get('place', '')}，结案时限：{cst(s.get('due_at'))}")
        if self.kind == "dispatch":
            body = f"{s.get('desk_name', self.desk)}新派单：{order}。请及时签收。"
        elif self.kind == "emergency":
            body = (f"应急响应{s.get('emergency_level') or ''}级 · {CHANGE_ZH.get(s.get('change', ''), s.get('change'))}"
                    f"：{order}。")
        elif self.kind == "supervision":
            body = (f"{LEVEL_ZH.get(s.get('level', ''), '')}督办：{order}；"
                    f"{CLOCK_ZH.get(s.get('clock', ''), '')}时限 {cst(s.get('clock_due_at'))}。")
        elif self.kind == "escalation":
            body = f"特急工单超时未确认，升级至您（第{self.step}级）：{order}。请立即处理。"
        else:
            body = f"您反映的问题（{self.work_order_id}）：{s.get('message', '')}"
        if self.kind == "reporter":
            return f"【城市大脑】{body}"
        return f"【城市大脑】{body}回执号 {self.delivery_id}"


@dataclass
class Outcome:
    """What one record gives: the notices, and the skips counted by reason."""

    notices: list[Notice] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


Place = Callable[[dict], str]


def default_place(snapshot: dict) -> str:
    loc = snapshot.get("location") or {}
    return snapshot.get("address") or f"街道 {loc.get('street_code', '?')} 网格 {loc.get('grid_code', '?')}"


def summary_of(snapshot: dict, place: Place, desk_names: dict[str, str], desk: str) -> dict[str, Any]:
    return {"category_name": snapshot.get("category_name", snapshot.get("category", "")),
            "priority": snapshot.get("priority", ""), "place": place(snapshot),
            "due_at": snapshot.get("due_at"), "desk_name": desk_names.get(desk, desk),
            "emergency_level": snapshot.get("emergency_level"),
            "grid_code": (snapshot.get("location") or {}).get("grid_code")}


class Rules:
    def __init__(self, settings: NotifySettings, place: Place = default_place,
                 desk_names: dict[str, str] | None = None, pseudonym: Callable[[str], str] = DEVELOPMENT):
        self.settings, self.place, self.desk_names = settings, place, desk_names or {}
        # notifications.reporters names reporters by pseudonym: the roster's clear ids are
        # hashed with the same key to find their contacts (domain/pseudonym.py)
        self.pseudonym = pseudonym

    def urgent(self, snapshot: dict) -> bool:
        return (snapshot.get("priority") in self.settings.escalation.priorities
                or snapshot.get("emergency_level") is not None)

    def _each_channel(self, out: Outcome, local: datetime, people: list[Person], **kw: Any) -> None:
        loud_ok = kw.get("urgent") or kw.get("kind") == "emergency"
        for person in people:
            channels = [c for c in person.reachable_by() if c in self.settings.channels]
            if "sms" in channels and not loud_ok and person.quiet_at(local):
                channels.remove("sms")
                out.skip("quiet_hours")
                if not channels:
                    continue
            if not channels:
                out.skip("no_channel")
            for ch in channels:
                out.notices.append(Notice(person=person, channel=ch, **kw))

    def for_record(self, kind: Literal["dispatch", "emergency", "supervision", "reporter"], desk: str,
                   record: dict, roster: Roster, now: datetime) -> Outcome:
        """``desk``: the dispatch topic's desk (``water``, ``street.<code>``), the supervision
        level, or '' for emergency and reporter records."""
        out, local = Outcome(), now.astimezone(roster.zone)
        if kind == "reporter":
            person = roster.reporter(str(record.get("reporter_id", "")), self.pseudonym)
            if person is None:
                out.skip("no_contact")
                return out
            summary = {"message": record.get("message", ""), "change": record.get("change")}
            self._each_channel(out, local, [person], kind="reporter", work_order_id=record["work_order_id"],
                               version=int(record["version"]), desk="reporter", summary=summary)
            return out
        snapshot = record.get("snapshot") or {}
        order, version = record["work_order_id"], int(record["version"])
        grid = (snapshot.get("location") or {}).get("grid_code")
        if kind == "dispatch":
            if record.get("type") not in self.settings.dispatch_changes:
                out.skip("not_a_dispatch")
                return out
            people = roster.on_duty(desk, now, grid)
            if not people:
                out.skip("no_one_on_duty")
                return out
            urgent = self.urgent(snapshot) and self.settings.escalation.enabled
            self._each_channel(out, local, people, kind="dispatch", work_order_id=order, version=version, desk=desk,
                               urgent=urgent, summary=summary_of(snapshot, self.place, self.desk_names, desk))
        elif kind == "emergency":
            people = roster.on_duty("emergency", now, grid)
            if not people:
                out.skip("no_one_on_duty")
                return out
            summary = summary_of(snapshot, self.place, self.desk_names, "emergency") | {"change": record.get("type")}
            self._each_channel(out, local, people, kind="emergency", work_order_id=order, version=version,
                               desk="emergency", summary=summary)
        else:
            level = desk
            people = (roster.on_duty(f"supervision.{level}", now, grid)
                      or roster.everyone_at(f"supervision.{level}", grid))
            if not people:
                out.skip("no_supervisor")
                return out
            sup = record.get("supervision") or {}
            summary = summary_of(snapshot, self.place, self.desk_names, f"supervision.{level}") | {
                "level": level, "clock": sup.get("clock"), "clock_due_at": sup.get("due_at")}
            self._each_channel(out, local, people, kind="supervision", work_order_id=order, version=version,
                               desk=f"supervision.{level}", summary=summary)
        return out

    def escalate(self, desk: str, work_order_id: str, version: int, step: int, notified: set[str],
                 summary: dict[str, Any], roster: Roster, now: datetime) -> Outcome:
        """The next step of an unacknowledged urgent dispatch at ``desk``: the first person with a
        duty at the desk not yet told of this version (on duty first), else the final level's
        supervisors (the last step)."""
        out, local = Outcome(), now.astimezone(roster.zone)
        grid = summary.get("grid_code")
        on_duty = roster.on_duty(desk, now, grid)
        rest = roster.everyone_at(desk, grid)
        candidates = [p for p in [*on_duty, *rest] if p.id not in notified]
        if candidates:
            self._each_channel(out, local, [candidates[0]], kind="escalation", work_order_id=work_order_id,
                               version=version, desk=desk, urgent=True, step=step, summary=summary)
            return out
        level = self.settings.escalation.final_level
        sup = [p for p in (roster.on_duty(f"supervision.{level}", now, grid)
                           or roster.everyone_at(f"supervision.{level}", grid)) if p.id not in notified]
        if not sup:
            out.skip("escalation_exhausted")
            return out
        self._each_channel(out, local, sup, kind="escalation", work_order_id=work_order_id, version=version,
                           desk=desk, urgent=True, step=step, final=True, summary=summary)
        return out
