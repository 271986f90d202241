"""设备完好率: silence judged per partition against the stream's own time, never a whole
partition offline because its worker was away (DESIGN §13)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.domain.device_health import FAULT, OFFLINE, ONLINE, Health, PartitionClock, SilenceWatch

LIMIT = 30.0


def watch():
    return SilenceWatch(lambda d: None if d.startswith("CAM") else LIMIT)


def test_a_device_silent_past_its_limit_is_offline_once_and_back_when_heard():
    w = watch()
    w.heard(0, "WLV-1", 100.0)
    w.heard(0, "WLV-2", 100.0)
    assert w.due(0, 129.0) == []
    w.heard(0, "WLV-2", 125.0)
    [(device, h)] = w.due(0, 131.0)
    assert (device, h.state, h.since) == ("WLV-1", OFFLINE, 130.0)
    assert w.due(0, 140.0) == [] and w.due(0, 1000.0)[0][0] == "WLV-2"      # WLV-1 once only
    h, came_back = w.heard(0, "WLV-1", 1001.0)
    assert (h.state, came_back) == (ONLINE, OFFLINE)
    assert w.due(0, 1030.0) == [] and w.due(0, 1032.0)[0][0] == "WLV-1"


def test_cameras_are_not_watched_for_silence_but_their_platform_status_counts():
    w = watch()
    assert w.status(0, "CAM-1", ONLINE, 10.0) is None
    assert w.due(0, 10_000.0) == []
    assert w.status(0, "CAM-1", FAULT, 20.0) == ONLINE
    assert w.status(0, "CAM-1", FAULT, 30.0) is None
    assert w.status(0, "CAM-1", ONLINE, 40.0) == FAULT
    assert w.counts() == {"CAM-1": ONLINE}


def test_the_reference_is_the_fetch_time_at_the_end_and_the_latest_record_while_behind():
    c = PartitionClock()
    assert c.reference(0) is None                  # nothing known yet: nothing judged
    c.read(0, 100.0)
    assert c.reference(0) == 100.0                 # behind (no fetch at the end yet)
    c.fetched(0, lag=0, fetched_at=160.0)
    assert c.reference(0) == 160.0
    c.fetched(0, lag=5000, fetched_at=200.0)       # a lag spike: back to the stream's own time
    assert c.reference(0) == 100.0


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(0.1, LIMIT - 0.5), min_size=1, max_size=40),
       down=st.floats(0, 3600), devices=st.integers(1, 5))
def test_a_worker_away_for_any_time_never_finds_reporting_devices_silent(gaps, down, devices):
    """Devices that report within their limit are appended in time order while the worker
    is away for ``down`` seconds; the restarted worker reads the backlog, its clock behind
    until it reaches the end: no device is ever due."""
    w, c = watch(), PartitionClock()
    t = 1000.0
    for d in range(devices):
        w.load(0, f"WLV-{d}", Health(t, ONLINE, t))     # restored from the changelog
    c.fetched(0, lag=1, fetched_at=t + down)           # restarted: behind
    backlog = []
    for gap in gaps * 3:
        t += gap
        backlog += [(t, f"WLV-{d}") for d in range(devices)]
    for at, device in backlog:
        c.read(0, at)
        w.heard(0, device, at)
        assert w.due(0, c.reference(0)) == []
    c.fetched(0, lag=0, fetched_at=t + 1.0)            # caught up, within the limit of the last reading
    assert w.due(0, c.reference(0)) == []


def test_a_device_unknown_when_its_state_was_loaded_is_watched_once_the_registry_knows_it():
    known: set[str] = set()
    w = SilenceWatch(lambda d: LIMIT if d in known else None)
    w.load(0, "WLV-9", Health(100.0))               # restored before the registry arrived
    assert w.due(0, 1000.0) == []
    known.add("WLV-9")
    w.heard(0, "WLV-9", 1000.0)
    assert w.due(0, 1029.0) == [] and w.due(0, 1031.0)[0][0] == "WLV-9"
    assert len(w.heaps[0]) == 0 and w.watched[0] == set()


def test_the_offline_limit_is_the_devices_own_interval_or_its_types_times_offline_after(config):
    from citybrain.domain.device_health import offline_limit
    from citybrain.wire.models import RegistryRecord
    rule = config.sensor_rules["water_level"]
    gauge = RegistryRecord(device_id="WLV-X", kind="sensor", sensor_type="water_level", lon=117.86, lat=36.79)
    assert offline_limit(gauge, config.sensor_rules) == rule.interval_seconds * rule.offline_after
    own = gauge.model_copy(update={"interval_seconds": 5.0})
    assert offline_limit(own, config.sensor_rules) == 5.0 * rule.offline_after
    camera = RegistryRecord(device_id="CAM-X", kind="camera", lon=117.86, lat=36.79)
    assert offline_limit(camera, config.sensor_rules) is None and offline_limit(None, config.sensor_rules) is None
