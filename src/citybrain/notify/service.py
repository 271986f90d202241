"""``citybrain notifier``: delivery to people, a consumer group of its own.

It reads ``dispatch.*`` (departments, street desks, supervision levels), ``command.emergency``
and ``notifications.reporters`` (a pattern subscription: a new desk's topic is picked up),
asks the rules whom each record reaches, and sends each notice once per (order, version,
person, channel): the state of every delivery is on the compacted
``notifications.deliveries`` topic, read back whole at start (Kafka is the only shared
store) and followed while running (acknowledgements written by ``citybrain notifier ack``).
A batch's offsets are committed once every delivery of it has an outcome on that topic.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from prometheus_client import Counter

from citybrain.kafka.admin import create_topics
from citybrain.kafka.clients import kafka_consumer, kafka_producer
from citybrain.kafka.topics import COMPACTED, Topics, TopicSpec
from citybrain.notify.channels import ChannelError, Sender, SmsReceiptListener
from citybrain.notify.deliveries import UNKNOWN_OUTCOME, DeliveryBook, DeliveryRecord
from citybrain.notify.receipts import Receipt
from citybrain.notify.roster import ReloadingRoster
from citybrain.notify.rules import Notice, Outcome, Rules
from citybrain.notify.settings import NotifySettings
from citybrain.stream.logreader import TopicReader

log = logging.getLogger("citybrain.notifier")
NOTIFICATIONS = Counter("citybrain_notifications", "Notifications by channel and outcome: sent, failed "
                        "(dead after the retry budget), retried, duplicate (already done), acked, "
                        "escalated, unknown (a predecessor died while sending: reported, not resent), "
                        "resent (the same, resent under its delivery id), delivered / undelivered (an "
                        "SMSC's delivery report), receipt_unmatched, skipped_<reason>",
                        ["channel", "outcome"])


def deliveries_topic(topics: Topics) -> str:
    return f"{topics.prefix}notifications.deliveries"


def deadletter_topic(topics: Topics) -> str:
    return f"{topics.prefix}notifications.deadletter"


def notifier_specs(topics: Topics, partitions: int) -> list[TopicSpec]:
    return [TopicSpec(deliveries_topic(topics), partitions, dict(COMPACTED)),
            TopicSpec(deadletter_topic(topics), partitions, {})]


def classify(topics: Topics, topic: str) -> tuple[str, str] | None:
    """(kind, desk) of a source topic, or None."""
    name = topics.unprefixed(topic)
    if name == "command.emergency":
        return "emergency", ""
    if name == "notifications.reporters":
        return "reporter", ""
    if name.startswith("dispatch.supervision."):
        return "supervision", name[len("dispatch.supervision."):]
    if name.startswith("dispatch."):
        return "dispatch", name[len("dispatch."):]
    return None


def now_utc() -> datetime:
    return datetime.now(UTC)


class Notifier:
    def __init__(self, bootstrap: str, topics: Topics, roster: ReloadingRoster, settings: NotifySettings,
                 rules: Rules, senders: dict[str, Sender], partitions: int = 6,
                 clock: Callable[[], datetime] = now_utc, escalation_every: float = 1.0):
        self.bootstrap, self.topics, self.roster, self.settings = bootstrap, topics, roster, settings
        self.rules, self.senders, self.partitions, self.clock = rules, senders, partitions, clock
        self.escalation_every = escalation_every
        self.book = DeliveryBook()
        self.ready = asyncio.Event()
        self.producer: Any = None
        self.sent = 0
        self._escalations: set[asyncio.Task] = set()
        self._in_flight: set[str] = set()                    # deliveries this process is sending
        self._slots: dict[str, asyncio.Semaphore] = {}       # per channel: [in_flight] concurrency
        self.receipts: SmsReceiptListener | None = None
        self._receipt_tasks: set[asyncio.Task] = set()

    # -- the deliveries topic ----------------------------------------------------------

    def _on_deliveries(self, records: list) -> None:
        for r in records:
            if r.value is None:
                continue
            try:
                self.book.apply(DeliveryRecord.model_validate_json(r.value))
            except ValueError as e:
                log.warning("无效回执 unreadable delivery record at %s/%d: %s", r.partition, r.offset, str(e)[:200])

    async def _write(self, rec: DeliveryRecord) -> None:
        self.book.apply(rec)
        await (await self.producer.send(deliveries_topic(self.topics), rec.model_dump_json().encode(),
                                        key=rec.delivery_id.encode()))

    # -- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await create_topics(self.bootstrap, notifier_specs(self.topics, self.partitions))
        self.producer = kafka_producer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0,
                                       client_id="citybrain-notifier")
        await self.producer.start()
        follower = TopicReader(self.bootstrap, deliveries_topic(self.topics), self._on_deliveries, "notifier-deliveries")
        follow = asyncio.create_task(follower.run())
        consumer = None
        try:
            await asyncio.wait([follow, asyncio.ensure_future(follower.caught_up.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            if follow.done():
                follow.result()
            log.info("通知服务已恢复 notifier rebuilt %d deliveries from %s", len(self.book.deliveries),
                     deliveries_topic(self.topics))
            pattern = "^" + re.escape(self.topics.prefix) + r"(dispatch\..+|command\.emergency|notifications\.reporters)$"
            consumer = kafka_consumer(bootstrap_servers=self.bootstrap, group_id=self.topics.prefix + self.settings.group,
                                      enable_auto_commit=False, client_id="citybrain-notifier",
                                      metadata_max_age_ms=5000)
            consumer.subscribe(pattern=pattern)
            await consumer.start()
            if "sms" in self.settings.channels and self.settings.smpp.receipts:
                self.receipts = SmsReceiptListener(self.settings.smpp, self._on_receipt, asyncio.get_running_loop())
                self.receipts.start()
            self.ready.set()
            last_escalation = 0.0
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                if follow.done():
                    follow.result()
                batches = await consumer.getmany(timeout_ms=300, max_records=500)
                records = [r for recs in batches.values() for r in recs]
                if records:
                    await self.handle(records)
                    await consumer.commit()
                if loop.time() - last_escalation >= self.escalation_every:
                    last_escalation = loop.time()
                    self.escalate_overdue()
        finally:
            if self.receipts is not None:
                self.receipts.stop()
            for t in [*self._escalations, *self._receipt_tasks]:
                t.cancel()
            follow.cancel()
            if consumer is not None:
                await consumer.stop()
            await self.producer.stop()
            for s in self.senders.values():
                await s.close()

    async def handle(self, records: list) -> None:
        roster, now = self.roster.current(), self.clock()
        notices: list[Notice] = []
        for r in records:
            kind_desk = classify(self.topics, r.topic)
            if kind_desk is None or r.value is None:
                continue
            kind, desk = kind_desk
            try:
                value = orjson.loads(r.value)
                outcome = self.rules.for_record(kind, desk, value, roster, now)  # type: ignore[arg-type]
            except (ValueError, KeyError, TypeError) as e:
                log.warning("无法解析 unreadable record %s/%d/%d: %s", r.topic, r.partition, r.offset, str(e)[:200])
                NOTIFICATIONS.labels("none", "skipped_unreadable").inc()
                continue
            self._count_skips(outcome)
            notices.extend(outcome.notices)
        # One notice per delivery id within the batch (a record read twice in one batch).
        unique = list({n.delivery_id: n for n in notices}.values())
        await asyncio.gather(*(self.deliver(n) for n in unique))

    def _count_skips(self, outcome: Outcome) -> None:
        for reason, n in outcome.skipped.items():
            NOTIFICATIONS.labels("none", f"skipped_{reason}").inc(n)

    def escalate_overdue(self) -> None:
        for key, group in self.book.overdue(self.clock()):
            group.escalating = True
            task = asyncio.create_task(self._escalate(key, group))
            self._escalations.add(task)
            task.add_done_callback(self._escalations.discard)

    async def _escalate(self, key: tuple[str, int], group) -> None:
        try:
            outcome = self.rules.escalate(group.desk, key[0], key[1], group.step + 1, set(group.notified),
                                          group.summary, self.roster.current(), self.clock())
            self._count_skips(outcome)
            if not outcome.notices:
                group.final = True
                return
            log.warning("特急工单未确认，升级 unacknowledged urgent order %s v%d: step %d to %s", key[0], key[1],
                        group.step + 1, ", ".join(sorted({n.person.id for n in outcome.notices})))
            NOTIFICATIONS.labels("none", "escalated").inc()
            await asyncio.gather(*(self.deliver(n) for n in outcome.notices))
        finally:
            group.escalating = False

    async def deliver(self, notice: Notice) -> None:
        did = notice.delivery_id
        if self.book.done(did) or did in self._in_flight:
            NOTIFICATIONS.labels(notice.channel, "duplicate").inc()
            return
        self._in_flight.add(did)
        try:
            await self._deliver(notice, did)
        finally:
            self._in_flight.discard(did)

    async def _deliver(self, notice: Notice, did: str) -> None:
        now = self.clock()
        claim = self.book.claimed(did)
        if claim is not None:
            # A notifier died while the channel had this message: whether it went out is
            # unknown.  Never sent twice blindly ([in_flight], docs/notifier.md).
            policy = getattr(self.settings.in_flight, notice.channel, "report")
            if policy == "report":
                await self._unknown(notice, claim)
                return
            NOTIFICATIONS.labels(notice.channel, "resent").inc()
            log.warning("结果未知，以同一投递号重发 outcome unknown, resent under the same delivery id "
                        "(the receiver deduplicates): %s to %s by %s", did, notice.person.id, notice.channel)
        limit = self.settings.limits.per_person_per_hour
        # a delivery with a record was admitted (and counted) when first queued
        if (limit and not notice.urgent and notice.kind != "emergency" and did not in self.book.deliveries
                and self.book.sent_since(notice.person.id, notice.channel, now - timedelta(hours=1)) >= limit):
            NOTIFICATIONS.labels(notice.channel, "skipped_rate_limited").inc()
            log.warning("限流 rate limit: %s had %d messages by %s this hour, %s not sent", notice.person.id,
                        limit, notice.channel, did)
            return
        due = DeliveryBook.ack_due(now, self.settings.escalation.ack_minutes) if notice.urgent else None
        base = self._base(notice, due)
        if claim is None:
            await self._write(DeliveryRecord(status="queued", at=now, **base))
        retry = self.settings.retry
        sender = self.senders.get(notice.channel)
        slots = self._slots.setdefault(notice.channel, asyncio.Semaphore(self.settings.in_flight.concurrency))
        detail = ""
        for attempt in range(1, retry.attempts + 1):
            try:
                if sender is None:
                    raise ChannelError(f"channel {notice.channel} is not configured")
                async with slots:
                    # The claim, acknowledged by Kafka (acks=all) before the channel has the
                    # message: a successor that finds it knows the outcome is in doubt.
                    await self._write(DeliveryRecord(status="sending", at=self.clock(), attempts=attempt, **base))
                    detail = await sender.send(notice, notice.person.address(notice.channel))
            except ChannelError as e:
                detail = str(e)[:500]
                if attempt < retry.attempts:
                    NOTIFICATIONS.labels(notice.channel, "retried").inc()
                    await self._write(DeliveryRecord(status="retrying", at=self.clock(), attempts=attempt,
                                                     detail=detail, **base))
                    await asyncio.sleep(retry.delay(attempt))
                    continue
                await self._dead(notice, base, attempt, detail)
                return
            sent_at = self.clock()
            await self._write(DeliveryRecord(status="sent", at=sent_at, attempts=attempt, detail=detail,
                                             sent_at=sent_at, **base))
            NOTIFICATIONS.labels(notice.channel, "sent").inc()
            self.sent += 1
            return

    # -- SMS delivery reports ---------------------------------------------------------------

    def _on_receipt(self, receipt: Receipt) -> None:
        task = asyncio.create_task(self.receipt(receipt))
        self._receipt_tasks.add(task)
        task.add_done_callback(self._receipt_tasks.discard)

    async def receipt(self, r: Receipt, wait: float = 5.0) -> None:
        """短信回执: a final delivery report makes the SMS delivery ``delivered`` or ``failed``
        (the first final report of any part decides; an acked delivery stays acked)."""
        status = r.status
        if status is None:
            return
        waited = 0.0
        while (did := self.book.by_smsc_id.get(r.message_id)) is None:
            if waited >= wait:   # a receipt may outrun the sent record it answers — not this long
                NOTIFICATIONS.labels("sms", "receipt_unmatched").inc()
                log.warning("无法匹配的短信回执 SMS delivery report for an unknown message %s (%s)", r.message_id, r.stat)
                return
            await asyncio.sleep(0.25)
            waited += 0.25
        rec = self.book.deliveries[did]
        if rec.status not in ("sent", "sending", "retrying"):
            return      # already delivered, failed by an earlier part, or acked
        NOTIFICATIONS.labels("sms", "delivered" if status == "delivered" else "undelivered").inc()
        await self._write(rec.model_copy(update={"status": status, "at": self.clock(), "detail": r.detail()}))
        if status == "failed":
            log.error("短信未送达 SMS %s to %s not delivered: %s", did, rec.person, r.detail())

    @staticmethod
    def _base(notice: Notice, due: datetime | None) -> dict[str, Any]:
        return dict(delivery_id=notice.delivery_id, work_order_id=notice.work_order_id, version=notice.version,
                    person=notice.person.id, channel=notice.channel, kind=notice.kind, desk=notice.desk,
                    urgent=notice.urgent, step=notice.step, final=notice.final, ack_due_at=due,
                    summary=notice.summary)

    async def _unknown(self, notice: Notice, claim: DeliveryRecord) -> None:
        """A claim without an outcome, on a channel that cannot deduplicate: failed with detail
        outcome_unknown and a dead letter for a person to check — not a second message.  The
        claim's ack due stays, so an urgent order nobody acknowledges still escalates."""
        at = self.clock()
        detail = (f"{UNKNOWN_OUTCOME}: the notifier stopped while {notice.channel} had the message "
                  f"(claimed {claim.at.isoformat()}, attempt {claim.attempts}); not sent again — check with "
                  f"the person or the {notice.channel} server")
        base = {**self._base(notice, claim.ack_due_at), "summary": claim.summary or notice.summary}
        await self._write(DeliveryRecord(status="failed", at=at, attempts=claim.attempts, detail=detail, **base))
        NOTIFICATIONS.labels(notice.channel, "unknown").inc()
        dead = {"reason": "notification_outcome_unknown", "detail": detail, "delivery_id": notice.delivery_id,
                "work_order_id": notice.work_order_id, "version": notice.version, "person": notice.person.id,
                "channel": notice.channel, "kind": notice.kind, "attempts": claim.attempts,
                "claimed_at": claim.at.isoformat(), "dead_at": at.isoformat()}
        await (await self.producer.send(deadletter_topic(self.topics), orjson.dumps(dead),
                                        key=notice.delivery_id.encode()))
        log.error("投递结果未知 delivery %s to %s by %s: the notifier stopped while sending; reported "
                  "outcome_unknown, not sent again", notice.delivery_id, notice.person.id, notice.channel)

    async def ack(self, delivery_id: str, by: str) -> DeliveryRecord:
        """签收: the delivery acked (the escalation of its order version stops)."""
        rec = self.book.deliveries[delivery_id]
        if rec.status == "acked":
            return rec
        now = self.clock()
        acked = rec.model_copy(update={"status": "acked", "at": now, "acked_at": now, "acked_by": by})
        await self._write(acked)
        NOTIFICATIONS.labels(rec.channel, "acked").inc()
        return acked

    async def _dead(self, notice: Notice, base: dict, attempts: int, detail: str) -> None:
        at = self.clock()
        await self._write(DeliveryRecord(status="failed", at=at, attempts=attempts, detail=detail, **base))
        NOTIFICATIONS.labels(notice.channel, "failed").inc()
        dead = {"reason": "notification_failed", "detail": f"{attempts} attempts: {detail}",
                "delivery_id": notice.delivery_id, "work_order_id": notice.work_order_id,
                "version": notice.version, "person": notice.person.id, "channel": notice.channel,
                "kind": notice.kind, "attempts": attempts, "dead_at": at.isoformat()}
        await (await self.producer.send(deadletter_topic(self.topics), orjson.dumps(dead),
                                        key=notice.delivery_id.encode()))
        log.error("投递失败 delivery %s to %s by %s failed after %d attempts: %s", notice.delivery_id,
                  notice.person.id, notice.channel, attempts, detail)


async def acknowledge(bootstrap: str, topics: Topics, delivery_id: str, by: str,
                      clock: Callable[[], datetime] = now_utc) -> DeliveryRecord | None:
    """签收回执: mark a delivery acked on the deliveries topic (a running notifier follows it
    and stops that order version's escalation).  None: no such delivery."""
    from citybrain.kafka.reading import read_topic_to_end

    book = DeliveryBook()

    def read(m) -> None:
        if m.value is not None:
            book.apply(DeliveryRecord.model_validate_json(m.value))
    await read_topic_to_end(bootstrap, deliveries_topic(topics), read, "回执 deliveries")
    rec = book.deliveries.get(delivery_id)
    if rec is None:
        return None
    now = clock()
    acked = rec.model_copy(update={"status": "acked", "at": now, "acked_at": now, "acked_by": by})
    producer = kafka_producer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await (await producer.send(deliveries_topic(topics), acked.model_dump_json().encode(),
                                   key=delivery_id.encode()))
    finally:
        await producer.stop()
    NOTIFICATIONS.labels(rec.channel, "acked").inc()
    return acked
