"""The notifier's pure parts: the roster and its duty hours, the rules, the delivery book."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from citybrain.notify.channels import sign, verify
from citybrain.notify.deliveries import DeliveryBook, DeliveryRecord
from citybrain.notify.roster import (
    MINUTES_A_DAY,
    MINUTES_A_WEEK,
    WEEKDAYS,
    Duty,
    ReloadingRoster,
    Roster,
    RosterFile,
)
from citybrain.notify.rules import Rules, delivery_id
from citybrain.notify.settings import NotifySettings
from citybrain.paths import PROJECT_ROOT

CST_OFFSET = timedelta(hours=8)


def cst(y, m, d, hh, mm=0) -> datetime:
    """An instant given in Beijing time."""
    return datetime(y, m, d, hh, mm, tzinfo=UTC) - CST_OFFSET


ROSTER = RosterFile.model_validate({
    "person": [
        {"id": "w-day", "name": "水务日班", "phone": "13800000001", "email": "wday@x.example.invalid"},
        {"id": "w-night", "name": "水务夜班", "email": "wnight@x.example.invalid",
         "webhook": "https://h.example.invalid/w"},
        {"id": "w-grid", "name": "水务网格", "email": "wgrid@x.example.invalid"},
        {"id": "w-spare", "name": "水务备班", "email": "wspare@x.example.invalid"},
        {"id": "em", "name": "应急", "phone": "13800000005"},
        {"id": "sup-d", "name": "区督办", "email": "supd@x.example.invalid"},
    ],
    "duty": [
        {"person": "w-day", "desk": "water", "days": ["mon", "tue", "wed", "thu", "fri"],
         "start": "08:00", "end": "20:00"},
        {"person": "w-night", "desk": "water", "days": ["mon", "tue", "wed", "thu", "fri"],
         "start": "20:00", "end": "08:00"},
        {"person": "w-grid", "desk": "water", "grid_prefix": "370303", "start": "00:00", "end": "00:00"},
        {"person": "w-spare", "desk": "water", "days": ["sun"], "start": "09:00", "end": "10:00"},
        {"person": "em", "desk": "emergency"},
        {"person": "sup-d", "desk": "supervision.district", "days": ["mon"], "start": "09:00", "end": "10:00"},
    ],
    "reporter": [{"reporter_id": "GRID-1", "email": "g1@x.example.invalid"}],
})


def test_the_sample_roster_loads_with_the_city_desks():
    from citybrain.config import Config
    cfg = Config()
    roster = Roster.load(PROJECT_ROOT / "config" / "roster.toml", set(cfg.desks))
    assert roster.file.sample_data
    for dept in cfg.taxonomy.departments:
        assert roster.everyone_at(dept.code), f"nobody on the roster for {dept.code}"
    for level in ("street", "district", "city"):
        assert roster.everyone_at(f"supervision.{level}")
    assert roster.everyone_at("emergency")
    # every weekday hour a water person is on duty
    for h in range(0, 24 * 7):
        assert roster.on_duty("water", cst(2026, 12, 7, 0) + timedelta(hours=h)), h


@pytest.mark.parametrize("bad, words", [
    ({"person": [{"id": "a", "name": "A"}]}, "at least one"),
    ({"person": [{"id": "a", "name": "A", "email": "a@b.example", "channels": ["sms"]}]}, "needs phone"),
    ({"person": [{"id": "a", "name": "A", "email": "a@b.example"}] * 2}, "twice"),
    ({"duty": [{"person": "nobody", "desk": "water"}]}, "unknown person"),
    ({"person": [{"id": "a", "name": "A", "email": "a@b.example"}],
      "duty": [{"person": "a", "desk": "water", "start": "25:00"}]}, "HH:MM"),
    ({"person": [{"id": "a", "name": "A", "email": "a@b.example"}],
      "duty": [{"person": "a", "desk": "Water!"}]}, "pattern"),
    ({"person": [{"id": "a", "name": "A", "email": "a@b.example", "pager": "1"}]}, "Extra inputs"),
])
def test_a_wrong_roster_is_refused(bad, words):
    with pytest.raises(ValidationError, match=words):
        RosterFile.model_validate(bad)


def test_a_duty_at_an_unknown_desk_is_refused(tmp_path):
    p = tmp_path / "roster.toml"
    p.write_text('[[person]]\nid = "a"\nname = "A"\nemail = "a@b.example"\n'
                 '[[duty]]\nperson = "a"\ndesk = "plumbing"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown desk"):
        Roster.load(p, {"water"})


def test_on_duty_day_night_and_across_midnight():
    r = Roster(ROSTER)
    names = lambda at, grid=None: [p.id for p in r.on_duty("water", at, grid)]  # noqa: E731
    # 2026-12-07 is a Monday
    assert names(cst(2026, 12, 7, 10)) == ["w-day"]
    assert names(cst(2026, 12, 7, 21)) == ["w-night"]
    assert names(cst(2026, 12, 8, 3)) == ["w-night"]         # Monday's night shift, Tuesday 03:00
    assert names(cst(2026, 12, 7, 3)) == []                   # Sunday had no night shift
    assert names(cst(2026, 12, 12, 7, 59)) == ["w-night"]     # Friday's night reaches Saturday 07:59
    assert names(cst(2026, 12, 12, 8, 0)) == []               # … and ends at 08:00
    assert names(cst(2026, 12, 7, 10), "370303001002003") == ["w-day", "w-grid"]   # the grid's own person
    assert names(cst(2026, 12, 13, 9, 30)) == ["w-spare"]


HHMM = st.integers(0, MINUTES_A_DAY - 1).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")


@given(duties=st.lists(st.tuples(st.lists(st.sampled_from(WEEKDAYS), min_size=1, unique=True), HHMM, HHMM),
                       min_size=1, max_size=5),
       minute_of_week=st.integers(0, MINUTES_A_WEEK - 1))
def test_exactly_the_people_on_duty(duties, minute_of_week):
    """Against an independent oracle: each shift is the interval [day start + start, + length) on a
    week-long circle; at any minute exactly the people whose interval holds it are on duty."""
    roster = Roster(RosterFile.model_validate({
        "person": [{"id": f"p{i}", "name": f"P{i}", "email": f"p{i}@x.example"} for i in range(len(duties))],
        "duty": [{"person": f"p{i}", "desk": "water", "days": days, "start": s, "end": e}
                 for i, (days, s, e) in enumerate(duties)]}))
    monday = cst(2026, 12, 7, 0)
    at = monday + timedelta(minutes=minute_of_week)
    expected = set()
    for i, (days, s, e) in enumerate(duties):
        start = int(s[:2]) * 60 + int(s[3:])
        end = int(e[:2]) * 60 + int(e[3:])
        length = end - start if end > start else end - start + MINUTES_A_DAY
        for d in days:
            begin = WEEKDAYS.index(d) * MINUTES_A_DAY + start
            if (minute_of_week - begin) % MINUTES_A_WEEK < length:
                expected.add(f"p{i}")
    assert {p.id for p in roster.on_duty("water", at)} == expected


def test_a_duty_of_the_whole_day_and_its_length():
    assert Duty(person="a", desk="water").length_minutes == MINUTES_A_DAY
    assert Duty(person="a", desk="water", start="22:00", end="06:00").length_minutes == 8 * 60


def test_the_roster_reloads_when_its_file_changes_and_keeps_the_last_good_one(tmp_path):
    p = tmp_path / "roster.toml"
    p.write_text('[[person]]\nid = "a"\nname = "A"\nemail = "a@b.example"\n'
                 '[[duty]]\nperson = "a"\ndesk = "water"\n', encoding="utf-8")
    rr = ReloadingRoster(p, {"water"}, every=0)
    assert [x.id for x in rr.current().everyone_at("water")] == ["a"]
    p.write_text('[[person]]\nid = "b"\nname = "B"\nemail = "b@b.example"\n'
                 '[[duty]]\nperson = "b"\ndesk = "water"\n', encoding="utf-8")
    assert [x.id for x in rr.current().everyone_at("water")] == ["b"]
    p.write_text('[[person]]\nid = "c"\n', encoding="utf-8")   # invalid: kept b
    assert [x.id for x in rr.current().everyone_at("water")] == ["b"]
    assert rr.reloads == 1


def change(type_="dispatched", priority="normal", grid="370302001001001", version=3, **extra):
    return {"work_order_id": "WO-g-1", "version": version, "type": type_, "at": "2026-12-07T02:00:00Z",
            "actor": {"id": "system", "role": "system"},
            "snapshot": {"work_order_id": "WO-g-1", "version": version, "category": "road_ponding",
                         "category_name": "路面积水", "priority": priority, "address": "青年路",
                         "location": {"street_code": grid[:9], "grid_code": grid},
                         "due_at": "2026-12-07T10:00:00Z", "emergency_level": None}, **extra}


RULES = Rules(NotifySettings(), desk_names={"water": "水务"})


def test_a_new_dispatch_reaches_the_desks_people_on_duty_on_each_channel():
    out = RULES.for_record("dispatch", "water", change(), Roster(ROSTER), cst(2026, 12, 7, 10))
    assert [(n.person.id, n.channel) for n in out.notices] == [("w-day", "sms"), ("w-day", "email")]
    text = out.notices[0].text()
    for part in ("WO-g-1", "路面积水", "青年路", "2026-12-07 18:00（北京时间）", "水务", out.notices[0].delivery_id):
        assert part in text
    assert not out.notices[0].urgent


def test_what_is_not_a_dispatch_and_nobody_on_duty_are_skipped_and_counted():
    r = Roster(ROSTER)
    assert RULES.for_record("dispatch", "water", change("accepted"), r, cst(2026, 12, 7, 10)).skipped == {
        "not_a_dispatch": 1}
    assert RULES.for_record("dispatch", "water", change(), r, cst(2026, 12, 7, 3)).skipped == {"no_one_on_duty": 1}
    assert RULES.for_record("dispatch", "fire", change(), r, cst(2026, 12, 7, 10)).skipped == {"no_one_on_duty": 1}


def test_emergency_supervision_and_reporters():
    r, now = Roster(ROSTER), cst(2026, 12, 7, 10)
    em = RULES.for_record("emergency", "", change("escalated"), r, now)
    assert [(n.person.id, n.channel) for n in em.notices] == [("em", "sms")]
    # supervision: the level's supervisors on duty, else all of them
    sup = RULES.for_record("supervision", "district", change("supervised", supervision={
        "clock": "accept", "due_at": "2026-12-07T03:00:00Z", "level": "district", "share": 1.0}), r, now)
    assert [n.person.id for n in sup.notices] == ["sup-d"]
    assert "区级督办" in sup.notices[0].text() and "签收时限" in sup.notices[0].text()
    assert RULES.for_record("supervision", "city", change("supervised"), r, now).skipped == {"no_supervisor": 1}
    rep = {"reporter_id": "GRID-1", "report_id": "R-1", "work_order_id": "WO-g-1", "version": 4,
           "change": "closed", "status": "closed", "message": "已办结", "at": "2026-12-07T02:00:00Z"}
    out = RULES.for_record("reporter", "", rep, r, now)
    assert [(n.channel, n.person.address("email")) for n in out.notices] == [("email", "g1@x.example.invalid")]
    assert "已办结" in out.notices[0].text()
    assert RULES.for_record("reporter", "", dict(rep, reporter_id="R-x"), r, now).skipped == {"no_contact": 1}


def test_a_reporter_named_by_pseudonym_is_found_with_the_same_key_only():
    """notifications.reporters carries rp_… (DESIGN §16): the roster's clear ids are hashed with
    the notifier's key to find the contact; the delivery's person id is that pseudonym too."""
    from citybrain.domain.pseudonym import Pseudonymiser
    key = Pseudonymiser("the city's reporter key, 32 chars")
    rules, r, now = Rules(NotifySettings(), pseudonym=key), Roster(ROSTER), cst(2026, 12, 7, 10)
    rep = {"reporter_id": key("GRID-1"), "report_id": "R-1", "work_order_id": "WO-g-1", "version": 4,
           "change": "closed", "status": "closed", "message": "已办结", "at": "2026-12-07T02:00:00Z"}
    out = rules.for_record("reporter", "", rep, r, now)
    assert [n.person.address("email") for n in out.notices] == ["g1@x.example.invalid"]
    assert out.notices[0].person.id == f"reporter.{key('GRID-1')}" and "GRID-1" not in out.notices[0].person.id
    other = Rules(NotifySettings(), pseudonym=Pseudonymiser("another key entirely, 32 chars!"))
    assert other.for_record("reporter", "", rep, Roster(ROSTER), now).skipped == {"no_contact": 1}


def test_an_urgent_dispatch_escalates_to_the_next_person_then_the_supervisors():
    r, now = Roster(ROSTER), cst(2026, 12, 7, 10)
    first = RULES.for_record("dispatch", "water", change(priority="urgent", grid="370303001001001"), r, now)
    assert all(n.urgent for n in first.notices)
    told = {n.person.id for n in first.notices}
    assert told == {"w-day", "w-grid"}
    summary = first.notices[0].summary
    step1 = RULES.escalate("water", "WO-g-1", 3, 1, told, summary, r, now)
    assert {n.person.id for n in step1.notices} == {"w-night"} and not step1.notices[0].final
    told |= {"w-night"}
    step2 = RULES.escalate("water", "WO-g-1", 3, 2, told, summary, r, now)
    assert {n.person.id for n in step2.notices} == {"w-spare"}
    told |= {"w-spare"}
    step3 = RULES.escalate("water", "WO-g-1", 3, 3, told, summary, r, now)
    assert {n.person.id for n in step3.notices} == {"sup-d"} and step3.notices[0].final
    assert "升级" in step3.notices[0].text()
    assert RULES.escalate("water", "WO-g-1", 3, 4, told | {"sup-d"}, summary, r, now).skipped == {
        "escalation_exhausted": 1}


def test_delivery_ids_are_stable_and_distinct():
    a = delivery_id("WO-1", 3, "p", "email")
    assert a == delivery_id("WO-1", 3, "p", "email")
    assert len({a, delivery_id("WO-1", 4, "p", "email"), delivery_id("WO-1", 3, "q", "email"),
                delivery_id("WO-1", 3, "p", "sms")}) == 4


def rec(status, did="D-1", urgent=False, step=0, due=None, person="p", final=False):
    return DeliveryRecord(delivery_id=did, work_order_id="WO-1", version=3, person=person, channel="email",
                          kind="dispatch", desk="water", status=status, at=datetime(2026, 12, 7, tzinfo=UTC),
                          urgent=urgent, step=step, ack_due_at=due, final=final)


def test_the_book_dedupes_done_deliveries_and_retries_interrupted_ones():
    book = DeliveryBook()
    assert not book.done("D-1")
    book.apply(rec("queued"))
    assert not book.done("D-1")          # stopped before the outcome: tried again
    book.apply(rec("sent"))
    assert book.done("D-1")
    book.apply(rec("queued"))             # a stale queued read back after: never regresses
    assert book.done("D-1")
    book.apply(rec("acked"))
    book.apply(rec("sent"))
    assert book.deliveries["D-1"].status == "acked"
    book.apply(rec("failed", did="D-2"))
    assert book.done("D-2")


def test_the_book_knows_the_unacknowledged_urgent_groups():
    due = datetime(2026, 12, 7, 1, tzinfo=UTC)
    book = DeliveryBook()
    book.apply(rec("sent", "D-1", urgent=True, due=due))
    book.apply(rec("sent", "D-2", urgent=True, due=due, person="q"))
    assert book.overdue(due - timedelta(seconds=1)) == []
    [(key, g)] = book.overdue(due)
    assert key == ("WO-1", 3) and g.notified == {"p", "q"} and g.step == 0
    book.apply(rec("sent", "D-3", urgent=True, step=1, due=due + timedelta(minutes=15), person="r"))
    assert book.overdue(due) == []
    book.apply(rec("acked", "D-3", urgent=True, step=1, due=due + timedelta(minutes=15), person="r"))
    assert book.overdue(due + timedelta(hours=1)) == []


def test_webhook_signature():
    body = b'{"a":1}'
    assert verify(b"k", body, sign(b"k", body))
    assert not verify(b"k", body + b" ", sign(b"k", body))
    assert not verify(b"other", body, sign(b"k", body))
    assert not verify(b"k", body, None)


def test_sample_notify_settings_load():
    s = NotifySettings.load(PROJECT_ROOT / "config" / "notify.toml")
    assert s.retry.attempts == 3 and s.escalation.final_level == "district"
    with pytest.raises(ValidationError):
        NotifySettings.model_validate({"smtp": {"hots": "x"}})
    assert NotifySettings.load(Path("/nonexistent/notify.toml")) == NotifySettings()


def test_quiet_hours_hold_back_sms_but_not_urgent_or_emergency():
    roster = Roster(RosterFile.model_validate({
        "person": [{"id": "q", "name": "Q", "phone": "13800000001", "email": "q@x.example",
                    "quiet_start": "22:00", "quiet_end": "07:00"}],
        "duty": [{"person": "q", "desk": "water"}, {"person": "q", "desk": "emergency"}]}))
    night, day = cst(2026, 12, 7, 23, 30), cst(2026, 12, 7, 12)
    out = RULES.for_record("dispatch", "water", change(), roster, night)
    assert [n.channel for n in out.notices] == ["email"] and out.skipped == {"quiet_hours": 1}
    assert [n.channel for n in RULES.for_record("dispatch", "water", change(), roster, day).notices] == ["sms", "email"]
    urgent = RULES.for_record("dispatch", "water", change(priority="urgent"), roster, night)
    assert [n.channel for n in urgent.notices] == ["sms", "email"]
    assert [n.channel for n in RULES.for_record("emergency", "", change("escalated"), roster, night).notices] == [
        "sms", "email"]
    with pytest.raises(ValidationError, match="both quiet_start and quiet_end"):
        RosterFile.model_validate({"person": [{"id": "q", "name": "Q", "email": "q@x.example", "quiet_start": "22:00"}]})


def test_the_book_counts_messages_per_person_and_channel_for_the_rate_limit():
    book = DeliveryBook()
    t0 = datetime(2026, 12, 7, tzinfo=UTC)
    for i in range(3):
        book.apply(rec("queued", did=f"D-{i}").model_copy(update={"at": t0 + timedelta(minutes=20 * i)}))
        book.apply(rec("sent", did=f"D-{i}").model_copy(update={"at": t0 + timedelta(minutes=20 * i)}))
    assert book.sent_since("p", "email", t0) == 3                       # one message each, not one per record
    assert book.sent_since("p", "email", t0 + timedelta(minutes=30)) == 1
    assert book.sent_since("p", "sms", t0) == 0


# -- exactly once across a crash: the claim (docs/notifier.md, "Exactly once") ---------------

class FakeProducer:
    """The deliveries and dead-letter topics as lists (a send is acknowledged at once)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict]] = []

    async def send(self, topic, value, key=None):
        import asyncio

        import orjson
        self.records.append((topic, orjson.loads(value)))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def statuses(self, did: str) -> list[str]:
        return [r["status"] for t, r in self.records if t.endswith("notifications.deliveries")
                and r["delivery_id"] == did]

    def dead(self) -> list[dict]:
        return [r for t, r in self.records if t.endswith("notifications.deadletter")]


