"""The in-memory front of the sensor_state table: what is written when."""

from citybrain.domain.sensor_rules import DeviceState
from citybrain.stream.device_states import DeviceStates


class CountingTable(dict):
    def __init__(self):
        super().__init__()
        self.writes = []

    def __setitem__(self, key, value):
        self.writes.append(key)
        super().__setitem__(key, value)


def test_alarm_state_changes_are_written_through_marks_are_batched():
    table = CountingTable()
    ds = DeviceStates(table, flush_seconds=2.0)
    ds.put(0, "d1", DeviceState(last_ts=1.0, last_seq=1))            # first sight: written
    assert table.writes == ["d1"]
    ds.put(0, "d1", DeviceState(last_ts=2.0, last_seq=2))            # marks only: held back
    ds.put(0, "d1", DeviceState(last_ts=3.0, last_seq=3))
    assert table.writes == ["d1"] and ds.get("d1").last_seq == 3
    ds.put(0, "d1", DeviceState(pending_since=4.0, last_ts=4.0, last_seq=4))   # hold starts
    assert table.writes == ["d1", "d1"] and table["d1"]["p"] == 4.0
    assert ds.dirty.get(0, {}) == {}


def test_flush_writes_pending_marks_once_per_interval_per_partition():
    table = CountingTable()
    ds = DeviceStates(table, flush_seconds=2.0)
    ds.put(1, "a", DeviceState(last_ts=1.0, last_seq=1))
    ds.put(1, "a", DeviceState(last_ts=2.0, last_seq=2))
    ds.put(2, "b", DeviceState(last_ts=1.0))
    ds.put(2, "b", DeviceState(last_ts=5.0))
    assert ds.maybe_flush(1, now=100.0) == 1 and table["a"]["s"] == 2
    assert ds.maybe_flush(1, now=101.0) == 0          # too soon
    assert table["b"]["t"] == 1.0                     # partition 2 not flushed by 1
    assert ds.maybe_flush(2, now=101.0) == 1 and table["b"]["t"] == 5.0


def test_reads_fall_back_to_the_table_and_forget_drops_memory():
    table = CountingTable()
    table["x"] = DeviceState(alarm=True, last_ts=9.0, alarm_since=9.0).to_dict()
    ds = DeviceStates(table)
    assert ds.get("x").alarm is True
    table["x"] = DeviceState(last_ts=10.0).to_dict()  # another worker moved on
    assert ds.get("x").alarm is True                  # memory still answers …
    ds.forget()
    assert ds.get("x").alarm is False                 # … until a rebalance
    assert ds.get("unknown") == DeviceState()
