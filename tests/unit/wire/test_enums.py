"""One place per enumeration (issue 39 item 4): every spelling and every label is held to the
wire models' Literals, a lifecycle action cannot exist without its rule, and neither the
Python modules nor the console spell a list again."""

import ast
import re
from pathlib import Path
from typing import get_args

import pytest

from citybrain.domain import followup, lifecycle, timeline
from citybrain.wire import enums, models

SRC = Path(__file__).resolve().parents[3] / "src" / "citybrain"
STATIC = SRC / "web" / "static"

# Each enumeration and the wire Literal it must equal, read independently of enums.py.
WIRE = {
    "statuses": get_args(models.WorkOrderStatus),
    "priorities": get_args(models.Severity),
    "warning_levels": get_args(models.WarningLevel),
    "emergency_levels": get_args(models.EmergencyLevel),
    "supervision_levels": get_args(models.SupervisionInfo.model_fields["level"].annotation),
    "part_statuses": get_args(models.Assist.model_fields["status"].annotation),
    "actions": get_args(models.Command.model_fields["action"].annotation),
    "change_types": get_args(models.WorkOrderChange.model_fields["type"].annotation),
    "reasons": get_args(models.CommandRejection.model_fields["reason"].annotation),
    "sources": get_args(models.CityEvent.model_fields["source"].annotation),
    "channels": get_args(models.Channel),
    "satisfactions": get_args(models.Visit.model_fields["satisfaction"].annotation),
    "warning_kinds": get_args(models.AreaWarning.model_fields["kind"].annotation),
}


def test_every_enumeration_is_the_wire_models_literal():
    assert set(enums.LABELS) == set(WIRE)
    for name, (values, _) in enums.LABELS.items():
        assert values == WIRE[name], name
    assert enums.STATUSES == models.WORK_ORDER_STATUSES
    assert get_args(models.EventRef.model_fields["source"].annotation) == enums.SOURCES


@pytest.mark.parametrize("name", sorted(WIRE))
def test_every_value_has_a_label_and_every_label_a_value(name):
    values, zh = enums.LABELS[name]
    assert set(zh) == set(values)
    assert all(isinstance(z, str) and z.strip() for z in zh.values())


def test_the_open_lists_split_their_enumeration():
    assert set(enums.OPEN_STATUSES) | set(enums.CLOSED_STATUSES) == set(enums.STATUSES)
    assert not set(enums.OPEN_STATUSES) & set(enums.CLOSED_STATUSES)
    assert set(enums.OPEN_PARTS) < set(enums.ASSIST_STATUSES)
    assert enums.OPEN_PARTS == ("dispatched", "accepted")


def test_every_lifecycle_action_has_its_rule_and_every_rule_an_action():
    # The API reads RULES[cmd.action] for any action the model accepts: one without a rule
    # would be a 500 there, and a rule without an action is dead.
    assert set(lifecycle.RULES) == set(enums.ACTIONS)
    roles = set(get_args(models.Actor.model_fields["role"].annotation))
    for action, rule in lifecycle.RULES.items():
        assert set(rule.allowed_from) <= set(enums.STATUSES), action
        assert rule.target is None or rule.target in enums.STATUSES, action
        assert rule.change in enums.CHANGE_TYPES, action
        assert rule.roles and rule.roles <= roles, action
    for action, part in lifecycle.PART_RULES.items():
        assert action in enums.ACTIONS
        assert set(part.allowed_from) <= set(enums.ASSIST_STATUSES) and part.target in enums.ASSIST_STATUSES
        assert part.change in enums.CHANGE_TYPES
    assert lifecycle.IRREVERSIBLE <= set(enums.ACTIONS)


def test_the_python_label_tables_are_the_one_tables():
    assert timeline.TYPE_ZH is enums.TYPE_ZH and timeline.REASON_ZH is enums.REASON_ZH
    assert set(followup.STATUS_ZH) == set(enums.STATUSES)
    assert set(followup.QUIET) | set(followup.SILENT) <= set(enums.CHANGE_TYPES)


def test_ranks_follow_the_literal_order():
    assert [enums.PRIORITY_RANK[p] for p in enums.PRIORITIES] == [1, 2, 3, 4]
    assert enums.EMERGENCY_RANK["I"] > enums.EMERGENCY_RANK["IV"] > enums.EMERGENCY_RANK[None]
    assert enums.WARNING_RANK["red"] > enums.WARNING_RANK["blue"] > enums.WARNING_RANK[None]


def test_meta_serves_every_enumeration_as_the_wire_models_spell_it():
    served = enums.for_console()
    names = {"statuses": "status_zh", "priorities": "priority_zh", "warning_levels": "warning_zh",
             "emergency_levels": "emergency_zh", "supervision_levels": "supervision_zh",
             "part_statuses": "part_zh", "actions": "action_zh", "change_types": "type_zh",
             "reasons": "reason_zh", "sources": "source_zh", "channels": "channel_zh",
             "satisfactions": "satisfaction_zh", "warning_kinds": "warning_kind_zh"}
    for name, zh in names.items():
        assert served[name] == list(WIRE[name]), name
        assert list(served[zh]) == list(WIRE[name]), zh
    assert served["open_statuses"] == list(models.OPEN_STATUSES)
    assert served["closed_statuses"] == list(models.CLOSED_STATUSES)
    assert served["open_parts"] == list(enums.OPEN_PARTS)


