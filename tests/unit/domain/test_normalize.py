"""Normalisation: every input → exactly one of normal / event / suppressed / deadletter."""

import base64
import copy
import hashlib
import time
from dataclasses import replace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from citybrain.domain.normalize import dead_letter_key, kept_extras
from citybrain.domain.sensor_rules import DeviceState
from citybrain_tools.simulate.traffic import iso

NOW = time.time()


def reading(**over):
    body = {"device_id": "WLV-UP-01", "sensor_type": "water_level", "value": 0.02,
            "unit": "m", "ts": iso(NOW - 10), "seq": 1}
    body.update(over)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


def fresh(_device_id):
    return DeviceState()


def run_reading(normalizer, meta, raw, key=b"WLV-UP-01", state=fresh):
    return normalizer.reading(raw, meta(key=key, timestamp=NOW), state)


# -- IoT -------------------------------------------------------------------------

def test_normal_reading(normalizer, meta):
    r = run_reading(normalizer, meta, reading())
    assert r.outcome == "normal" and r.event is None and r.dead is None


def test_alarm_then_recovery_events(normalizer, meta):
    states = {}

    def state_of(d):
        return states.get(d, DeviceState())

    def step(value, t, seq):
        r = normalizer.reading(reading(value=value, ts=iso(NOW - 2000 + t), seq=seq),
                               meta(key=b"WLV-UP-01", timestamp=NOW), state_of)
        if r.state is not None:
            states[r.state_key] = r.state
        return r

    assert step(0.3, 0, 1).outcome == "normal"        # hold starts
    alarm = step(0.3, 60, 2)
    assert alarm.outcome == "event" and alarm.event.kind == "alarm"
    ev = alarm.event
    assert ev.category == "waterlogging" and ev.category_name == "路面积水" and ev.severity == "high"
    assert ev.source == "iot" and ev.device_id == "WLV-UP-01" and ev.value == 0.3
    assert ev.location.street_code == "370306002"      # 大街街道, from the registry position
    assert step(0.01, 100, 3).outcome == "normal"
    rec = step(0.01, 400, 4)
    assert rec.outcome == "event" and rec.event.kind == "recovery"


def test_event_ids_are_deterministic(normalizer, meta):
    raw = reading(value=0.4, seq=9)
    a = run_reading(normalizer, meta, raw, state=lambda d: DeviceState(pending_since=NOW - 100, last_ts=NOW - 100))
    b = run_reading(normalizer, meta, raw, state=lambda d: DeviceState(pending_since=NOW - 100, last_ts=NOW - 100))
    assert a.event and a.event.event_id == b.event.event_id


def test_location_in_message_overrides_registry(normalizer, meta):
    st_ = lambda d: DeviceState(pending_since=NOW - 100, last_ts=NOW - 100)  # noqa: E731
    r = run_reading(normalizer, meta, reading(value=0.5, lon=117.95, lat=36.80), state=st_)
    assert r.event.location.lon == 117.95 and r.event.location.street_code == "370306001"


def test_duplicate_reading_is_suppressed(normalizer, meta):
    st_ = lambda d: DeviceState(last_ts=NOW - 10, last_seq=1)  # noqa: E731
    r = run_reading(normalizer, meta, reading(seq=1), state=st_)
    assert (r.outcome, r.reason, r.state) == ("suppressed", "duplicate", None)
    r = run_reading(normalizer, meta, reading(seq=0, ts=iso(NOW - 20)), state=st_)
    assert (r.outcome, r.reason) == ("suppressed", "out_of_order")


def test_unknown_fields_travel_only_when_allowed_and_masked(normalizer, meta):
    """Personal data at the edge (issue 36): an unknown field rides on events.normalized
    (kept 400 days) only if the configured allow-list names it, its text masked."""
    st_ = lambda d: DeviceState(pending_since=NOW - 100, last_ts=NOW - 100)  # noqa: E731
    record = reading(value=0.5, firmware="v2.1", rssi=-71, caller_phone="13812345678", caller_name="张三",
                     note={"by": "值班 13912345678"})
    r = run_reading(normalizer, meta, record, state=st_)
    assert r.event.source_ref.extra == {}                      # the default: nothing unknown travels
    allowing = copy.copy(normalizer)
    allowing.limits = replace(normalizer.limits, keep_extra_fields=frozenset({"firmware", "rssi", "note"}))
    r = run_reading(allowing, meta, record, state=st_)
    assert r.event.source_ref.extra == {"firmware": "v2.1", "rssi": -71, "note": {"by": "值班 139****5678"}}
    assert "13812345678" not in r.event.model_dump_json() and "张三" not in r.event.model_dump_json()


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.recursive(
    st.none() | st.integers() | st.text(max_size=20), lambda c: st.lists(c, max_size=3)
    | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8), max_size=5),
    st.frozensets(st.text(min_size=1, max_size=8), max_size=4))
