"""Every enumeration of the contract, spelled once, with its 中文 labels.

The spellings are read from the wire models' ``Literal`` types (``typing.get_args``), so a
value added to a model is a value here; the labels are the only other copy, and
tests/unit/wire/test_enums.py holds every label table to its Literal (no value without a
label, no label without a value).  The console gets all of it from ``GET /api/v1/meta``
(``enums``: ``for_console()``) instead of spelling the lists again in JavaScript.

Order is meaningful: statuses in lifecycle order, priorities, warning, emergency and
supervision levels lowest first (their ranks are their positions).
"""

from __future__ import annotations

from typing import Any, get_args

from citybrain.wire import models

# -- spellings (from the wire models) ----------------------------------------------------

STATUSES: tuple[str, ...] = models.WORK_ORDER_STATUSES
OPEN_STATUSES: tuple[str, ...] = models.OPEN_STATUSES        # 未结案: the lifecycle still runs
CLOSED_STATUSES: tuple[str, ...] = models.CLOSED_STATUSES    # 终态: closed, cancelled, merged
PRIORITIES: tuple[str, ...] = get_args(models.Severity)      # low < normal < high < urgent
WARNING_LEVELS: tuple[str, ...] = get_args(models.WarningLevel)        # blue < … < red
EMERGENCY_LEVELS: tuple[str, ...] = get_args(models.EmergencyLevel)    # IV < … < I
SUPERVISION_LEVELS: tuple[str, ...] = get_args(models.SupervisionLevel)  # street < district < city
ASSIST_STATUSES: tuple[str, ...] = get_args(models.AssistStatus)
# An assisting part still at work (its department has something to do): not handled, not released.
OPEN_PARTS: tuple[str, ...] = tuple(s for s in ASSIST_STATUSES if s not in ("handled", "released"))
ACTIONS: tuple[str, ...] = get_args(models.LifecycleAction)
CHANGE_TYPES: tuple[str, ...] = get_args(models.ChangeType)
REASONS: tuple[str, ...] = get_args(models.RejectionReason)
SOURCES: tuple[str, ...] = get_args(models.Source)
CHANNELS: tuple[str, ...] = get_args(models.Channel)
SATISFACTIONS: tuple[str, ...] = get_args(models.Satisfaction)
WARNING_KINDS: tuple[str, ...] = get_args(models.WarningKind)      # 区域预警的种类 (DESIGN §15)

# Ranks for comparisons: 0 is "none", then each level's position + 1.
PRIORITY_RANK: dict[str | None, int] = {None: 0} | {p: i + 1 for i, p in enumerate(PRIORITIES)}
WARNING_RANK: dict[str | None, int] = {None: 0} | {v: i + 1 for i, v in enumerate(WARNING_LEVELS)}
EMERGENCY_RANK: dict[str | None, int] = {None: 0} | {v: i + 1 for i, v in enumerate(EMERGENCY_LEVELS)}
SUPERVISION_RANK: dict[str, int] = {v: i + 1 for i, v in enumerate(SUPERVISION_LEVELS)}

# -- 中文 labels (the one place) ----------------------------------------------------------

STATUS_ZH = {"registered": "立案", "dispatched": "派遣", "accepted": "签收", "handled": "处置反馈",
             "closed": "结案", "cancelled": "作废", "merged": "合并"}
# What a reporter is told of the order's status (回访 and notifications.reporters): a sentence.
STATUS_REPORTER_ZH = {"registered": "已立案，待分拨", "dispatched": "已派遣至处置部门",
                      "accepted": "处置部门已签收", "handled": "已处置，待核查", "closed": "已办结",
                      "cancelled": "已作废", "merged": "已并入其他工单"}
PRIORITY_ZH = {"low": "低", "normal": "一般", "high": "紧急", "urgent": "特急"}
WARNING_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
EMERGENCY_ZH = {"IV": "Ⅳ级", "III": "Ⅲ级", "II": "Ⅱ级", "I": "Ⅰ级"}
SUPERVISION_ZH = {"street": "街道级", "district": "区级", "city": "市级"}   # (自动)督办 at that level
PART_ZH = {"dispatched": "待签收", "accepted": "已签收", "handled": "已处置", "released": "已解除"}
ACTION_ZH = {"dispatch": "派遣", "accept": "签收", "return": "退回", "handle": "处置反馈",
             "verify": "核查通过", "reject_verification": "核查不通过", "cancel": "作废", "extend": "延期",
             "supervise": "督办", "comment": "备注", "assist": "增派协办", "release_assist": "解除协办",
             "set_emergency_level": "应急响应", "visit": "回访", "recategorise": "改类",
             "reprioritise": "调整优先级", "merge": "合并到", "split": "拆分"}
