"""完好率 and 联网率, the one definition (DESIGN §15, domain/device_health.py): the API,
the console, the metrics and `citybrain kpis` all call ``device_rates``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from citybrain.domain.device_health import (
    FAULT,
    OFFLINE,
    ONLINE,
    Liveness,
    Registered,
    SilenceWatch,
    device_rates,
    liveness_record,
    networked_state,
)

KINDS, DISTRICTS, OWNERS = ("sensor", "camera"), ("370306", "370302", ""), ("gas_utility", "water", "")

devices = st.lists(st.builds(Registered, st.text("ABCDEFG", min_size=1, max_size=3), st.sampled_from(KINDS),
                             st.sampled_from(DISTRICTS), st.sampled_from(OWNERS)), max_size=40)
ids = st.sets(st.text("ABCDEFGH", min_size=1, max_size=3), max_size=30)


@given(devices, ids, ids)
def test_rates_lie_between_0_and_1_and_counts_never_exceed_registered(registered, faulty, networked):
    rates = device_rates(registered, faulty, networked)
    total = len({d.device_id for d in registered})
    for group in ("owner", "district", "kind_district"):
        rows = rates[group]
        assert rows["*"]["registered"] == total
        assert sum(r["registered"] for k, r in rows.items() if k != "*") == total
        for row in rows.values():
            assert 0 <= row["in_service"] <= row["registered"]
            assert 0 <= row["networked"] <= row["registered"]
            assert row["in_service"] + row["faulty"] == row["registered"]
            for rate in ("intact_rate", "networked_rate"):
                if row["registered"]:
                    assert 0 <= row[rate] <= 1
                else:
                    assert row[rate] is None


def test_a_fault_lowers_intact_and_silence_lowers_networked_by_kind_and_district():
    reg = [Registered("S1", "sensor", "370306", "gas_utility"), Registered("S2", "sensor", "370306", "gas_utility"),
           Registered("C1", "camera", "370302", ""), Registered("C2", "camera", "370302", "")]
    rates = device_rates(reg, faulty={"S1", "NOT-REGISTERED"}, networked={"S1", "S2", "C1", "GHOST"})
    assert rates["kind_district"]["sensor@370306"] == {
        "kind": "sensor", "district": "370306", "registered": 2, "in_service": 1, "faulty": 1, "networked": 2,
        "intact_rate": 0.5, "networked_rate": 1.0}
    assert rates["kind_district"]["camera@370302"]["networked_rate"] == 0.5
    assert rates["owner"]["unowned/camera"]["intact_rate"] == 1.0
    assert rates["district"]["370306"]["intact_rate"] == 0.5
    assert rates["owner"]["*"] == {"owner": "*", "kind": "*", "registered": 4, "in_service": 3, "faulty": 1,
                                        "networked": 3, "intact_rate": 0.75, "networked_rate": 0.75}
    assert device_rates([], set(), set())["district"]["*"]["intact_rate"] is None


def test_a_camera_heard_by_its_status_or_by_an_alert_counts_as_networked():
    watch = SilenceWatch(lambda device_id: None)     # cameras are not watched for silence
    h, _ = watch.heard(0, "CAM-ALERT", 100.0)        # an alert read
    assert networked_state(h.state)
    watch.status(0, "CAM-STATUS", ONLINE, 100.0)     # its platform says online
    assert networked_state(watch.health[0]["CAM-STATUS"].state)
    watch.status(0, "CAM-DOWN", OFFLINE, 100.0)
    watch.status(0, "CAM-BROKEN", FAULT, 100.0)
    watch.heard(0, "CAM-DOWN", 101.0)                # an alert does not overrule the platform's offline
    live = Liveness()
    for device, health in watch.health[0].items():
        live.add(liveness_record(device, networked_state(health.state), health.heard))
    assert live.heard() == {"CAM-ALERT", "CAM-STATUS"}
    reg = [Registered(d, "camera", "370306", "") for d in ("CAM-ALERT", "CAM-STATUS", "CAM-DOWN", "CAM-BROKEN")]
    assert device_rates(reg, set(), live.heard())["kind_district"]["camera@370306"]["networked_rate"] == 0.5
    live.forget("CAM-ALERT")                        # a tombstone
    assert live.heard() == {"CAM-STATUS"}


def test_a_silent_sensor_is_no_longer_networked():
    watch = SilenceWatch(lambda device_id: 30.0)
    watch.heard(0, "S1", 0.0)
    watch.heard(0, "S2", 0.0)
    watch.heard(0, "S2", 25.0)
    gone = watch.due(0, 40.0)
    assert [d for d, _ in gone] == ["S1"]
    heard = {d for d, h in watch.health[0].items() if networked_state(h.state)}
    reg = [Registered(d, "sensor", "370306", "") for d in ("S1", "S2")]
    assert device_rates(reg, set(), heard)["owner"]["*"]["networked_rate"] == 0.5
