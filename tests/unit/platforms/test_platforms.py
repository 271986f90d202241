"""Platform adapters (docs/integration.md), the pure parts: external_ref from a report to its
order, which changes go out, the payload, the signature, dedupe and the configuration."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from citybrain.domain.fusion import work_order_id_for
from citybrain.domain.normalize import RecordMeta
from citybrain.domain.workorder import attach, open_order
from citybrain.platforms.callbacks import callback_id, callbacks_for, public_change, sign, verify
from citybrain.platforms.service import CallbackBook, CallbackRecord
from citybrain.platforms.settings import PUBLIC_CHANGES, PlatformsConfig
from citybrain.wire.models import Actor, IncidentReport, WorkOrderChange
from citybrain_tools.simulate.traffic import iso

NOW = datetime.fromtimestamp(1_800_000_000, UTC)
HOTLINE = {"system": "12345", "id": "HL-20261204-0001"}


def platforms(**over) -> PlatformsConfig:
    p = {"name": "hotline", "system": "12345", "url": "http://127.0.0.1:9/cb", "secret_env": "HL_SECRET", **over}
    return PlatformsConfig.model_validate({"platform": [p]})


def report_event(normalizer, rid="R-1", external_ref=None, lon=117.8626, lat=36.7934):
    doc = {"report_id": rid, "reporter_id": "GW-1", "category": "waterlogging", "ts": iso(time.time() - 30),
           "lon": lon, "lat": lat, "description": "积水", "channel": "hotline_12345"}
    if external_ref:
        doc["external_ref"] = external_ref
    return normalizer.report(orjson.dumps(doc), RecordMeta("ingest.reports", 0, 1, time.time(), b"GW-1")).event


def opened(normalizer, config, ev):
    route = config.router.route(ev.category, (ev.location.grid_code, ev.location.street_code))
    return open_order(work_order_id_for("flooding", ev.event_id), "flooding", ev, route, NOW, config.deadlines)


def step(change: WorkOrderChange, kind: str, **update) -> WorkOrderChange:
    snap = change.snapshot.model_copy(update={"version": change.version + 1, **update})
    return WorkOrderChange(work_order_id=snap.work_order_id, version=snap.version, type=kind, at=NOW,
                           actor=Actor(id="x", role="operator"), snapshot=snap)


def test_external_ref_travels_from_the_report_to_the_event_and_the_order(normalizer, config):
    assert IncidentReport.model_validate({"report_id": "R", "reporter_id": "G", "category": "waterlogging",
                                          "ts": "2026-12-04T10:00:00+08:00", "lon": 1, "lat": 1,
                                          "external_ref": HOTLINE}).external_ref.id == HOTLINE["id"]
    with pytest.raises(ValidationError):   # the ref itself is strict
        IncidentReport.model_validate({"report_id": "R", "reporter_id": "G", "category": "x",
                                       "ts": "2026-12-04T10:00:00+08:00", "external_ref": {"system": "12345"}})
    ev = report_event(normalizer, external_ref=HOTLINE)
    assert ev.external_ref is not None and (ev.external_ref.system, ev.external_ref.id) == ("12345", HOTLINE["id"])
    assert "external_ref" not in ev.source_ref.extra
    created, dispatched = opened(normalizer, config, ev)
    assert [r.model_dump() for r in dispatched.snapshot.external_refs] == [{**HOTLINE, "report_id": "R-1"}]
    # a second platform's case on the same incident joins the order; the same case again does not
    other = report_event(normalizer, rid="R-2", external_ref={"system": "szcg", "id": "SZ-9"})
    joined = attach(dispatched.snapshot, other, NOW)
    assert [(r.system, r.id, r.report_id) for r in joined.snapshot.external_refs] == [
        ("12345", HOTLINE["id"], "R-1"), ("szcg", "SZ-9", "R-2")]
    again = attach(joined.snapshot, report_event(normalizer, rid="R-3", external_ref=HOTLINE), NOW)
    assert len(again.snapshot.external_refs) == 2
    plain = report_event(normalizer, rid="R-4")
    assert plain.external_ref is None and opened(normalizer, config, plain)[0].snapshot.external_refs == []


def test_which_changes_are_public(normalizer, config):
    created, dispatched = opened(normalizer, config, report_event(normalizer, external_ref=HOTLINE))
    assert public_change(created) == "registered" and public_change(dispatched) == "dispatched"
    assert public_change(step(dispatched, "accepted", status="accepted")) == "accepted"
    assert public_change(step(dispatched, "verified", status="closed")) == "closed"
    assert public_change(step(dispatched, "cancelled", status="cancelled")) == "cancelled"
    assert public_change(step(dispatched, "merged", status="merged", merged_into="WO-x")) == "merged"
    for internal in ("commented", "extended", "supervised", "escalated", "assist_added", "visited",
                     "recategorised", "reprioritised", "returned", "evidence_added"):
        assert public_change(step(dispatched, internal)) is None, internal


def test_callbacks_payload_signature_and_id(normalizer, config, monkeypatch):
    created, dispatched = opened(normalizer, config, report_event(normalizer, external_ref=HOTLINE))
    ps = platforms(changes=["registered", "dispatched", "closed"]).by_system()
    calls, unknown = callbacks_for(dispatched, ps)
    assert unknown == [] and len(calls) == 1
    cb = calls[0]
    assert cb.callback_id == callback_id("12345", HOTLINE["id"], dispatched.work_order_id, 2)
    body = orjson.loads(cb.body)
    assert body["callback_id"] == cb.callback_id and body["external_id"] == HOTLINE["id"]
    assert (body["system"], body["change"], body["change_name"], body["status"], body["version"]) == (
        "12345", "dispatched", "派遣", "dispatched", 2)
    assert body["department"] == "water" and body["work_order_id"] == dispatched.work_order_id
    assert body["report_id"] == "R-1" and body["due_at"] == dispatched.snapshot.due_at.isoformat()
    # nothing personal: no reporter, contact, description, notes or address
    assert not {"reporter_id", "reporter_contact", "description", "notes", "address"} & set(body)
    # the signature: sha256=<hex HMAC-SHA256 of the body>
    sig = sign(b"k", cb.body)
    assert sig.startswith("sha256=") and verify(b"k", cb.body, sig) and not verify(b"other", cb.body, sig)
    assert not verify(b"k", cb.body + b" ", sig)
    # not configured for this platform: accepted (v3) goes nowhere
    assert callbacks_for(step(dispatched, "accepted", status="accepted"), ps)[0] == []
    # a case of a system no platform is configured for: counted, not called
    assert callbacks_for(dispatched, PlatformsConfig().by_system()) == ([], ["12345"])
    # an order without cases: nothing
    plain = opened(normalizer, config, report_event(normalizer, rid="R-9"))[1]
    assert callbacks_for(plain, ps) == ([], [])


def test_a_case_joining_an_existing_order_hears_registered(normalizer, config):
    _, dispatched = opened(normalizer, config, report_event(normalizer))
    joined = attach(dispatched.snapshot, report_event(normalizer, rid="R-2", external_ref=HOTLINE), NOW)
    calls, _ = callbacks_for(joined, platforms().by_system())
    assert [(c.change, c.external_id, c.version) for c in calls] == [("registered", HOTLINE["id"], 3)]
    assert orjson.loads(calls[0].body)["status"] == "dispatched"
    # later evidence on the same order is internal for the case already there
    later = attach(joined.snapshot, report_event(normalizer, rid="R-3"), NOW)
    assert callbacks_for(later, platforms().by_system()) == ([], [])


def test_dedupe_by_system_case_order_and_version():
    a = callback_id("12345", "HL-1", "WO-1", 2)
    assert a == callback_id("12345", "HL-1", "WO-1", 2)
    assert len({a, callback_id("12345", "HL-1", "WO-1", 3), callback_id("12345", "HL-2", "WO-1", 2),
                callback_id("szcg", "HL-1", "WO-1", 2), callback_id("12345", "HL-1", "WO-2", 2)}) == 5
    book = CallbackBook()

    def rec(status):
        return CallbackRecord(callback_id=a, platform="hotline", system="12345", external_id="HL-1",
                              work_order_id="WO-1", version=2, change="dispatched", status=status, at=NOW)
    book.apply(rec("queued"))
    assert not book.done(a)          # stopped before the outcome: tried again
    book.apply(rec("sent"))
    assert book.done(a)
    book.apply(rec("queued"))        # a stale record read back: a done callback stays done
    assert book.done(a) and book.records[a].status == "sent"


def test_configuration_is_validated(monkeypatch):
    cfg = platforms()
    p = cfg.platform[0]
    assert p.changes == list(PUBLIC_CHANGES) and p.retry.attempts == 5
    monkeypatch.setenv("HL_SECRET", "s3")
    assert p.key() == b"s3"
    assert [p.retry.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert platforms(retry={"backoff_seconds": 50}).platform[0].retry.delay(3) == 60.0
    for bad in ({"changes": ["commented"]}, {"url": "ftp://x"}, {"secret": "inline"}, {"system": "a b"},
                {"retry": {"attempts": 0}}):
        with pytest.raises(ValidationError):
            platforms(**bad)
    with pytest.raises(ValidationError, match="more than once"):
        PlatformsConfig.model_validate({"platform": [
            {"name": "a", "system": "12345", "url": "http://x/", "secret_env": "A"},
            {"name": "b", "system": "12345", "url": "http://y/", "secret_env": "B"}]})


def test_the_shipped_platforms_file_loads(config):
    from citybrain.platforms.settings import platforms_path
    cfg = PlatformsConfig.load(platforms_path(config.directory))
    assert {p.system for p in cfg.platform} >= {"12345"}
    assert all(p.url.startswith("http") for p in cfg.platform)


def test_an_open311_post_may_carry_the_case_as_attributes():
    from citybrain.domain import open311 as spec
    base = {"service_code": "waterlogging", "lat": "36.79", "long": "117.86"}
    posted = spec.read_post({**base, "attribute[external_system]": "szcg",
                             "attribute[external_id]": "SZ-2026-1"}, "R-1")
    assert posted.external_ref == ("szcg", "SZ-2026-1")
    assert spec.read_post(base, "R-1").external_ref is None
    for bad, field in (({"attribute[external_system]": "szcg"}, "attribute[external_id]"),
                       ({"attribute[external_id]": "SZ-1"}, "attribute[external_system]"),
                       ({"attribute[external_system]": "数字 城管", "attribute[external_id]": "1"},
                        "attribute[external_system]")):
        with pytest.raises(spec.Open311Error) as e:
            spec.read_post({**base, **bad}, "R-1")
        assert e.value.status == 400 and e.value.description.startswith(field)


def test_cases_follow_their_reports_through_merge_and_split():
    from citybrain.domain.lifecycle import absorb
    from citybrain.wire.models import OrderExternalRef
    from tests.unit.domain.test_operator_commands import EventRef, cmd, ok, order, report
    ps = platforms().by_system()
    hl = OrderExternalRef(system="12345", id="HL-1", report_id="R-1")
    survivor = order("WO-flooding-b", events=[report(7)])
    dup = order(events=[report(1), report(2)]).model_copy(update={"external_refs": [hl]})
    c = cmd("merge", into=survivor.work_order_id, note="同一积水点")
    merged = ok(dup, c).change
    assert merged.snapshot.external_refs == [hl]           # the duplicate tells its case: merged
    calls, _ = callbacks_for(merged, ps)
    assert [(x.change, orjson.loads(x.body)["merged_into"]) for x in calls] == [("merged", survivor.work_order_id)]
    absorbed = absorb(survivor, dup, c, NOW)
    assert absorbed.snapshot.external_refs == [hl]          # later changes come from the survivor
    assert [x.change for x in callbacks_for(absorbed, ps)[0]] == ["registered"]
    # split: the case moves with its report
    far = EventRef(event_id="ev-far", source="report", kind="report", category="waterlogging", occurred_at=NOW,
                   finder="GM-9", lon=117.87, lat=36.80, report_id="R-9", evidence=["https://p/9a.jpg"])
    sz = OrderExternalRef(system="szcg", id="SZ-9", report_id="R-9")
    o = order(events=[report(1), far]).model_copy(update={"external_refs": [hl, sz]})
    out = ok(o, cmd("split", evidence=["R-9"], note="另一处"))
    assert out.change.snapshot.external_refs == [hl]
    assert all(ch.snapshot.external_refs == [sz] for ch in out.opened)


class _Sent:
    def __init__(self):
        self.records: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic, value, key=None):
        self.records.append((topic, key, value))

        async def done():
            return None
        return done()


async def test_the_relay_retries_gives_up_on_a_refusal_and_dead_letters(normalizer, config, monkeypatch):
    from citybrain.kafka.topics import Topics
    from citybrain.platforms.service import CallbackFailed, PlatformRelay, callbacks_topic

    monkeypatch.setenv("HL_SECRET", "k")
    topics = Topics("t.")
    relay = PlatformRelay("unused:9092", topics, platforms(retry={"attempts": 3, "backoff_seconds": 0}))
    relay.producer = _Sent()
    _, dispatched = opened(normalizer, config, report_event(normalizer, external_ref=HOTLINE))
    cb = callbacks_for(dispatched, relay.platforms)[0][0]
    answers = [CallbackFailed("HTTP 503 busy"), "HTTP 200"]
    tries: list[str] = []

    async def post(platform, callback):
        tries.append(callback.callback_id)
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a
    monkeypatch.setattr(relay, "post", post)
    await relay.deliver(cb)
    await relay.deliver(cb)                                   # redelivered: done, not called again
    assert len(tries) == 2 and relay.book.records[cb.callback_id].status == "sent"
    states = [orjson.loads(v)["status"] for t, _, v in relay.producer.records if t == callbacks_topic(topics)]
    assert states == ["queued", "retrying", "sent"]

    # a 4xx refusal is final at once: failed, and deadletter with the reason
    relay.producer = _Sent()
    closed = step(dispatched, "verified", status="closed", closed_at=NOW)
    cb2 = callbacks_for(closed, relay.platforms)[0][0]
    answers[:] = [CallbackFailed("HTTP 400 unknown case", final=True)]
    await relay.deliver(cb2)
    assert len(tries) == 3 and relay.book.done(cb2.callback_id)
    dead = [orjson.loads(v) for t, _, v in relay.producer.records if t == topics.deadletter]
    assert len(dead) == 1 and dead[0]["reason"] == "callback_failed" and dead[0]["source"] == "callback"
    assert "HTTP 400 unknown case" in dead[0]["detail"] and "after 1 attempt:" in dead[0]["detail"]