def test_kept_extras_are_exactly_the_allowed_names_masked(extra, allow):
    kept = kept_extras(extra, allow)
    assert set(kept) == set(extra) & allow
    assert kept_extras(kept, allow) == kept            # masking twice changes nothing more


DEAD_CASES = [
    ("not_json", b"device=1;value=2", b"WLV-UP-01", None),
    ("invalid_utf8", b'{"device_id": "\xff"}', b"WLV-UP-01", None),
    ("not_object", b"[1,2]", b"WLV-UP-01", None),
    ("not_json", b"", b"WLV-UP-01", None),
    ("missing_field", reading(sensor_type=...), b"WLV-UP-01", "sensor_type"),
    ("missing_field", reading(ts=...), b"WLV-UP-01", "ts"),
    ("invalid_field", reading(value="0.3"), b"WLV-UP-01", "value"),
    ("invalid_field", reading(value=True), b"WLV-UP-01", "value"),
    ("invalid_field", reading(sensor_type="radiation"), b"WLV-UP-01", "sensor_type"),
    ("invalid_field", reading(ts="2026-11-22T09:30:00"), b"WLV-UP-01", "ts"),   # no offset
    ("invalid_field", reading(ts="yesterday"), b"WLV-UP-01", "ts"),
    ("invalid_field", reading(lon=500.0), b"WLV-UP-01", "lon"),
    ("too_large", reading(blob="x" * 70000), b"WLV-UP-01", None),
    ("unknown_device", reading(device_id="GHOST-1"), b"GHOST-1", "device_id"),
    ("device_type_mismatch", reading(sensor_type="smoke"), b"WLV-UP-01", "device_id"),
    ("value_out_of_range", reading(value=99.0), b"WLV-UP-01", "value"),
    ("out_of_area", reading(lon=116.4, lat=39.9), b"WLV-UP-01", "lon"),
    ("future_timestamp", reading(ts=iso(NOW + 3600)), b"WLV-UP-01", "ts"),
    ("wrong_key", reading(), b"someone-else", "key"),
    ("wrong_key", reading(), None, "key"),
]


# Ids without the raw bytes: those carry the wall clock, and pytest-xdist's workers must
# collect the same names.
@pytest.mark.parametrize("reason,raw,key,field", DEAD_CASES,
                         ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(DEAD_CASES)])
def test_bad_readings_are_dead_letters_with_reason(normalizer, meta, reason, raw, key, field):
    r = run_reading(normalizer, meta, raw, key=key)
    assert r.outcome == "deadletter" and r.reason == reason
    assert r.dead.reason == reason and r.dead.field == field and r.dead.detail
    # Nothing is lost: the original whole (or, past the limit, its first bytes with the
    # length and hash of the whole — the record itself stays on its source topic).
    kept = base64.b64decode(r.dead.original_b64)
    assert kept == raw[:65536] and r.dead.original_truncated == (len(raw) > 65536)
    assert r.dead.original_sha256 == hashlib.sha256(raw).hexdigest()
    assert r.dead.original_size == len(raw) and r.dead.source == "iot"
    assert r.state is None


