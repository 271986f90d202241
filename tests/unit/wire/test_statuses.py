"""The statuses of a work order: one list in the wire models, read by every side."""

import re
from pathlib import Path

from citybrain.domain import lifecycle
from citybrain.wire.models import CLOSED_STATUSES, OPEN_STATUSES, WORK_ORDER_STATUSES

SRC = Path(__file__).resolve().parents[3] / "src" / "citybrain"


def test_open_statuses_are_the_statuses_before_an_end():
    assert set(OPEN_STATUSES) | set(CLOSED_STATUSES) == set(WORK_ORDER_STATUSES)
    assert not set(CLOSED_STATUSES) & set(OPEN_STATUSES)
    assert set(CLOSED_STATUSES) == {"closed", "cancelled", "merged"}


def test_commands_that_act_on_any_open_order_use_the_one_list():
    assert lifecycle.RULES["cancel"].allowed_from == OPEN_STATUSES
    assert set(lifecycle.RULES["comment"].allowed_from) == set(WORK_ORDER_STATUSES)


def test_no_module_spells_the_open_statuses_again():
    spelled = re.compile(r'"registered",\s*"dispatched",\s*"accepted",\s*"handled"\)')
    again = [p.relative_to(SRC) for p in SRC.rglob("*.py")
             if spelled.search(p.read_text(encoding="utf-8")) and p.name != "models.py"]
    assert again == []