TYPE_ZH = {"created": "立案", "dispatched": "派遣", "evidence_added": "新增证据", "recovery_recorded": "设备恢复",
           "accepted": "签收", "returned": "退回", "handled": "处置反馈", "verified": "核查结案",
           "verification_rejected": "核查不通过/返工", "cancelled": "作废", "extended": "延期",
           "supervised": "督办", "commented": "备注",
           "escalated": "升级", "deescalated": "降级", "assist_added": "协办派遣", "assist_accepted": "协办签收",
           "assist_handled": "协办处置反馈", "assist_returned": "协办退回", "assist_released": "协办解除",
           "visited": "回访", "recategorised": "改类", "reprioritised": "调整优先级", "merged": "并单（并入他单）",
           "merge_absorbed": "并单（并入重复件）", "split": "拆单"}
REASON_ZH = {"duplicate_command": "重复指令", "not_allowed_in_state": "当前状态不允许", "forbidden_role": "角色无权",
             "out_of_scope": "超出职责范围", "missing_field": "缺少字段", "unknown_department": "未知部门",
             "unknown_work_order": "无此工单",
             "assist_open": "协办未完成", "unknown_category": "未知类别", "invalid_field": "字段无效"}
SOURCE_ZH = {"iot": "物联感知", "video": "视频智能", "report": "上报"}
CHANNEL_ZH = {"grid_app": "网格巡查", "hotline_12345": "12345 热线", "citizen_app": "市民 App"}
SATISFACTION_ZH = {"satisfied": "满意", "basically_satisfied": "基本满意", "unsatisfied": "不满意"}
WARNING_KIND_ZH = {"rainstorm": "暴雨", "flood": "洪水", "typhoon": "台风", "gale": "大风", "heat": "高温",
                   "cold_wave": "寒潮", "blizzard": "暴雪", "fog": "大雾", "haze": "霾", "thunderstorm": "雷电",
                   "hail": "冰雹", "road_icing": "道路结冰", "frost": "霜冻", "drought": "干旱", "sandstorm": "沙尘暴",
                   "air": "空气重污染", "geological": "地质灾害", "forest_fire": "森林火险"}

# Each enumeration with its label table (the test walks this; the console gets both).
LABELS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "statuses": (STATUSES, STATUS_ZH),
    "priorities": (PRIORITIES, PRIORITY_ZH),
    "warning_levels": (WARNING_LEVELS, WARNING_ZH),
    "emergency_levels": (EMERGENCY_LEVELS, EMERGENCY_ZH),
    "supervision_levels": (SUPERVISION_LEVELS, SUPERVISION_ZH),
    "part_statuses": (ASSIST_STATUSES, PART_ZH),
    "actions": (ACTIONS, ACTION_ZH),
    "change_types": (CHANGE_TYPES, TYPE_ZH),
    "reasons": (REASONS, REASON_ZH),
    "sources": (SOURCES, SOURCE_ZH),
    "channels": (CHANNELS, CHANNEL_ZH),
    "satisfactions": (SATISFACTIONS, SATISFACTION_ZH),
    "warning_kinds": (WARNING_KINDS, WARNING_KIND_ZH),
}
# The console's names for the label tables (``<name>_zh``).
_ZH_NAME = {"statuses": "status_zh", "priorities": "priority_zh", "warning_levels": "warning_zh",
            "emergency_levels": "emergency_zh", "supervision_levels": "supervision_zh", "part_statuses": "part_zh",
            "actions": "action_zh", "change_types": "type_zh", "reasons": "reason_zh", "sources": "source_zh",
            "channels": "channel_zh", "satisfactions": "satisfaction_zh", "warning_kinds": "warning_kind_zh"}


def for_console() -> dict[str, Any]:
    """``meta["enums"]``: every list (in its order) and its labels, and the open/closed splits."""
    out: dict[str, Any] = {}
    for name, (values, zh) in LABELS.items():
        out[name] = list(values)
        out[_ZH_NAME[name]] = {v: zh[v] for v in values}
    out["open_statuses"] = list(OPEN_STATUSES)
    out["closed_statuses"] = list(CLOSED_STATUSES)
    out["open_parts"] = list(OPEN_PARTS)
    return out
