"""Open311 GeoReport v2, the pure part: lifecycle → open/closed with notes, the POST form,
the list's filters, and the spec's JSON and XML (element names, errors, any text parses)."""

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from citybrain.domain import open311 as spec
from citybrain.domain.open311 import Open311Error
from citybrain.wire.models import WORK_ORDER_STATUSES

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_every_work_order_status_is_open_or_closed():
    assert spec.OPEN_STATUSES | spec.CLOSED_STATUSES == set(WORK_ORDER_STATUSES)
    assert not spec.OPEN_STATUSES & spec.CLOSED_STATUSES
    assert {s: spec.spec_status(s) for s in WORK_ORDER_STATUSES} == {
        "registered": "open", "dispatched": "open", "accepted": "open", "handled": "open",
        "closed": "closed", "cancelled": "closed", "merged": "closed"}
    with pytest.raises(ValueError):
        spec.spec_status("lost")
    assert spec.statuses_for(["open"]) == spec.OPEN_STATUSES
    assert spec.statuses_for(["open", "closed"]) == set(WORK_ORDER_STATUSES)


def test_status_notes_say_it_in_chinese_with_the_code_and_the_latest_step():
    notes = spec.status_notes("dispatched", ("dispatched", "2026-12-04T12:00:00+00:00"), None, "WO-x")
    assert notes == ("已派遣至处置部门 dispatched; 工单 work order WO-x; 最新进展 latest: 派遣 dispatched "
                     "2026-12-04T12:00:00+00:00")
    assert spec.status_notes("merged", None, "WO-b", "WO-a") == "已并入其他工单 merged; 工单 work order WO-a → WO-b"


def snap(status="dispatched", report="R-1", **kw):
    return {"work_order_id": "WO-1", "status": status, "category": "waterlogging", "category_name": "路面积水",
            "description": "积水 138****5678", "address": "周村区青年路88号", "opened_at": "2026-12-04T11:00:00+00:00",
            "created_at": "2026-12-04T11:00:01+00:00", "due_at": "2026-12-04T23:00:01+00:00",
            "location": {"lon": 117.87, "lat": 36.745},
            "events": [{"event_id": "e0", "source": "iot", "occurred_at": "2026-12-04T10:00:00+00:00",
                        "lon": 117.0, "lat": 36.0},
                       {"event_id": "e1", "source": "report", "report_id": report, "lon": 117.8701,
                        "lat": 36.7452, "occurred_at": "2026-12-04T11:00:00.123+08:00",
                        "evidence": ["https://x.example/p.jpg"]}], **kw}


def test_a_request_from_its_order():
    r = spec.request_from_order("R-1", snap(), agency="水务", notice="办理时限 12 小时", latest=("accepted", "t"),
                                updated="2026-12-04T11:30:00+00:00")
    assert r["status"] == "open" and r["agency_responsible"] == "水务"
    assert (r["lat"], r["long"], r["media_url"]) == (36.7452, 117.8701, "https://x.example/p.jpg")
    assert r["requested_datetime"] == "2026-12-04T11:00:00+08:00"        # the report's own time, whole seconds
    assert r["expected_datetime"] == "2026-12-04T23:00:01+00:00"         # the order's due time
    assert r["updated_datetime"] == "2026-12-04T11:30:00+00:00"
    assert (r["service_code"], r["service_name"]) == ("waterlogging", "路面积水")
    assert list(r) == ["service_request_id", "status", "status_notes", "service_name", "service_code",
                       "description", "agency_responsible", "service_notice", "requested_datetime",
                       "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat",
                       "long", "media_url"]                                 # the spec's fields, in its order
    closed = spec.request_from_order("R-1", snap("closed"), agency=None, notice=None, latest=None, updated=None)
    assert (closed["status"], closed["expected_datetime"]) == ("closed", None)


def form(**kw):
    return {"service_code": "waterlogging", "lat": "36.745", "long": "117.87", **kw}


