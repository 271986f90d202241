"""The notifier through real Kafka, to real receivers started here: an SMTP server (aiosmtpd),
an HTTP server checking the webhook signature (aiohttp) and an SMPP 3.4 server (smpp34)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from email import message_from_bytes
from email.policy import default as email_policy
from pathlib import Path

import orjson
import pytest
import smpp34
from aiosmtpd.controller import Controller

from citybrain.kafka.admin import create_topics
from citybrain.kafka.topics import Topics, TopicSpec
from citybrain.notify.channels import DELIVERY_HEADER, IDEMPOTENCY_HEADER, EmailSender, SmsSender, WebhookSender
from citybrain.notify.roster import ReloadingRoster
from citybrain.notify.rules import Rules
from citybrain.notify.service import Notifier, acknowledge, deadletter_topic, deliveries_topic
from citybrain.notify.settings import NotifySettings
from citybrain_tools.local_kafka.broker import free_port
from tests.integration.kafka_helpers import consume, decode, new_prefix, produce
from tests.integration.receivers import signed_receiver

SECRET = "test-webhook-key"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=email_policy)))
        return "250 OK"


@contextlib.contextmanager
def smtp_server():
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def webhook_server():
    """POST /ok checks the signature (401 if wrong); POST /fail always answers 500."""
    return signed_receiver(SECRET, DELIVERY_HEADER, {"delivery": DELIVERY_HEADER, "idempotency_key": IDEMPOTENCY_HEADER})


@contextlib.asynccontextmanager
async def smpp_server():
    """A real SMPP 3.4 server (SMSC): every submit_sm accepted, the parts put together; when
    the submit asks for a delivery report and a receiver is bound, a deliver_sm receipt
    (esm_class 0x04, receipted_message_id and message_state TLVs, the text form) DELIVRD."""
    port = free_port()
    server = smpp34.Server("127.0.0.1", port, system_id="test-smsc")
    await server.start()
    parts: list[tuple[str, bytes]] = []
    receivers: dict[str, smpp34.Esme] = {}
    pushes: set[asyncio.Task] = set()

    async def receipt(esme, message_id: str, dest: str) -> None:
        text = f"id:{message_id} sub:001 dlvrd:001 submit date:2612070200 done date:2612070200 stat:DELIVRD err:000 text:"
        await esme.deliver_sm("12345", text.encode(), source_addr=dest, esm_class=0x04, tlvs=[
            smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\x00"),
            smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, bytes([2]))])   # DELIVERED

    async def serve() -> None:
        n = 0
        while True:
            ev = await server.next()
            if isinstance(ev, smpp34.Esme) and ev.can_receive:
                receivers[ev.session_id] = ev
            elif isinstance(ev, smpp34.Unbound):
                receivers.pop(ev.session_id, None)
            elif isinstance(ev, smpp34.SubmitSmEvent):
                n += 1
                msg = ev.short_message
                if ev.esm_class & 0x40:          # a user data header: skip it
                    msg = msg[1 + msg[0]:]
                parts.append((ev.destination_addr, msg))
                ev.accept(f"SMSC-{n}")
                if ev.registered_delivery & 0x01 and receivers:
                    push = asyncio.create_task(receipt(next(iter(receivers.values())), f"SMSC-{n}",
                                                       ev.destination_addr))
                    pushes.add(push)
                    push.add_done_callback(pushes.discard)

    task = asyncio.create_task(serve())
    try:
        yield port, parts
    finally:
        task.cancel()
        await server.stop()


def sms_texts(parts: list[tuple[str, bytes]]) -> dict[str, str]:
    out: dict[str, bytes] = {}
    for dest, body in parts:
        out[dest] = out.get(dest, b"") + body
    return {d: b.decode("utf-16-be") for d, b in out.items()}


def roster_file(tmp: Path, hook: str, extra: str = "") -> Path:
    p = tmp / "roster.toml"
    p.write_text(f'''
[[person]]
id = "water-duty"
name = "水务值班"
email = "water-duty@citybrain.example.invalid"
webhook = "{hook}/ok"
phone = "13800000001"

[[person]]
id = "water-broken"
name = "水务（坏的接收端）"
webhook = "{hook}/fail"

[[duty]]
person = "water-duty"
desk = "water"

[[duty]]
person = "water-broken"
desk = "water"
grid_prefix = "370303"
{extra}
''', encoding="utf-8")
    return p


def dispatch(order="WO-road_ponding-0001", version=2, priority="normal", grid="370306003001001"):
    return orjson.dumps({
        "work_order_id": order, "version": version, "type": "dispatched", "at": "2026-12-07T02:00:00Z",
        "actor": {"id": "system", "role": "system"}, "role": "lead",
        "snapshot": {"work_order_id": order, "version": version, "category": "road_ponding",
                     "category_name": "路面积水", "priority": priority, "address": "青年路",
                     "location": {"street_code": grid[:9], "district_code": grid[:6], "grid_code": grid},
                     "due_at": "2026-12-07T10:00:00Z", "emergency_level": None}})


def settings(smtp_port: int, smpp_port: int, group: str = "notifier", ack_minutes: float = 15,
             channels=("email", "webhook")) -> NotifySettings:
    return NotifySettings.model_validate({
        "group": group, "channels": list(channels),
        "smtp": {"host": "127.0.0.1", "port": smtp_port},
        "smpp": {"host": "127.0.0.1", "port": smpp_port},
        "retry": {"attempts": 3, "backoff_seconds": 0.1},
        "escalation": {"ack_minutes": ack_minutes}})


@contextlib.asynccontextmanager
async def running(bootstrap: str, topics: Topics, roster: Path, s: NotifySettings):
    rules = Rules(s, desk_names={"water": "水务"})
    senders = {"email": EmailSender(s.smtp), "webhook": WebhookSender(s.webhook), "sms": SmsSender(s.smpp)}
    notifier = Notifier(bootstrap, topics, ReloadingRoster(roster, every=0.2), s, rules, senders, partitions=3,
                        escalation_every=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        await asyncio.wait_for(asyncio.shield(notifier.ready.wait()), 60)
        yield notifier
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(predicate, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
def webhook_secret(monkeypatch):
    monkeypatch.setenv("CITYBRAIN_WEBHOOK_SECRET", SECRET)


async def new_topics(bootstrap: str, name: str) -> Topics:
    topics = Topics(new_prefix(name))
    await create_topics(bootstrap, [TopicSpec(topics.dispatch("water"), 3), TopicSpec(topics.emergency, 3),
                                    TopicSpec(topics.supervision("district"), 3)])
    return topics


async def test_a_dispatch_reaches_the_person_on_duty_once_across_redelivery_and_restart(
        kafka_bootstrap, tmp_path, webhook_secret):
    topics = await new_topics(kafka_bootstrap, "notify-once")
    with smtp_server() as (box, smtp_port):
        async with webhook_server() as (hook, got, failures), smpp_server() as (smpp_port, _parts):
            roster = roster_file(tmp_path, hook)
            s = settings(smtp_port, smpp_port)
            record = dispatch()
            async with running(kafka_bootstrap, topics, roster, s) as notifier:
                await produce(kafka_bootstrap, [(topics.dispatch("water"), b"WO-road_ponding-0001", record)])
                await until(lambda: len(box.messages) == 1 and len(got) == 1, what="an email and a webhook")
                # the same record again (an at-least-once redelivery upstream): nothing more
                await produce(kafka_bootstrap, [(topics.dispatch("water"), b"WO-road_ponding-0001", record)])
                await asyncio.sleep(2.0)
                assert notifier.sent == 2
            # restarted with a new consumer group: it reads both records again; the deliveries
            # topic says both notices were sent
            async with running(kafka_bootstrap, topics, roster, settings(smtp_port, smpp_port, group="again")) as again:
                await asyncio.sleep(4.0)
                assert again.sent == 0 and len(again.book.deliveries) == 2
            assert len(box.messages) == 1 and len(got) == 1 and failures == []

    rcpt, mail = box.messages[0]
    assert rcpt == ["water-duty@citybrain.example.invalid"]
    body = mail.get_content()
    for part in ("WO-road_ponding-0001", "路面积水", "青年路", "2026-12-07 18:00（北京时间）"):
        assert part in body and part in got[0]["text"]
    assert "水务" in mail["Subject"] or "路面积水" in mail["Subject"]
    # each channel's delivery has its own id, in its text, its header / Message-ID
    assert got[0]["delivery"] == got[0]["delivery_id"] == got[0]["idempotency_key"]
    assert got[0]["delivery_id"] in got[0]["text"]
    assert mail["X-Citybrain-Delivery"] in body and mail["Message-ID"].startswith(f"<{mail['X-Citybrain-Delivery']}@")
    receipts = decode(await consume(kafka_bootstrap, deliveries_topic(topics), 6))
    assert sorted((r["channel"], r["status"]) for r in receipts) == [   # sending: the claim before the send
        ("email", "queued"), ("email", "sending"), ("email", "sent"),
        ("webhook", "queued"), ("webhook", "sending"), ("webhook", "sent")]


async def test_a_webhook_failing_thrice_ends_on_the_dead_letter(kafka_bootstrap, tmp_path, webhook_secret):
    topics = await new_topics(kafka_bootstrap, "notify-dead")
    with smtp_server() as (box, smtp_port):
        async with webhook_server() as (hook, got, failures), smpp_server() as (smpp_port, _parts):
            roster = roster_file(tmp_path, hook)
            async with running(kafka_bootstrap, topics, roster, settings(smtp_port, smpp_port)):
                # grid 370303…: the broken receiver's person is on duty for it too
                await produce(kafka_bootstrap, [(topics.dispatch("water"), b"WO-2",
                                                 dispatch("WO-2", grid="370303001001001"))])
                dead = decode(await consume(kafka_bootstrap, deadletter_topic(topics), 1, timeout=30))
            assert len(failures) == 3 and len(set(failures)) == 1
            assert len(got) == 1 and len(box.messages) == 1     # the other person got theirs
    assert len(dead) == 1
    assert dead[0]["reason"] == "notification_failed" and "HTTP 500" in dead[0]["detail"]
    assert dead[0]["person"] == "water-broken" and dead[0]["attempts"] == 3 and dead[0]["channel"] == "webhook"
    receipts = [r for r in decode(await consume(kafka_bootstrap, deliveries_topic(topics), 10))
                if r["person"] == "water-broken"]
    assert [r["status"] for r in receipts] == ["queued", "sending", "retrying", "sending", "retrying", "sending",
                                               "failed"]


async def test_sms_over_smpp_and_an_unacknowledged_urgent_order_escalates(kafka_bootstrap, tmp_path, webhook_secret):
    topics = await new_topics(kafka_bootstrap, "notify-sms")
    extra = '''
[[person]]
id = "water-second"
name = "水务二线"
phone = "13800000002"

[[person]]
id = "sup-district"
name = "区级督办员"
phone = "13800000009"

[[duty]]
person = "water-second"
desk = "water"
days = ["sun"]
start = "03:00"
end = "03:01"

[[duty]]
person = "sup-district"
desk = "supervision.district"
'''
    with smtp_server() as (_box, smtp_port):
        async with webhook_server() as (hook, _got, _failures), smpp_server() as (smpp_port, parts):
            roster = roster_file(tmp_path, hook, extra)
            s = settings(smtp_port, smpp_port, ack_minutes=0.02, channels=("sms",))
            async with running(kafka_bootstrap, topics, roster, s) as notifier:
                await produce(kafka_bootstrap, [(topics.dispatch("water"), b"WO-3",
                                                 dispatch("WO-3", priority="urgent"))])
                # first the person on duty; 1.2 s later nobody acked: the next on the roster
                await until(lambda: "13800000002" in sms_texts(parts), timeout=30, what="the escalation SMS")
                texts = sms_texts(parts)
                assert "WO-3" in texts["13800000001"] and "路面积水" in texts["13800000001"]
                assert "升级" in texts["13800000002"]
                # the second person acknowledges: the supervisor is never texted
                second = next(d for d in notifier.book.deliveries.values() if d.person == "water-second")
                await until(lambda: notifier.book.done(second.delivery_id), what="the escalation's receipt")
                acked = await acknowledge(kafka_bootstrap, topics, second.delivery_id, "water-second")
                assert acked is not None and acked.status == "acked"
                await until(lambda: notifier.book.groups[("WO-3", 2)].acked, what="the ack read back")
                await asyncio.sleep(2.5)
                assert "13800000009" not in sms_texts(parts)
    records = decode(await consume(kafka_bootstrap, deliveries_topic(topics), 5))
    statuses = {(r["person"], r["status"]) for r in records}
    assert ("water-second", "acked") in statuses and ("water-duty", "sent") in statuses
    # 短信回执: the SMSC's deliver_sm receipt made the first SMS delivered (after sent)
    duty = [r for r in records if r["person"] == "water-duty"]
    assert [r["status"] for r in duty][-2:] == ["sent", "delivered"], duty
    assert duty[-1]["detail"].startswith("smsc receipt SMSC-") and "DELIVRD" in duty[-1]["detail"]


class SlowMailbox(Mailbox):
    """Takes its time over each message, so a batch is still being sent when the notifier dies."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await asyncio.sleep(0.3)
        return await super().handle_DATA(server, session, envelope)