class FakeChannel:
    def __init__(self, producer: FakeProducer, gate=None) -> None:
        self.producer, self.gate = producer, gate
        self.calls: list[tuple[str, list[str]]] = []   # (delivery id, its records when the channel got it)
        self.open = 0
        self.most_open = 0

    async def send(self, notice, address):
        self.calls.append((notice.delivery_id, self.producer.statuses(notice.delivery_id)))
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        if self.gate is not None:
            await self.gate.wait()
        self.open -= 1
        return "accepted"

    async def close(self):
        return None


def notifier_with(settings: dict | None = None, gate=None):
    from citybrain.kafka.topics import Topics
    from citybrain.notify.service import Notifier
    s = NotifySettings.model_validate(settings or {})
    producer = FakeProducer()
    channels = {"email": FakeChannel(producer, gate), "webhook": FakeChannel(producer, gate)}
    n = Notifier("unused:9092", Topics("t."), None, s, Rules(s), channels)  # type: ignore[arg-type]
    n.producer = producer
    return n, producer, channels


def notice(channel="email", order="WO-1", version=2):
    from citybrain.notify.rules import Notice
    person = ROSTER.person[1] if channel == "webhook" else ROSTER.person[0]
    return Notice(kind="dispatch", work_order_id=order, version=version, person=person, channel=channel,
                  desk="water", summary={"category_name": "路面积水"})


