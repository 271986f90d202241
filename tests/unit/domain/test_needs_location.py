"""Reports by address in the pipeline (DESIGN §14): the normaliser locates an address through
the gazetteer; one it cannot locate becomes an event flagged needs_location at a placeholder,
which fuses with nothing, and whose order stays registered for triage."""

import time
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest

from citybrain.domain.fusion import FusionEvent, FusionIndex, OpenOrder, open_entry
from citybrain.domain.normalize import IngestLimits, Normalizer, RecordMeta
from citybrain.domain.routing import Route
from citybrain.domain.workorder import open_order
from citybrain_tools.simulate.traffic import iso

NOW = time.time()


@pytest.fixture(scope="module")
def by_address(config, registry):
    return Normalizer(taxonomy=config.taxonomy, sensor_rules=config.sensor_rules,
                      video_thresholds=config.video_thresholds, city=config.city_map, registry=registry.get,
                      limits=IngestLimits(65536, 300), gazetteer=config.gazetteer)


def report(rid, address, **over):
    body = {"report_id": rid, "reporter_id": "op-1", "channel": "hotline_12345", "category": "road_damage",
            "ts": iso(NOW - 60), "address": address, "contact_phone": "13812345678", **over}
    return orjson.dumps(body)


def normalise(n, raw):
    return n.report(raw, RecordMeta("ingest.reports", 0, 1, NOW, b"op-1"))


def test_an_address_is_located_by_the_gazetteer(by_address):
    ev = normalise(by_address, report("R-1", "周村区青年路88号门口")).event
    assert not ev.needs_location and ev.location.street_code == "370306003"
    assert (ev.location.lon, ev.location.lat) == pytest.approx((117.870, 36.745))
    assert ev.address == "周村区青年路88号门口" and ev.contact_phone == "138****5678"


def test_an_address_that_cannot_be_located_waits_in_triage_at_a_placeholder(by_address, config):
    ev = normalise(by_address, report("R-2", "周村区某小区门口")).event
    assert ev.needs_location and ev.location.district_code == "370306"          # the district it names
    nowhere = normalise(by_address, report("R-3", "火星路1号")).event
    assert nowhere.needs_location and nowhere.location.district_code == min(config.city_map.district_names)
    # A point given wins over the address; without a gazetteer an address alone is missing_location.
    own = normalise(by_address, report("R-4", "火星路1号", lon=117.935, lat=36.79)).event
    assert not own.needs_location and own.location.street_code == "370306001"
    plain = Normalizer(taxonomy=config.taxonomy, sensor_rules=config.sensor_rules,
                       video_thresholds=config.video_thresholds, city=config.city_map, registry=lambda d: None)
    dead = normalise(plain, report("R-5", "周村区青年路88号门口"))
    assert (dead.outcome, dead.reason, dead.dead.field) == ("deadletter", "missing_location", "lon")
    # Half a point is not a point.
    half = normalise(by_address, report("R-6", "周村区青年路88号门口", lon=117.87))
    assert (half.reason, half.dead.field) == ("missing_location", "lon")


def test_a_needs_location_event_fuses_with_nothing_and_nothing_joins_it(by_address, config):
    index = FusionIndex()
    first = FusionEvent.of(normalise(by_address, report("R-7", "周村区某处")).event)
    assert first.alone
    opened = index.fuse(first, config.router)
    # Another report at the very same placeholder point: not the same incident.
    near = replace(first, event_id="ev-near", alone=False)
    again = replace(first, event_id="ev-again")
    assert index.fuse(near, config.router).action == "open"
    assert index.fuse(again, config.router).action == "open"
    assert len({opened.work_order_id, index.fuse(first, config.router).work_order_id}) == 1   # a replay: duplicate
    # The flag survives the state's round trip and a rebuild from the snapshot.
    entry = index.orders[opened.work_order_id]
    assert OpenOrder.from_dict(entry.to_dict()).alone and "a" not in index.orders[
        index.fuse(replace(near, event_id="ev-x"), config.router).work_order_id].to_dict()


def test_its_order_is_registered_for_triage_flagged_needs_location(by_address, config):
    ev = normalise(by_address, report("R-8", "周村区某处")).event
    route = Route(None, "normal", "needs_location")   # what the fuse stage routes it to
    [created] = open_order("WO-road-x", "road", ev, route, datetime.now(UTC), config.deadlines)
    snap = created.snapshot
    assert (snap.status, snap.department, snap.route_rule, snap.needs_location) == (
        "registered", None, "needs_location", True)
    assert snap.address == "周村区某处" and snap.reporter_contact == "138****5678"
    assert open_entry(snap).alone