def notifier_process(bootstrap: str, topics: Topics, roster: Path, notify: Path, port: int, log: Path):
    import os
    import subprocess
    import sys
    src = str(Path(__file__).resolve().parents[2] / "src")   # the code under test, whatever the venv points at
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
               KAFKA_BOOTSTRAP_SERVERS=bootstrap, CITYBRAIN_TOPIC_PREFIX=topics.prefix,
               CITYBRAIN_PARTITIONS="3", CITYBRAIN_ROSTER_FILE=str(roster), CITYBRAIN_NOTIFY_FILE=str(notify),
               CITYBRAIN_WEBHOOK_SECRET=SECRET)
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "citybrain", "notifier", "run", "--http-port", str(port)],
                            env=env, stdout=out, stderr=subprocess.STDOUT)


async def http_up(port: int, timeout: float = 60.0) -> None:
    import aiohttp
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise AssertionError("the notifier's HTTP port never answered")


async def test_the_notifier_process_killed_mid_batch_and_its_http_ack(kafka_bootstrap, tmp_path):
    """SIGKILL while a batch is being sent, then a restart: exactly one email per (order,
    version, person) — none sent twice.  What the dead notifier had only queued is sent after
    the restart; what it had claimed (``sending``: the SMTP server had the message, the outcome
    never reached notifications.deliveries) is not sent again but reported failed with detail
    outcome_unknown and a notification_outcome_unknown dead letter (email does not
    deduplicate: docs/notifier.md).  Then an ack through the notifier's HTTP port."""
    import signal

    import aiohttp

    from citybrain.notify.deliveries import DONE
    from citybrain.notify.rules import delivery_id
    from tests.integration.kafka_helpers import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    topics = await new_topics(kafka_bootstrap, "notify-kill")
    box = SlowMailbox()
    smtp_port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    roster = tmp_path / "roster.toml"
    roster.write_text('[[person]]\nid = "water-duty"\nname = "水务值班"\nemail = "w@citybrain.example.invalid"\n'
                      '[[duty]]\nperson = "water-duty"\ndesk = "water"\n', encoding="utf-8")
    notify = tmp_path / "notify.toml"
    notify.write_text(f'channels = ["email"]\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
                      '[retry]\nbackoff_seconds = 0.1\n[limits]\nper_person_per_hour = 0\n', encoding="utf-8")
    log = ARTIFACTS / f"{topics.prefix.rstrip('.')}-notifier.log"
    port = free_port()
    orders = [f"WO-road_ponding-{i:04d}" for i in range(40)]
    proc = notifier_process(kafka_bootstrap, topics, roster, notify, port, log)
    try:
        await http_up(port)
        await produce(kafka_bootstrap, [(topics.dispatch("water"), o.encode(), dispatch(o)) for o in orders])
        await until(lambda: len(box.messages) >= 5, timeout=60, what="the first emails")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        async def latest(settle: float = 1.0) -> dict[str, dict]:
            return {r["delivery_id"]: r
                    for r in decode(await consume(kafka_bootstrap, deliveries_topic(topics), 1, settle=settle))}
        before = {d: r["status"] for d, r in (await latest(settle=3.0)).items()}   # the whole topic: nothing comes now
        arrived_before = len(box.messages)
        assert arrived_before < len(orders), "the batch was over before the kill: nothing tested"
        claimed = {d for d, status in before.items() if status == "sending"}
        waiting = {d for d, status in before.items() if status not in DONE and status != "sending"}
        proc = notifier_process(kafka_bootstrap, topics, roster, notify, port, log)
        await http_up(port)
        expected = {delivery_id(o, 2, "water-duty", "email") for o in orders}
        deadline = time.monotonic() + 90
        while True:        # every delivery has an outcome: sent, or failed (outcome unknown)
            now_ = await latest()
            if all(now_.get(d, {}).get("status") in DONE for d in expected):
                break
            assert time.monotonic() < deadline, "not every delivery got an outcome"
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)
        ids = lambda: [m["X-Citybrain-Delivery"] for _rcpt, m in box.messages]  # noqa: E731
        got = ids()
        duplicates = len(got) - len(set(got))
        unknown = {d for d in expected if now_[d]["status"] == "failed"
                   and now_[d]["detail"].startswith("outcome_unknown")}
        sent = {d for d in expected if now_[d]["status"] == "sent"}
        print(f"killed after {arrived_before} emails: {len(claimed)} claimed (sending), {len(waiting)} queued; "
              f"after the restart: sent {len(sent)}, duplicates {duplicates}, unknown {len(unknown)} "
              f"(of which the SMTP server had {len(unknown & set(got))})")
        assert duplicates == 0, [d for d in set(got) if got.count(d) > 1]
        assert unknown == claimed and len(claimed) <= 4        # [in_flight] concurrency: 4 at most in doubt
        assert sent | unknown == expected and set(got) >= sent   # nothing lost without a word
        dead = decode(await consume(kafka_bootstrap, deadletter_topic(topics), len(unknown) or 1,
                                    timeout=5 if unknown else 2))
        assert sorted(d["delivery_id"] for d in dead if d["reason"] == "notification_outcome_unknown") == sorted(unknown)

        # 签收 through the notifier's port: a department token may ack its own desk only
        delivery = ids()[0]
        url = f"http://127.0.0.1:{port}/api/v1/notifications/{delivery}/ack"
        async with aiohttp.ClientSession() as s:
            async with s.post(url) as r:
                assert r.status == 401
            async with s.post(url, headers={"Authorization": "Bearer demo-city-mgmt"}) as r:
                assert r.status == 403 and (await r.json())["error"]["reason"] == "out_of_scope"
            async with s.post(url.replace(delivery, "D-nope"), headers={"Authorization": "Bearer demo-water"}) as r:
                assert r.status == 404
            async with s.post(url, headers={"Authorization": "Bearer demo-water"}) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
                assert body["status"] == "acked" and body["acked_by"] == "water"
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
        assert 'citybrain_notifications_total{channel="email",outcome="sent"}' in text
        assert 'citybrain_notifications_total{channel="email",outcome="acked"} 1.0' in text
        after = decode(await consume(kafka_bootstrap, deliveries_topic(topics), 1, settle=1.0))
        assert any(r["delivery_id"] == delivery and r["status"] == "acked" for r in after)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except Exception:
                proc.kill()
        controller.stop()