def prior(n, status: str, attempts: int = 1):
    """A record a predecessor (a notifier that died) left on the deliveries topic."""
    return DeliveryRecord(delivery_id=notice().delivery_id, work_order_id="WO-1", version=2, person=ROSTER.person[0].id,
                          channel="email", kind="dispatch", desk="water", status=status, attempts=attempts,
                          at=datetime(2026, 12, 7, 2, tzinfo=UTC))


async def test_a_delivery_is_claimed_on_the_topic_before_its_channel_has_it():
    n, producer, ch = notifier_with()
    await n.deliver(notice())
    did = notice().delivery_id
    assert ch["email"].calls == [(did, ["queued", "sending"])]
    assert producer.statuses(did) == ["queued", "sending", "sent"] and n.book.done(did)


async def test_a_claim_left_by_a_dead_notifier_is_reported_never_sent_again():
    n, producer, ch = notifier_with()
    did = notice().delivery_id
    n.book.apply(prior(n, "sending"))
    await n.deliver(notice())
    await n.deliver(notice())                       # the source record once more: nothing
    assert ch["email"].calls == []
    assert producer.statuses(did) == ["failed"]
    failed = n.book.deliveries[did]
    assert failed.status == "failed" and failed.detail.startswith("outcome_unknown")
    [dead] = producer.dead()
    assert dead["reason"] == "notification_outcome_unknown" and dead["delivery_id"] == did


