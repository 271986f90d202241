"""Reporter follow-up (反馈, DESIGN §13): what each reporter of an order is told when the
order changes.

Every change of an order that a report joined is sent to its reporters — except more
evidence and sensor recoveries, which are told only to the reporter whose report it was
("your report joined order …"): an incident that gathers a hundred reports would
otherwise tell every reporter of every other one.  Pure: a change in, notifications out.
"""

from __future__ import annotations

from citybrain.wire.enums import STATUS_REPORTER_ZH, TYPE_ZH
from citybrain.wire.models import ReporterNotification, WorkOrderChange

# What a reporter is told of each status: wire/enums.py, with every other label.
STATUS_ZH = STATUS_REPORTER_ZH
QUIET = ("evidence_added", "recovery_recorded")
# Changes no reporter is told of: the priority is the city's own business; a merged or split
# order's reporters hear of it from the order their report went to (merge_absorbed, created).
SILENT = ("reprioritised", "merged", "split")


def notifications(change: WorkOrderChange) -> list[ReporterNotification]:
    snap = change.snapshot
    if change.type in SILENT:
        return []
    moved = set(change.merge.events) if change.type == "merge_absorbed" and change.merge is not None else None
    reports = [(e.finder, e.report_id) for e in snap.events
               if e.source == "report" and e.report_id and e.finder and (moved is None or e.event_id in moved)]
    if change.type in QUIET:
        newest = snap.events[-1] if snap.events else None
        reports = [(newest.finder, newest.report_id)] if (
            newest is not None and newest.source == "report" and newest.report_id and newest.finder) else []
    out = []
    for reporter, report_id in dict.fromkeys(reports):
        out.append(ReporterNotification(
            reporter_id=reporter, report_id=report_id, work_order_id=snap.work_order_id,
            version=change.version, change=change.type, status=snap.status,
            message=message(change, report_id), at=change.at))
    return out


def message(change: WorkOrderChange, report_id: str) -> str:
    snap = change.snapshot
    what = TYPE_ZH.get(change.type, change.type)
    joined = change.type in QUIET or change.type == "merge_absorbed"   # the report joined this order
    if joined or (change.type == "created" and snap.events and snap.events[0].report_id == report_id
                  and len(snap.events) == 1):
        lead = "已受理" if change.type == "created" else "已并入工单"
    else:
        lead = what
    return (f"您反映的{snap.category_name}问题（上报编号 {report_id}）{lead}：{STATUS_ZH.get(snap.status, snap.status)}。"
            f"工单号 {snap.work_order_id}。")