def test_the_post_form():
    p = spec.read_post(form(account_id="u-7", email="a@b.cn", first_name="张", phone="13812345678",
                            description="积水\x00很深"), "R-9")
    assert (p.lat, p.lon, p.reporter, p.phone, p.description) == (36.745, 117.87, "open311:u-7", "13812345678",
                                                                 "积水很深")
    assert not any("a@b.cn" in str(v) or "张" == v for v in vars(p).values())   # email, names: not carried
    assert spec.read_post(form(device_id="d1"), "R-9").reporter == "open311-device:d1"
    assert spec.read_post(form(), "R-9").reporter == "open311-anon:R-9"
    by_address = spec.read_post({"service_code": "road_damage", "address_string": "周村区青年路88号门口"}, "R")
    assert (by_address.lat, by_address.address_string) == (None, "周村区青年路88号门口")


@pytest.mark.parametrize(("fields", "named"), [
    ({"service_code": ""}, "service_code"),
    ({"lat": "north"}, "lat"),
    ({"long": ""}, "long"),
    ({"lat": "", "long": ""}, "lat/long, address_string or address_id"),
    ({"lat": "91"}, "lat"),
    ({"long": "nan"}, "long"),
    ({"description": "x" * 2001}, "description"),
    ({"media_url": "javascript:alert(1)"}, "media_url"),
    ({"phone": "1" * 40}, "phone"),
    ({"email": "e" * 200}, "email"),
])
def test_a_bad_form_is_a_400_naming_the_field(fields, named):
    with pytest.raises(Open311Error) as e:
        spec.read_post(form(**fields), "R-1")
    assert e.value.status == 400 and e.value.description.startswith(named), e.value.description


SERVICES = ["waterlogging", "road_damage"]


def test_the_list_filters():
    got = spec.read_listing({}, SERVICES, NOW)
    assert (got.start, got.end, got.ids) == (NOW - timedelta(days=90), NOW, None)
    got = spec.read_listing({"service_request_id": "R-1, R-2,R-1", "status": "bogus"}, SERVICES, NOW)
    assert got.ids == ("R-1", "R-2")                                     # overrides every other filter
    got = spec.read_listing({"service_code": "waterlogging", "status": "open,closed",
                             "start_date": "2026-11-01T00:00:00Z", "end_date": "2026-11-30T00:00:00+08:00"},
                            SERVICES, NOW)
    assert got.service_codes == {"waterlogging"} and got.statuses == {"open", "closed"}
    assert got.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert spec.read_listing({"start_date": "2026-12-01T00:00:00 08:00"}, SERVICES, NOW).end == NOW   # "+" as " "


@pytest.mark.parametrize(("query", "named"), [
    ({"service_code": "ufo"}, "service_code"), ({"status": "pending"}, "status"),
    ({"start_date": "yesterday"}, "start_date"), ({"end_date": "2026-12-01T00:00:00"}, "end_date"),
    ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}, "start_date, end_date"),
    ({"start_date": "2026-06-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"}, "end_date"),
])
def test_bad_list_filters(query, named):
    with pytest.raises(Open311Error) as e:
        spec.read_listing(query, SERVICES, NOW)
    assert e.value.status == 400 and e.value.description.startswith(named)


def req(rid, at, code="waterlogging", status="open"):
    return {"service_request_id": rid, "requested_datetime": at.isoformat(), "service_code": code,
            "status": status}


def test_select_newest_first_at_most_1000():
    many = [req(f"R-{i}", NOW - timedelta(minutes=i)) for i in range(1200)]
    listing = spec.read_listing({}, SERVICES, NOW)
    got = spec.select(many, listing)
    assert len(got) == 1000 and got[0]["service_request_id"] == "R-0" and got[-1]["service_request_id"] == "R-999"
    old = [req("R-old", NOW - timedelta(days=91)), req("R-closed", NOW, status="closed"),
           req("R-road", NOW, code="road_damage")]
    assert [r["service_request_id"] for r in spec.select(old, listing)] == ["R-road", "R-closed"]
    only = spec.read_listing({"status": "open", "service_code": "road_damage"}, SERVICES, NOW)
    assert [r["service_request_id"] for r in spec.select(old, only)] == ["R-road"]
    ids = spec.read_listing({"service_request_id": "R-road,R-nope,R-old"}, SERVICES, NOW)
    assert [r["service_request_id"] for r in spec.select(old, ids)] == ["R-road", "R-old"]


