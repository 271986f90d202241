"""registry.devices obeys its key (domain/registry_records.py): a device only under its own
id, and the registry a function of the latest record per key — the same whether a worker
read the whole log or the log after compaction."""

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from citybrain.domain.registry_records import (
    RegistryEntry,
    apply_entry,
    internal_error,
    key_text,
    read_registry_record,
)

LIMIT = 65536


def record(device_id="WLV-X-1", **extra) -> bytes:
    return orjson.dumps({"device_id": device_id, "kind": "sensor", "sensor_type": "water_level",
                         "lon": 117.87, "lat": 36.81, **extra})


def replay(log) -> dict:
    devices: dict = {}
    for key, value in log:
        apply_entry(devices, read_registry_record(key, value, LIMIT))
    return devices


def test_a_record_keyed_by_its_device_id_is_that_device():
    entry = read_registry_record(b"WLV-X-1", record(), LIMIT)
    assert not entry.dead and entry.key == "WLV-X-1" and entry.device.device_id == "WLV-X-1"
    assert replay([(b"WLV-X-1", record())]).keys() == {"WLV-X-1"}


@pytest.mark.parametrize("key", [b"OTHER-WLV-X-1", b"wlv-x-1", b"WLV-X-1 ", None, b"WLV-X-1\xff", b""])
def test_a_record_keyed_otherwise_is_a_wrong_key_dead_letter_and_registers_nothing(key):
    entry = read_registry_record(key, record(), LIMIT)
    assert entry.reason == "wrong_key" and entry.field == "key" and entry.device is None
    assert "WLV-X-1" in entry.detail
    assert replay([(key, record())]) == {}


def test_an_id_that_is_not_ascii_is_compared_as_utf8():
    assert not read_registry_record("井盖-1".encode(), record("井盖-1"), LIMIT).dead
    assert read_registry_record("井盖-1".encode("gb18030"), record("井盖-1"), LIMIT).reason == "wrong_key"


def test_the_issue_a_mismatched_record_neither_registers_nor_survives_retirement_or_deletion():
    # OTHER-X says X: X is not registered by it; X's own record, retirement and tombstone rule X.
    assert replay([(b"OTHER-X", record("X"))]) == {}
    devices = replay([(b"X", record("X")), (b"OTHER-X", record("X"))])
    assert devices.keys() == {"X"}
    devices = replay([(b"X", record("X")), (b"OTHER-X", record("X")), (b"X", record("X", status="retired"))])
    assert devices["X"].status == "retired"
    assert replay([(b"X", record("X")), (b"OTHER-X", record("X")), (b"X", None)]) == {}


def test_a_tombstone_under_a_mismatched_key_touches_no_device():
    devices = replay([(b"X", record("X")), (b"OTHER-X", record("X")), (b"OTHER-X", None)])
    assert devices.keys() == {"X"}
    assert read_registry_record(b"OTHER-X", None, LIMIT) == RegistryEntry("OTHER-X")


def test_a_tombstone_whose_key_is_not_utf8_is_nothing():
    entry = read_registry_record(b"\xff\xfe", None, LIMIT)
    assert entry == RegistryEntry(None) and not entry.dead
    devices = replay([(b"X", record("X"))])
    assert apply_entry(devices, entry) is None and devices.keys() == {"X"}


@pytest.mark.parametrize(("value", "reason"), [
    (b"not json", "not_json"),
    (orjson.dumps({"device_id": "X", "kind": "drone", "lon": 1, "lat": 1}), "invalid_field"),
    (orjson.dumps({"device_id": "X"}), "missing_field"),
    (record("X", junk="x" * LIMIT), "too_large"),
    (record("Y"), "wrong_key"),
])
def test_an_unusable_record_leaves_its_key_without_a_device_as_compaction_will(value, reason):
    # Compaction keeps only this record under X: a worker started after it knows no X, so
    # a running worker forgets X now rather than disagree with it.
    entry = read_registry_record(b"X", value, LIMIT)
    assert entry.reason == reason and entry.device is None
    devices = replay([(b"X", record("X"))])
    before = apply_entry(devices, entry)
    assert before is not None and before.device_id == "X" and devices == {}


def test_a_bug_is_an_internal_error_entry_for_the_key():
    entry = internal_error(b"X", KeyError("boom"))
    assert entry.dead and entry.reason == "internal_error" and entry.exception_type == "KeyError"
    assert entry.key == "X" and entry.device is None


def test_key_text():
    assert key_text(None) is None and key_text(b"\xff") is None and key_text("设备".encode()) == "设备"


# --- the views never part: the whole log and the compacted log give the same registry ----

IDS = ["A", "B", "井-1"]
KEYS = [i.encode() for i in IDS] + [b"OTHER-A", b"\xff", None]
VALUES = st.one_of(
    st.none(),                                                              # tombstone
    st.sampled_from(IDS).map(record),                                       # a device (any id)
    st.sampled_from(IDS).map(lambda i: record(i, status="retired")),
    st.sampled_from([b"{", b"[]", orjson.dumps({"device_id": "A"})]),        # unusable
)
LOGS = st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=25)


def compacted(log, drop_tombstones: bool):
    """What the broker keeps: the latest record per key, in log order (a null key is
    refused by a compacted topic; it is kept here to show it changes nothing either way)."""
    latest = {}
    for i, (key, value) in enumerate(log):
        latest[key] = (i, value)
    kept = sorted((i, key, value) for key, (i, value) in latest.items())
    return [(key, value) for _, key, value in kept if not (drop_tombstones and value is None)]


@given(log=LOGS, drop_tombstones=st.booleans())
def test_the_whole_log_and_the_compacted_log_give_the_same_registry(log, drop_tombstones):
    whole = replay(log)
    assert whole == replay(compacted(log, drop_tombstones))
    for key, device in whole.items():      # every device under its own id, and only there
        assert device.device_id == key


@given(log=LOGS)
def test_a_device_is_what_the_latest_record_under_its_id_says(log):
    whole = replay(log)
    for device_id in IDS:
        latest = [value for key, value in log if key == device_id.encode()]
        if not latest or latest[-1] is None:
            assert device_id not in whole
        else:
            entry = read_registry_record(device_id.encode(), latest[-1], LIMIT)
            assert whole.get(device_id) == entry.device
