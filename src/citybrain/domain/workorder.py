"""Work orders from fused events: open (立案), dispatch (派遣), attach evidence.

Pure: each function takes the current snapshot and returns the changes, each with
the new full snapshot and a version one higher.  The lifecycle commands (签收,
处置, 核查, …) build on the same shape.
"""

from __future__ import annotations

from datetime import datetime

from citybrain.domain.area_warnings import Start
from citybrain.domain.deadlines import SYSTEM, Deadlines
from citybrain.domain.routing import Route
from citybrain.wire.enums import WARNING_RANK
from citybrain.wire.models import CityEvent, EventRef, OrderExternalRef, WorkOrder, WorkOrderChange


def event_ref(event: CityEvent) -> EventRef:
    return EventRef(event_id=event.event_id, source=event.source, kind=event.kind,
                    category=event.category, occurred_at=event.occurred_at,
                    finder=event.device_id or event.camera_id or event.reporter_id,
                    lon=event.location.lon, lat=event.location.lat, level=event.level,
                    report_id=event.report_id, evidence=list(event.evidence))


def external_refs(refs: list[OrderExternalRef], event: CityEvent) -> list[OrderExternalRef]:
    """The order's platform cases with the event's (a report from another platform) added once."""
    ref = event.external_ref
    if ref is None or any(r.system == ref.system and r.id == ref.id for r in refs):
        return refs
    return [*refs, OrderExternalRef(system=ref.system, id=ref.id, report_id=event.report_id)]


def _change(order: WorkOrder, kind: str, now: datetime) -> WorkOrderChange:
    return WorkOrderChange(work_order_id=order.work_order_id, version=order.version, type=kind,
                           at=now, actor=SYSTEM, snapshot=order)


def open_order(work_order_id: str, group: str, event: CityEvent, route: Route,
               now: datetime, deadlines: Deadlines, area: Start | None = None) -> list[WorkOrderChange]:
    """立案, and 派遣 at once when routing found a department.  ``area``: the area warnings
    it starts under (区域预警: their levels and a note; the route's priority already follows)."""
    finder = event.device_id or event.camera_id
    levels = [lv for lv in (event.level, area.level if area else None) if lv]
    order = WorkOrder(
        work_order_id=work_order_id, version=1, status="registered", category=event.category,
        category_name=event.category_name, fusion_group=group, priority=route.priority,
        department=route.department, route_rule=route.rule, location=event.location,
        description=event.description, address=event.address, reporter_contact=event.contact_phone,
        needs_location=event.needs_location, external_refs=external_refs([], event),
        opened_at=event.occurred_at, created_at=now,
        source_ingested_at=event.ingested_at, events=[event_ref(event)],
        evidence=list(event.evidence), finders=[finder] if finder else [],
        warning_level=max(levels, key=WARNING_RANK.__getitem__) if levels else None,
        sensor_levels={event.device_id: event.level} if event.level else {},
        area_warnings=dict(area.levels) if area else {}, notes=[area.note] if area else [],
        **deadlines.on_open(event.category, route.priority, now),
    )
    changes = [_change(order, "created", now)]
    if route.department:
        order = order.model_copy(update={"version": 2, "status": "dispatched", "dispatched_at": now,
                                         **deadlines.enter(order, "dispatched", now)})
        changes.append(_change(order, "dispatched", now).model_copy(update={"role": "lead"}))
    return changes


def attach(order: WorkOrder, event: CityEvent, now: datetime) -> WorkOrderChange:
    """Record another finding of the same incident (or its device's recovery)."""
    finder = event.device_id or event.camera_id
    update = {
        "version": order.version + 1,
        "events": [*order.events, event_ref(event)],
        "evidence": order.evidence + [u for u in event.evidence if u not in order.evidence],
    }
    # The caller's address and contact (masked): each from the first report that gave one.
    if order.address is None and event.address:
        update["address"] = event.address
    if order.reporter_contact is None and event.contact_phone:
        update["reporter_contact"] = event.contact_phone
    refs = external_refs(order.external_refs, event)
    if refs is not order.external_refs:
        update["external_refs"] = refs
    if event.kind == "recovery":
        if finder and finder not in order.recovered_finders:
            update["recovered_finders"] = [*order.recovered_finders, finder]
        update["last_recovery_at"] = max(filter(None, (order.last_recovery_at, event.occurred_at)))
        if finder in order.sensor_levels:   # the level itself falls in escalation.follow
            update["sensor_levels"] = {d: lv for d, lv in order.sensor_levels.items() if d != finder}
        kind = "recovery_recorded"
    else:
        if finder and finder not in order.finders:
            update["finders"] = [*order.finders, finder]
        if finder in order.recovered_finders:  # the alarm came back
            update["recovered_finders"] = [f for f in order.recovered_finders if f != finder]
        if event.level is not None and event.device_id:
            update["sensor_levels"] = {**order.sensor_levels, event.device_id: event.level}
        kind = "evidence_added"
    return _change(order.model_copy(update=update), kind, now)