@pytest.mark.parametrize("size", [786_000, 900_000, 4_000_000])
def test_a_huge_record_makes_a_bounded_dead_letter(normalizer, meta, size):
    """Issue 11: the dead letter of a ~900 KB report carried it whole (base64: past the
    broker's 1 MB) and its produce stopped the worker."""
    raw = orjson.dumps({"report_id": "R-big", "reporter_id": "GM-1", "category": "road_damage",
                        "description": "长" * (size // 3), "ts": iso(NOW - 5), "lon": 117.86, "lat": 36.79})
    r = normalizer.report(raw, meta(key=b"GM-1", timestamp=NOW))
    assert r.reason == "too_large" and r.dead.original_truncated
    assert len(to_json(r.dead)) < 100_000
    assert r.dead.original_size == len(raw) and r.dead.original_sha256 == hashlib.sha256(raw).hexdigest()


def test_a_huge_key_is_hashed_for_the_dead_letter(normalizer, meta):
    key = b"k" * 500_000
    r = run_reading(normalizer, meta, b"not json", key=key)
    assert len(base64.b64decode(r.dead.original_key_b64)) == 1024
    assert dead_letter_key(key) == hashlib.sha256(key).hexdigest().encode()
    assert dead_letter_key(b"WLV-UP-01") == b"WLV-UP-01"


def nested(depth: int):
    v: object = 1
    for _ in range(depth):
        v = {"x": v}
    return v


@pytest.mark.parametrize("depth", [33, 255, 600])
def test_deeply_nested_extra_fields_are_dead_letters(normalizer, meta, depth):
    """Issue 11: an extra field ~255 levels deep (~2 KB) raised in serialisation and
    stopped the stage."""
    raw = reading()[:-1] + b',"deep":' + b'{"x":' * depth + b"1" + b"}" * depth + b"}"
    r = run_reading(normalizer, meta, raw)
    assert r.reason == "invalid_field" and r.dead.field == "deep"


def test_extra_fields_nested_within_the_limit_are_kept(normalizer, meta):
    st_ = lambda d: DeviceState(pending_since=NOW - 100, last_ts=NOW - 100)  # noqa: E731
    r = run_reading(normalizer, meta, reading(value=0.5, deep=nested(32)), state=st_)
    assert r.outcome == "event" and to_json(r.event)


def test_retired_device(normalizer, meta, registry):
    retired = next(d for d in registry.values() if d.status == "retired" and d.kind == "sensor")
    raw = reading(device_id=retired.device_id, sensor_type=retired.sensor_type, value=0.0)
    r = run_reading(normalizer, meta, raw, key=retired.device_id.encode())
    assert r.reason in ("retired_device",)


# -- video -----------------------------------------------------------------------

def alert(**over):
    body = {"alert_id": "VA-1", "camera_id": "CAM-UP-01", "algorithm": "road_ponding",
            "confidence": 0.9, "ts": iso(NOW - 5), "snapshot_url": "https://v/1.jpg"}
    body.update(over)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


def test_video_alert_above_threshold_is_an_event(normalizer, meta):
    r = normalizer.video(alert(), meta("ingest.video.alerts", b"CAM-UP-01", timestamp=NOW))
    assert r.outcome == "event"
    ev = r.event
    assert (ev.source, ev.kind, ev.category, ev.confidence) == ("video", "alarm", "waterlogging", 0.9)
    assert ev.evidence == ["https://v/1.jpg"] and ev.alert_id == "VA-1"


@pytest.mark.parametrize("key", [None, b"CAM-OTHER"])
def test_a_video_alert_is_taken_whatever_its_key(normalizer, meta, key):
    """Decided (issue 17, docs/normalisation.md): no per-camera state hangs on the key."""
    assert normalizer.video(alert(), meta("ingest.video.alerts", key, timestamp=NOW)).outcome == "event"


def test_video_alert_below_threshold_is_suppressed(normalizer, meta):
    r = normalizer.video(alert(confidence=0.69), meta("ingest.video.alerts", b"CAM-UP-01", timestamp=NOW))
    assert (r.outcome, r.reason) == ("suppressed", "low_confidence")


@pytest.mark.parametrize("reason,raw", [
    ("unknown_device", alert(camera_id="CAM-NOPE")),
    ("device_type_mismatch", alert(camera_id="WLV-UP-01")),
    ("invalid_field", alert(confidence=1.5)),
    ("invalid_field", alert(algorithm="ufo")),
    ("missing_field", alert(alert_id=...)),
])
def test_bad_video_alerts(normalizer, meta, reason, raw):
    r = normalizer.video(raw, meta("ingest.video.alerts", b"x", timestamp=NOW))
    assert (r.outcome, r.reason) == ("deadletter", reason)


# -- reports ---------------------------------------------------------------------

def report(**over):
    body = {"report_id": "R-1", "channel": "hotline_12345", "reporter_id": "HL-1",
            "category": "road_damage", "description": "路面塌陷，联系13812345678",
            "ts": iso(NOW - 60), "lon": 117.8625, "lat": 36.7935,
            "photos": ["https://p/1.jpg"], "contact_phone": "13912345678",
            "address": "大街1号，电话0533-6123456"}
    body.update(over)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


def test_report_becomes_masked_event(normalizer, meta):
    r = normalizer.report(report(), meta("ingest.reports", b"HL-1", timestamp=NOW))
    ev = r.event
    assert r.outcome == "event" and ev.kind == "report" and ev.category == "road_damage"
    assert ev.description == "路面塌陷，联系138****5678"
    assert ev.contact_phone == "139****5678" and "6123456" not in ev.address
    assert "13912345678" not in orjson.dumps(ev.model_dump(mode="json")).decode()
    assert ev.evidence == ["https://p/1.jpg"] and ev.channel == "hotline_12345"
    assert ev.location.grid_code.startswith("370306002")


def test_report_grid_code_from_app_is_used_when_it_is_a_real_grid(normalizer, meta, config):
    other = next(c for c in config.city_map.grid_codes if c.startswith("370306001"))
    r = normalizer.report(report(grid_code=other), meta("ingest.reports", b"HL-1", timestamp=NOW))
    assert r.event.location.grid_code == other and r.event.location.street_code == "370306001"
    r = normalizer.report(report(grid_code="370306999999999"), meta("ingest.reports", b"HL-1", timestamp=NOW))
    assert (r.reason, r.dead.field) == ("invalid_field", "grid_code")


@pytest.mark.parametrize("reason,raw", [
    ("unknown_category", report(category="ufo_sighting")),
    ("missing_location", report(lon=...)),   # a point or (with a gazetteer) an address
    ("invalid_field", report(description="长" * 2001)),
    ("invalid_field", report(channel="fax")),
    ("out_of_area", report(lon=120.0, lat=30.0)),
])
def test_bad_reports(normalizer, meta, reason, raw):
    r = normalizer.report(raw, meta("ingest.reports", b"HL-1", timestamp=NOW))
    assert (r.outcome, r.reason) == ("deadletter", reason)


# -- conservation: arbitrary input never crashes and has exactly one outcome -----

@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.dictionaries(st.sampled_from(["device_id", "sensor_type", "value", "ts", "seq",
                                                  "lon", "lat", "camera_id", "alert_id", "algorithm",
                                                  "confidence", "report_id", "reporter_id",
                                                  "category"]),
                                 st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=20),
                                           st.booleans())).map(orjson.dumps)),
       st.sampled_from(["iot", "video", "report"]))
