"""GET /api/v1/warnings' answer (web/warnings.py): the warnings holding now as GeoJSON
features, the strongest first, each with its whole area; unknown parameters refused."""

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from shapely.geometry import Point, shape

from citybrain.domain.area_warnings import AreaShapes, WarningBook, read_warning_record
from citybrain.web.auth import Refused
from citybrain.web.warnings import WarningLayer

NOW = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)


def record(wid, level, area, hours=(-1, 3)):
    return orjson.dumps({"warning_id": wid, "issuer": "淄博市气象台", "kind": "rainstorm", "level": level, "area": area,
                         "valid_from": (NOW + timedelta(hours=hours[0])).isoformat(),
                         "valid_to": (NOW + timedelta(hours=hours[1])).isoformat(), "ts": NOW.isoformat()})


def test_the_layer_lists_holding_warnings_with_their_areas(config):
    shapes = AreaShapes(config.city_map)
    book = WarningBook(config.warnings)
    for wid, level, area, hours in (("W-Y", "yellow", {"street_codes": ["370302001"]}, (-1, 3)),
                                    ("W-R", "red", {"district_codes": ["370306"]}, (-1, 3)),
                                    ("W-OLD", "red", {"district_codes": ["370303"]}, (-5, -1))):
        book.apply(read_warning_record(wid.encode(), record(wid, level, area, hours), 65536, shapes))
    body = WarningLayer(book, shapes).answer({}, NOW.timestamp())
    assert body["type"] == "FeatureCollection" and body["total"] == 2
    assert [f["id"] for f in body["features"]] == ["W-R", "W-Y"]          # the strongest first; W-OLD ended
    red = body["features"][0]
    assert (red["properties"]["level_zh"], red["properties"]["kind_zh"]) == ("红色", "暴雨")
    assert "waterlogging" in red["properties"]["categories"]
    area = shape(red["geometry"])
    assert area.covers(Point(117.90989, 36.77375)) and not area.covers(Point(117.755, 36.605))
    assert shape(body["features"][1]["geometry"]).covers(Point(117.755, 36.605))


def test_unknown_parameters_are_refused_naming_them(config):
    with pytest.raises(Refused) as e:
        WarningLayer.empty(config).answer({"district": "370306"}, NOW.timestamp())
    assert (e.value.status, e.value.field) == (400, "district")