async def test_a_person_gets_at_most_the_hours_limit_except_urgent(kafka_bootstrap, tmp_path, webhook_secret):
    topics = await new_topics(kafka_bootstrap, "notify-limit")
    with smtp_server() as (box, smtp_port):
        async with webhook_server() as (hook, _got, _failures), smpp_server() as (smpp_port, _parts):
            roster = roster_file(tmp_path, hook)
            s = settings(smtp_port, smpp_port, channels=("email",))
            s.limits.per_person_per_hour = 2
            async with running(kafka_bootstrap, topics, roster, s):
                await produce(kafka_bootstrap, [(topics.dispatch("water"), f"WO-{i}".encode(), dispatch(f"WO-{i}"))
                                                for i in range(4)])
                await until(lambda: len(box.messages) == 2, what="two emails")
                await produce(kafka_bootstrap, [(topics.dispatch("water"), b"WO-9", dispatch("WO-9", priority="urgent"))])
                await until(lambda: len(box.messages) == 3, what="the urgent one past the limit")
                await asyncio.sleep(1.5)
    assert len(box.messages) == 3
    assert "WO-9" in box.messages[-1][1].get_content()


async def test_claims_left_by_a_dead_notifier_are_resent_by_webhook_and_reported_by_email(
        kafka_bootstrap, tmp_path, webhook_secret):
    """The claim read back from notifications.deliveries at start (a notifier died while both
    channels had the dispatch): the webhook is sent again under the same delivery id as its
    Idempotency-Key; the email is not sent again but reported outcome_unknown."""
    from datetime import UTC, datetime

    from citybrain.notify.deliveries import DeliveryRecord
    from citybrain.notify.rules import delivery_id
    from citybrain.notify.service import notifier_specs

    topics = await new_topics(kafka_bootstrap, "notify-claims")
    await create_topics(kafka_bootstrap, notifier_specs(topics, 3))
    order = "WO-claimed-1"
    ids = {ch: delivery_id(order, 2, "water-duty", ch) for ch in ("email", "webhook")}
    claims = [DeliveryRecord(delivery_id=did, work_order_id=order, version=2, person="water-duty", channel=ch,
                             kind="dispatch", desk="water", status="sending", attempts=1,
                             at=datetime(2026, 12, 7, 2, tzinfo=UTC)) for ch, did in ids.items()]
    await produce(kafka_bootstrap, [(deliveries_topic(topics), c.delivery_id.encode(), c.model_dump_json().encode())
                                    for c in claims])
    with smtp_server() as (box, smtp_port):
        async with webhook_server() as (hook, got, _failures), smpp_server() as (smpp_port, _parts):
            async with running(kafka_bootstrap, topics, roster_file(tmp_path, hook), settings(smtp_port, smpp_port)):
                await produce(kafka_bootstrap, [(topics.dispatch("water"), order.encode(), dispatch(order))])
                await until(lambda: len(got) == 1, what="the webhook sent again")
                dead = decode(await consume(kafka_bootstrap, deadletter_topic(topics), 1, timeout=30))
                await asyncio.sleep(1.0)
    assert [(g["idempotency_key"], g["delivery_id"]) for g in got] == [(ids["webhook"], ids["webhook"])]
    assert box.messages == []                                       # the email in doubt: not sent twice
    assert [(d["reason"], d["delivery_id"]) for d in dead] == [("notification_outcome_unknown", ids["email"])]
    latest = {r["delivery_id"]: r for r in decode(await consume(kafka_bootstrap, deliveries_topic(topics), 5))}
    assert latest[ids["webhook"]]["status"] == "sent"
    assert latest[ids["email"]]["status"] == "failed" and latest[ids["email"]]["detail"].startswith("outcome_unknown")
