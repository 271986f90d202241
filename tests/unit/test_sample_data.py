"""The shipped SAMPLE data is what the builders make, and meets the issue's floor."""

import json
from collections import Counter

from shapely.geometry import shape

from citybrain_tools.sample import city_builder, registry_builder


def test_registry_file_is_the_builders_output(config):
    assert registry_builder.load(config.registry_path) == [
        json.loads(json.dumps(r, sort_keys=True)) for r in registry_builder.build()]


def test_registry_covers_every_sensor_type_and_enough_devices(config):
    records = registry_builder.load(config.registry_path)
    kinds = Counter(r["kind"] for r in records)
    assert kinds["sensor"] >= 2000 and kinds["camera"] >= 200
    types = {r["sensor_type"] for r in records if r["kind"] == "sensor"}
    assert types == set(config.sensor_rules)
    assert len({r["device_id"] for r in records}) == len(records)
    for r in records:
        assert config.city_map.locate(r["lon"], r["lat"]) is not None, r["device_id"]


def test_city_file_is_the_builders_output(config):
    shipped = json.loads((config.directory / config.settings.city.geography).read_text())
    built = city_builder.build()
    assert [f["properties"] for f in shipped["features"]] == [f["properties"] for f in built["features"]]
    for a, b in zip(shipped["features"], built["features"], strict=True):
        assert abs(shape(a["geometry"]).area - shape(b["geometry"]).area) < 1e-9
    assert shipped["sample_data"] is True
    assert len({c["community_code"] for c in shipped["communities"] if c["street_code"].startswith("370306")}) == 36
    assert {f["properties"]["district_code"] for f in shipped["features"]} == {"370306", "370302", "370303", "370321"}