def test_any_bytes_yield_exactly_one_outcome(normalizer, meta, raw, source):
    m = meta(key=b"k", timestamp=NOW)
    r = (normalizer.reading(raw, m, fresh) if source == "iot" else
         normalizer.video(raw, m) if source == "video" else normalizer.report(raw, m))
    assert r.outcome in ("normal", "event", "suppressed", "deadletter")
    assert (r.outcome == "deadletter") == (r.dead is not None)
    assert (r.outcome == "event") == (r.event is not None)


def test_numbers_beyond_64_bits_are_dead_letters_not_crashes(normalizer, meta):
    raw = reading(value=0).replace(b'"value":0', b'"value":1' + b"0" * 40)
    r = normalizer.reading(raw, meta(key=b"WLV-UP-01", timestamp=NOW), fresh)
    assert r.outcome == "deadletter" and r.reason in ("not_json", "value_out_of_range")


@pytest.mark.parametrize("keep", ["masked", "full", "none"])
def test_a_dead_letters_copy_of_personal_data_is_masked_unless_a_setting_allows(meta, keep):
    """Personal data at rest (issue 17): a refused report's phone and ID-card numbers are
    masked in its dead letter by default; its length and hash stay whatever is kept."""
    from citybrain.domain.normalize import dead_letter
    raw = '{"description": "联系电话13905331234，身份证370306199001011234", "lon": "x"}'.encode()
    d = dead_letter("report", raw, meta("ingest.reports", key=b"13905331234"), "invalid_field",
                    "lon: not a number", "lon", keep_original=keep)
    kept = base64.b64decode(d.original_b64)
    # the key is the reporter id, here a phone number: masked unless the setting keeps it all
    shown_key = base64.b64decode(d.original_key_b64 or "")
    assert shown_key == (b"13905331234" if keep == "full" else b"139****1234")
    assert dead_letter_key(b"13905331234") == b"139****1234"
    assert d.original_kept == keep and d.original_size == len(raw)
    assert d.original_sha256 == hashlib.sha256(raw).hexdigest()
    if keep == "full":
        assert kept == raw
    elif keep == "none":
        assert kept == b""
    else:
        assert b"13905331234" not in kept and b"370306199001011234" not in kept
        assert "联系电话139****1234".encode() in kept and b'"lon": "x"' in kept


@pytest.mark.parametrize("ts", [1764000000, 1764000000.5, "0001-01-01T00:00:00+00:00", "1999-12-31T23:59:59+08:00"])
def test_a_ts_that_is_a_number_or_from_a_broken_clock_is_refused(normalizer, meta, ts):
    raw = orjson.dumps({"device_id": "WLV-UP-01", "sensor_type": "water_level", "value": 0.1, "ts": ts})
    r = normalizer.reading(raw, meta("ingest.iot.readings", key=b"WLV-UP-01"), lambda d: DeviceState())
    assert (r.outcome, r.reason, r.dead.field) == ("deadletter", "invalid_field", "ts")