async def test_a_webhooks_claim_is_resent_under_the_same_delivery_id():
    n, producer, ch = notifier_with()
    wid = notice("webhook").delivery_id
    n.book.apply(DeliveryRecord(delivery_id=wid, work_order_id="WO-1", version=2, person=ROSTER.person[1].id,
                                channel="webhook", kind="dispatch", desk="water", status="sending",
                                at=datetime(2026, 12, 7, 2, tzinfo=UTC)))
    await n.deliver(notice("webhook"))
    assert [c[0] for c in ch["webhook"].calls] == [wid]       # once, the same id (Idempotency-Key)
    assert producer.statuses(wid) == ["sending", "sent"] and producer.dead() == []
    # email reports instead, unless the setting says the receiver deduplicates
    n2, _p2, ch2 = notifier_with({"in_flight": {"email": "resend"}})
    n2.book.apply(prior(n2, "sending"))
    await n2.deliver(notice())
    assert len(ch2["email"].calls) == 1


@pytest.mark.parametrize("status", ["queued", "retrying"])
async def test_a_delivery_its_channel_never_had_is_sent_after_a_restart_whatever_the_hours_limit(status):
    n, producer, ch = notifier_with({"limits": {"per_person_per_hour": 1}})
    n.book.apply(prior(n, status))
    await n.deliver(notice())
    assert len(ch["email"].calls) == 1 and n.book.done(notice().delivery_id)