def test_the_specs_xml_element_names():
    service = spec.service("waterlogging", "路面积水", "水务", "high")
    root = ET.fromstring(spec.to_xml("services", [service]))
    assert root.tag == "services" and [c.tag for c in root] == ["service"]
    assert [c.tag for c in root[0]] == ["service_code", "service_name", "description", "metadata", "type",
                                        "keywords", "group"]
    assert (root[0].findtext("metadata"), root[0].findtext("type")) == ("false", "realtime")
    body = spec.to_xml("service_requests", [{"service_request_id": "R-1", "service_notice": None,
                                             "account_id": None}])
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(body)
    assert (root.tag, root[0].tag, root[0].findtext("service_request_id")) == ("service_requests", "request", "R-1")
    assert root[0].find("account_id") is not None and root[0].findtext("account_id") == ""
    d = ET.fromstring(spec.to_xml("discovery", spec.discovery("http://h/open311/v2", NOW, "c")))
    assert [f.text for f in d.findall("endpoints/endpoint/formats/format")] == ["application/json", "text/xml"]
    definition = ET.fromstring(spec.to_xml("service_definition", spec.service_definition("fire")))
    assert (definition.findtext("service_code"), len(definition.find("attributes"))) == ("fire", 0)


def test_errors_in_the_specs_form():
    e = Open311Error(400, "service_code: required")
    assert orjson.loads(spec.render_errors("json", e.errors())[0]) == [{"code": 400,
                                                                        "description": "service_code: required"}]
    root = ET.fromstring(spec.render_errors("xml", e.errors())[0])
    assert root.tag == "errors" and root[0].tag == "error"
    assert (root[0].findtext("code"), root[0].findtext("description")) == ("400", "service_code: required")


@given(st.text(max_size=200), st.one_of(st.none(), st.floats(allow_nan=False), st.booleans(), st.integers()))
def test_any_text_renders_as_xml_that_parses(text, value):
    body = spec.to_xml("service_requests", [{"description": text, "lat": value}])
    got = ET.fromstring(body)[0]
    kept = got.findtext("description")
    # Text comes back as given, less what XML 1.0 cannot hold (and the parser's newline folding).
    expected = spec._NOT_XML.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    assert kept == expected
    if value is None:
        assert got.findtext("lat") == ""
    elif isinstance(value, bool):
        assert got.findtext("lat") == ("true" if value else "false")
    elif isinstance(value, int):
        assert int(got.findtext("lat")) == value
    else:
        assert float(got.findtext("lat")) == value
    assert orjson.loads(spec.render("json", "service_requests", [{"description": text}])[0])[0]["description"] == text


FIELDS = ["service_code", "lat", "long", "address_string", "address_id", "description", "media_url", "phone",
          "email", "first_name", "last_name", "account_id", "device_id"]


@given(st.dictionaries(st.sampled_from(FIELDS), st.one_of(st.text(max_size=60), st.sampled_from(
    ["36.7", "-91", "1e400", "nan", "117.87", "https://x.example/a.jpg", " ", "x" * 2100]))))
def test_any_form_is_read_or_refused_with_a_400(fields):
    try:
        p = spec.read_post(fields, "R-1")
    except Open311Error as e:
        assert e.status == 400 and e.description.split(":")[0]
        return
    assert p.service_code and (p.lat is not None or p.address_string or p.address_id)
    assert (p.lat is None) == (p.lon is None) and len(p.description) <= spec.MAX_DESCRIPTION
    assert p.reporter.startswith(("open311:", "open311-device:", "open311-anon:"))
