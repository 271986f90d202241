"""The per-device alarm state machine: hold times, hysteresis, duplicates, order."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.config import Config
from citybrain.domain.sensor_rules import (
    SEQ_RESET_SECONDS,
    Condition,
    DeviceState,
    ReadingOutcome,
    SensorRule,
    apply_reading,
)

WATER = SensorRule(unit="m", valid_range=(-1, 20),
                   alarm=Condition(op="gt", threshold=0.15, hold_seconds=60),
                   clear=Condition(op="lt", threshold=0.05, hold_seconds=300))


def feed(rule, readings, state=None):
    state = state or DeviceState()
    outcomes = []
    for r in readings:
        value, ts, seq = (r + (None,))[:3] if len(r) == 2 else r
        state, out = apply_reading(rule, state, value, ts, seq)
        outcomes.append(out)
    return state, outcomes


def test_alarm_needs_condition_to_hold_for_the_duration():
    state, outs = feed(WATER, [(0.2, 0), (0.2, 30), (0.2, 59)])
    assert outs == [ReadingOutcome.NORMAL] * 3 and not state.alarm
    state, outs = feed(WATER, [(0.2, 60)], state)
    assert outs == [ReadingOutcome.ALARM] and state.alarm and state.alarm_since == 60


def test_a_dip_below_threshold_restarts_the_hold():
    state, outs = feed(WATER, [(0.2, 0), (0.2, 50), (0.1, 55), (0.2, 70), (0.2, 125)])
    assert ReadingOutcome.ALARM not in outs
    state, outs = feed(WATER, [(0.2, 130)], state)
    assert outs == [ReadingOutcome.ALARM]


def test_recovery_uses_hysteresis():
    state, _ = feed(WATER, [(0.3, 0), (0.3, 60)])
    assert state.alarm
    # 0.1 is below the alarm threshold but not below the clear threshold: still alarm.
    state, outs = feed(WATER, [(0.1, 100), (0.1, 500)], state)
    assert outs == [ReadingOutcome.NORMAL, ReadingOutcome.NORMAL] and state.alarm
    state, outs = feed(WATER, [(0.01, 600), (0.01, 899)], state)
    assert outs == [ReadingOutcome.NORMAL, ReadingOutcome.NORMAL] and state.alarm
    state, outs = feed(WATER, [(0.01, 900)], state)
    assert outs == [ReadingOutcome.RECOVERY] and not state.alarm


def test_zero_hold_alarms_on_the_first_reading():
    smoke = Config().sensor_rules["smoke"]
    _, outs = feed(smoke, [(0.3, 0)])
    assert outs == [ReadingOutcome.ALARM]


def test_duplicates_and_out_of_order_do_not_change_state():
    state, _ = feed(WATER, [(0.2, 0, 1), (0.2, 30, 2)])
    same, out = apply_reading(WATER, state, 0.9, 40, 2)
    assert out is ReadingOutcome.DUPLICATE and same == state
    same, out = apply_reading(WATER, state, 0.9, 10, 1)
    assert out is ReadingOutcome.OUT_OF_ORDER and same == state
    # Without seq: same ts is a duplicate, an older ts is out of order.
    state, _ = feed(WATER, [(0.2, 0), (0.2, 30)])
    assert apply_reading(WATER, state, 0.0, 30)[1] is ReadingOutcome.DUPLICATE
    assert apply_reading(WATER, state, 0.0, 29)[1] is ReadingOutcome.OUT_OF_ORDER


def test_late_reading_cannot_complete_a_hold():
    """A late reading with an old ts must not be used to reach the hold time."""
    state, _ = feed(WATER, [(0.2, 100, 5)])
    state, out = apply_reading(WATER, state, 0.2, 10, 2)
    assert out is ReadingOutcome.OUT_OF_ORDER and not state.alarm


def test_two_sided_ph_rule():
    ph = Config().sensor_rules["water_ph"]
    state, outs = feed(ph, [(5.0, 0), (5.0, 600)])
    assert outs[-1] is ReadingOutcome.ALARM
    state, outs = feed(ph, [(8.8, 700), (8.8, 2000)], state)  # outside clear band: stays alarm
    assert ReadingOutcome.RECOVERY not in outs
    state, outs = feed(ph, [(7.0, 2100), (7.0, 3000)], state)
    assert outs[-1] is ReadingOutcome.RECOVERY


def test_state_round_trips_through_its_dict():
    state, _ = feed(WATER, [(0.3, 0, 1), (0.3, 60, 2)])
    assert DeviceState.from_dict(state.to_dict()) == state
    assert DeviceState.from_dict(None) == DeviceState()


def test_overlapping_alarm_and_clear_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        SensorRule(unit="m", valid_range=(0, 1), alarm=Condition(op="gt", threshold=0.1),
                   clear=Condition(op="lt", threshold=0.5))


def test_every_configured_rule_is_valid_and_has_a_category():
    cfg = Config()
    for sensor_type in cfg.sensor_rules:
        assert cfg.taxonomy.for_sensor(sensor_type) is not None, sensor_type


readings = st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.integers(0, 3600)),
                    min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(readings)
def test_alarms_and_recoveries_alternate(rs):
    """Invariant: events alternate alarm, recovery, alarm … starting with an alarm."""
    _, outs = feed(WATER, [(v, t) for v, t in rs])
    flips = [o for o in outs if o in (ReadingOutcome.ALARM, ReadingOutcome.RECOVERY)]
    assert all(f is (ReadingOutcome.ALARM if i % 2 == 0 else ReadingOutcome.RECOVERY) for i, f in enumerate(flips))


@settings(max_examples=200, deadline=None)
@given(readings, st.randoms(use_true_random=False))
def test_replaying_delivered_readings_in_any_order_after_the_fact_changes_nothing(rs, rnd):
    """Once the readings have been applied, redelivering any of them (a replay after a
    crash, a duplicate, a late one) never flips state."""
    ordered = sorted({t: (v, t, i) for i, (v, t) in enumerate(sorted(rs, key=lambda r: r[1]))}.values(),
                     key=lambda r: r[1])
    ordered = [(v, t, i) for i, (v, t, _) in enumerate(ordered)]
    state, _ = feed(WATER, ordered)
    replay = list(ordered)
    rnd.shuffle(replay)
    after, outs = feed(WATER, replay, state)
    assert after == state
    assert set(outs) <= {ReadingOutcome.DUPLICATE, ReadingOutcome.OUT_OF_ORDER}


@settings(max_examples=200, deadline=None)
@given(readings)
def test_event_time_not_arrival_decides(rs):
    """The same readings give the same events whatever the wall clock: pure function of input."""
    a = feed(WATER, [(v, t) for v, t in rs])
    b = feed(WATER, [(v, t) for v, t in rs])
    assert a == b


def test_a_sequence_counter_that_jumps_or_wraps_cannot_silence_a_device():
    """Issue 11: one reading with seq 2**64-1 made every later reading out of order."""
    state, _ = feed(WATER, [(0.01, 0, 5), (0.01, 10, 2**63 - 1)])
    # Within the reset window a smaller seq is still taken for out of order …
    assert apply_reading(WATER, state, 0.3, 10 + SEQ_RESET_SECONDS, 6)[1] is ReadingOutcome.OUT_OF_ORDER
    # … once event time has moved on past it, the counter was reset: adopted.
    state, outs = feed(WATER, [(0.3, 11 + SEQ_RESET_SECONDS, 6), (0.3, 40 + SEQ_RESET_SECONDS, 7),
                               (0.3, 80 + SEQ_RESET_SECONDS, 8)], state)
    assert outs == [ReadingOutcome.NORMAL, ReadingOutcome.NORMAL, ReadingOutcome.ALARM] and state.last_seq == 8


@given(st.lists(st.tuples(st.integers(0, 2**63 - 1), st.integers(1, 600)), min_size=1, max_size=30))
@settings(max_examples=200)
def test_whatever_the_seqs_a_reading_a_window_later_is_never_suppressed(seqs):
    state, t = DeviceState(), 0.0
    for seq, gap in seqs:
        t += gap
        state, _ = apply_reading(WATER, state, 0.01, t, seq)
    _, out = apply_reading(WATER, state, 0.01, t + SEQ_RESET_SECONDS + 1, 0)
    assert out is ReadingOutcome.NORMAL


# -- graded warnings (预警分级) ------------------------------------------------------

def _graded():
    return Config().sensor_rules["water_level"]   # blue 0.15 / yellow 0.30 / orange 0.50 (60 s), red 0.80 (30 s)


def _feed(rule, readings, state=None):
    state = state or DeviceState()
    seen = []
    for ts, v in readings:
        state, outcome = apply_reading(rule, state, v, ts)
        seen.append((ts, outcome.value, state.level))
    return state, seen


def test_a_rising_gauge_climbs_level_by_level_after_each_hold():
    rule = _graded()
    state, seen = _feed(rule, [(0, 0.2), (60, 0.2), (70, 0.4), (100, 0.4), (130, 0.4),
                               (140, 0.6), (200, 0.6), (210, 0.9), (240, 0.9)])
    events = [(ts, lv) for ts, outcome, lv in seen if outcome in ("alarm", "level")]
    assert events == [(60, "blue"), (130, "yellow"), (200, "orange"), (240, "red")]


def test_a_level_that_does_not_hold_long_enough_changes_nothing():
    rule = _graded()
    state, seen = _feed(rule, [(0, 0.2), (60, 0.2), (70, 0.9), (90, 0.9), (95, 0.2), (200, 0.2)])
    assert [o for _, o, _ in seen].count("level") == 0 and state.level == "blue"


def test_a_falling_level_waits_for_the_higher_levels_hold_and_recovery_clears_it():
    rule = _graded()
    state, seen = _feed(rule, [(0, 0.9), (60, 0.9), (90, 0.9)])   # an alarm starts at blue, red holds 30 s
    assert [(o, lv) for _, o, lv in seen] == [("normal", None), ("alarm", "blue"), ("level", "red")]
    assert state.alarm and state.level == "red"
    state, seen = _feed(rule, [(100, 0.2), (120, 0.2), (130, 0.2)], state)
    assert [o for _, o, _ in seen] == ["normal", "normal", "level"] and state.level == "blue"
    state, seen = _feed(rule, [(140, 0.01), (440, 0.01)], state)
    assert seen[-1][1] == "recovery" and state.level is None and not state.alarm


def test_levels_survive_the_state_dict_and_old_state_reads_without_them():
    s = DeviceState(True, None, 10.0, 3, 5.0, "orange", ("red", 9.0))
    assert DeviceState.from_dict(s.to_dict()) == s
    assert DeviceState.from_dict({"a": True, "p": None, "t": 1.0, "s": None}).level is None


def test_levels_must_nest():
    with pytest.raises(ValueError, match="within the one below"):
        SensorRule(unit="m", valid_range=(0, 10), alarm={"op": "gt", "threshold": 1},
                   clear={"op": "lt", "threshold": 0.5},
                   levels={"blue": {"op": "gt", "threshold": 5}, "red": {"op": "gt", "threshold": 2}})


def test_ungraded_rules_carry_no_level():
    rule = Config().sensor_rules["manhole_tilt"]
    state, seen = _feed(rule, [(0, 20), (10, 20), (20, 40)])
    assert seen[1][1] == "alarm" and state.level is None and seen[2][1] == "normal"