async def test_at_most_the_channels_concurrency_is_ever_in_doubt():
    import asyncio
    gate = asyncio.Event()
    n, producer, ch = notifier_with({"in_flight": {"concurrency": 2}}, gate=gate)
    tasks = [asyncio.create_task(n.deliver(notice(order=f"WO-{i}"))) for i in range(10)]
    for _ in range(20):
        await asyncio.sleep(0)
    claimed = [d for d in {r["delivery_id"] for _t, r in producer.records} if producer.statuses(d)[-1] == "sending"]
    queued = [d for d in {r["delivery_id"] for _t, r in producer.records} if producer.statuses(d)[-1] == "queued"]
    assert len(claimed) == 2 and len(queued) == 8          # a crash now: 2 in doubt, 8 safe to send
    gate.set()
    await asyncio.gather(*tasks)
    assert ch["email"].most_open == 2 and len(ch["email"].calls) == 10


# -- SMS delivery reports (短信回执) ------------------------------------------------------------

def test_an_smsc_delivery_report_is_read_from_its_tlvs_or_its_text():
    from citybrain.notify.receipts import parse
    text = b"id:SMSC-7 sub:001 dlvrd:001 submit date:2612070200 done date:2612070201 stat:DELIVRD err:000 text:"
    r = parse(0x04, text)
    assert r is not None and (r.message_id, r.stat, r.err, r.status) == ("SMSC-7", "DELIVRD", "000", "delivered")
    # the TLVs win over the text (receipted_message_id is a C string; message_state 5 = UNDELIVERABLE)
    r = parse(0x04, text, receipted_message_id=b"SMSC-8\x00", message_state=5)
    assert r is not None and (r.message_id, r.stat, r.status) == ("SMSC-8", "UNDELIV", "failed")
    assert parse(0x04, b"id:9 stat:ENROUTE").status is None           # not final: says nothing yet
    assert parse(0x04, b"id:9 stat:EXPIRED").status == "failed"
    assert parse(0x00, text) is None                                    # a mobile-originated message
    assert parse(0x04, b"stat:DELIVRD") is None                          # names no message


async def test_a_delivery_report_marks_the_sms_delivered_or_failed_once():
    from citybrain.notify.receipts import Receipt
    n, producer, _ch = notifier_with()
    did = notice().delivery_id
    sent = prior(n, "sent").model_copy(update={"channel": "sms", "detail": "smpp message_id SMSC-1,SMSC-2"})
    n.book.apply(sent)
    assert n.book.by_smsc_id == {"SMSC-1": did, "SMSC-2": did}
    await n.receipt(Receipt("SMSC-2", "DELIVRD", "000"))
    await n.receipt(Receipt("SMSC-1", "UNDELIV", "001"))     # the first final report decided
    assert producer.statuses(did) == ["delivered"] and n.book.deliveries[did].detail.startswith("smsc receipt SMSC-2")
    await n.receipt(Receipt("SMSC-404", "DELIVRD"), wait=0.3)   # nobody's message: logged, nothing written
    assert producer.statuses(did) == ["delivered"]
    n2, p2, _ = notifier_with()
    n2.book.apply(sent)
    await n2.receipt(Receipt("SMSC-1", "REJECTD"))
    assert p2.statuses(did) == ["failed"] and "REJECTD" in n2.book.deliveries[did].detail