def test_the_api_meta_route_serves_the_enums():
    # The route's source: the enums and the irreversible actions go out as they are.
    text = (SRC / "web" / "api.py").read_text(encoding="utf-8")
    assert '"enums": {**enums.for_console(), "irreversible": sorted(IRREVERSIBLE)}' in text


# -- no copy elsewhere ---------------------------------------------------------------------

# A literal copy: a tuple/list/set of ≥ 3 values all of one enumeration, or a dict keyed by
# ≥ 3 of them (a label table), or one of the named sub-lists spelled again.
SUB_LISTS = [tuple(enums.OPEN_STATUSES), tuple(enums.CLOSED_STATUSES), tuple(enums.OPEN_PARTS),
             ("closed", "cancelled"), ("cancelled", "closed")]
HOMES = {SRC / "wire" / "models.py", SRC / "wire" / "enums.py"}
# Lists that are not a copy of an enumeration though their values come from one: what a
# role may see or do, chosen per case (checked by their own tests).
ALLOWED: set[tuple[str, tuple[str, ...]]] = set()


SMALL = 7   # an enumeration of at most this many values: 3 of its values together are a copy


def _copies(values: list[str], sub_lists: bool = True) -> list[str]:
    found = []
    for name, (enum_values, _) in enums.LABELS.items():
        if set(values) <= set(enum_values) and (
                set(values) == set(enum_values) or (len(enum_values) <= SMALL and len(values) >= 3)):
            found.append(name)
    if sub_lists and tuple(values) in SUB_LISTS:
        found.append("sub-list")
    return found


def _python_copies(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    def strings(nodes):
        return [e.value for e in nodes] if nodes and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in nodes) else None

    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):   # a list of values
            values, found = strings(node.elts), None
            found = _copies(values) if values else []
        elif isinstance(node, ast.Dict) and strings(node.values):   # a label table: str → str
            values = strings([k for k in node.keys if k is not None])
            found = _copies(values, sub_lists=False) if values else []
        else:
            continue
        out += [(node.lineno, what, tuple(values)) for what in found]
    return out


def test_no_python_module_spells_an_enumeration_again():
    again = {}
    for path in sorted(SRC.rglob("*.py")):
        if path in HOMES:
            continue
        found = [c for c in _python_copies(path) if (str(path.relative_to(SRC)), c[2]) not in ALLOWED]
        if found:
            again[str(path.relative_to(SRC))] = found
    assert again == {}


def _js_copies(text: str) -> list[tuple[str, str]]:
    out = []
    for m in re.finditer(r"\[([^\[\]]*)\]", text):   # array literals of strings
        values = re.findall(r'"([^"]*)"', m.group(1))
        if values and re.fullmatch(r'\s*("[^"]*"\s*,\s*)*"[^"]*"\s*,?\s*', m.group(1)):
            out += [(what, m.group(0)) for what in _copies(values)]
    for m in re.finditer(r"\{([^{}]*)\}", text):     # object literals: their keys
        keys = re.findall(r'(?:^|[{,]\s*)"?([A-Za-z_][A-Za-z0-9_]*)"?\s*:', "{" + m.group(1))
        out += [(what, m.group(0)[:80]) for what in _copies(keys, sub_lists=False)]
    return out


def test_the_console_spells_no_enumeration_itself():
    text = (STATIC / "console.js").read_text(encoding="utf-8")
    found = _js_copies(text)
    # The status colours are the console's own (presentation), keyed by status.
    found = [f for f in found if not f[1].startswith("{registered: \"#")]
    assert found == []
    # and the lists it used to spell, as they were spelled
    for copy in ('"registered", "dispatched"', 'urgent: "特急"', '"dispatched", "accepted"', 'blue: "蓝色',
                 'IV: "Ⅳ', '"IV", "III"', 'dispatch: "派遣', '"cancel", "merge"'):
        assert copy not in text, copy
    assert "useEnums(state.meta.enums)" in text


def test_the_detector_finds_the_copies_it_is_for():
    assert _js_copies('const OPEN = ["registered", "dispatched", "accepted", "handled"];')
    assert _js_copies('const P = {urgent: "特急", high: "紧急", normal: "一般", low: "低"};')
    assert _js_copies('x = ["dispatched", "accepted"]')
    assert _copies(["low", "normal", "high"]) == ["priorities"]
    assert not _copies(["handled", "closed"])


def test_the_console_pages_filter_values_are_wire_values():
    # index.html's filter presets (e.g. 橙及以上 orange,red) are curated, but every value in
    # them must be a value of its enumeration.
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    selects = {"f-status": enums.STATUSES, "f-priority": enums.PRIORITIES,
               "f-warning": (*enums.WARNING_LEVELS, "none"), "f-emergency": (*enums.EMERGENCY_LEVELS, "none"),
               "c-channel": enums.CHANNELS}   # none: the list parameters' "no level" (web/params.py)
    for sid, values in selects.items():
        body = re.search(rf'<select id="{sid}".*?</select>', html, re.S)
        assert body, sid
        seen = [v for opt in re.findall(r'<option value="([^"]*)"', body.group(0)) if opt for v in opt.split(",")]
        assert seen and set(seen) <= set(values), (sid, seen)
