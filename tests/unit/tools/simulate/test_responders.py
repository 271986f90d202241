"""The demo's simulated people move every order one step along the loop."""

import random

from citybrain_tools.simulate.responders import TRIAGE_DEPARTMENT, next_move


def snap(status, department="water"):
    return {"work_order_id": "WO-x", "status": status, "department": department,
            "location": {"community_code": "370306002001", "grid_code": "370306002001016"}}


def test_each_status_gets_the_next_move_by_the_right_person():
    rng = random.Random(1)
    moves = {s: next_move(snap(s, None if s == "registered" else "water"), rng)
             for s in ("registered", "dispatched", "accepted", "handled", "closed", "cancelled")}
    assert moves["closed"] is None and moves["cancelled"] is None
    actions = {s: (m[1]["action"], m[1]["actor"]["role"]) for s, m in moves.items() if m}
    assert actions == {"registered": ("dispatch", "operator"), "dispatched": ("accept", "department"),
                       "accepted": ("handle", "department"), "handled": ("verify", "grid")}
    assert moves["registered"][1]["department"] == TRIAGE_DEPARTMENT
    assert moves["dispatched"][1]["actor"]["department"] == "water"
    assert moves["handled"][1]["actor"]["grid_prefix"] == "370306002001"      # in scope of its grid
    assert all(0 < m[0] <= 30 for m in moves.values() if m)


def test_assisting_departments_work_their_parts_and_the_lead_waits_for_them():
    from citybrain_tools.simulate.responders import next_moves, steps_of
    rng = random.Random(2)
    o = snap("accepted", "gas_utility")
    o["assists"] = [{"department": "fire", "status": "accepted"}, {"department": "police", "status": "dispatched"},
                    {"department": "traffic", "status": "released"}]
    moves = {step: (f["action"], f["actor"]["department"]) for _, step, f in next_moves(o, rng)}
    assert moves == {"fire:accepted": ("handle", "fire"), "police:dispatched": ("accept", "police")}
    assert steps_of(o) == {"lead:accepted", "fire:accepted", "police:dispatched", "traffic:released"}
    o["assists"] = [{"department": "fire", "status": "handled"}, {"department": "police", "status": "released"}]
    assert [(step, f["action"]) for _, step, f in next_moves(o, rng)] == [("lead:accepted", "handle")]


def test_a_closed_order_with_a_report_gets_one_visit():
    rng = random.Random(3)
    o = snap("closed")
    o["events"] = [{"report_id": "R-1"}]
    delay, fields = next_move(o, rng)
    assert fields["action"] == "visit" and fields["report_id"] == "R-1" and fields["actor"]["role"] == "operator"
    assert fields["satisfaction"] in ("satisfied", "basically_satisfied", "unsatisfied")
    o["visits"] = [{"satisfaction": "satisfied"}]
    assert next_move(o, rng) is None
