"""渠道 The channels: email over SMTP, signed webhooks, SMS over SMPP 3.4.

Each ``send`` returns a detail for the receipt or raises ``ChannelError`` (the notifier
retries with backoff, up to its budget).  The delivery id travels with every message
(``Message-ID`` of an email, ``X-Citybrain-Delivery`` and ``Idempotency-Key`` of a webhook,
the SMS text) so a receiver can recognise a repeat: a webhook whose outcome a crash left
unknown is sent again under the same id, and its receiver must keep the first one only
(docs/notifier.md, "Exactly once").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import smtplib
import socket
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol

import aiohttp
import orjson

from citybrain.notify.deliveries import SMPP_SENT
from citybrain.notify.receipts import Receipt, parse
from citybrain.notify.rules import Notice
from citybrain.notify.settings import SmppSettings, SmtpSettings, WebhookSettings, secret

log = logging.getLogger("citybrain.notifier")
SIGNATURE_HEADER = "X-Citybrain-Signature"
DELIVERY_HEADER = "X-Citybrain-Delivery"
IDEMPOTENCY_HEADER = "Idempotency-Key"     # the same delivery id, under the header's common name
TIMESTAMP_HEADER = "X-Citybrain-Timestamp"


class ChannelError(Exception):
    pass


class Sender(Protocol):
    async def send(self, notice: Notice, address: str) -> str: ...

    async def close(self) -> None: ...


def sign(key: bytes, body: bytes) -> str:
    """The webhook signature header's value: ``sha256=`` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(sign(key, body), header)


class EmailSender:
    def __init__(self, s: SmtpSettings):
        self.s = s

    def _send(self, notice: Notice, address: str) -> str:
        msg = EmailMessage()
        msg["From"] = self.s.sender
        msg["To"] = address
        msg["Subject"] = notice.subject()
        msg["Date"] = formatdate(localtime=False)
        domain = self.s.sender.rsplit("@", 1)[-1]
        msg["Message-ID"] = f"<{notice.delivery_id}@{domain}>"
        msg["X-Citybrain-Delivery"] = notice.delivery_id
        msg.set_content(notice.text(), charset="utf-8")
        try:
            with smtplib.SMTP(self.s.host, self.s.port, timeout=self.s.timeout_seconds) as smtp:
                if self.s.starttls:
                    smtp.starttls()
                if self.s.username:
                    smtp.login(self.s.username, secret(self.s.password_env))
                refused = smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:
            raise ChannelError(f"smtp: {type(e).__name__}: {e}") from e
        if refused:
            raise ChannelError(f"smtp refused: {refused}")
        return f"smtp {self.s.host}:{self.s.port} accepted"

    async def send(self, notice: Notice, address: str) -> str:
        return await asyncio.to_thread(self._send, notice, address)

    async def close(self) -> None:
        return None


def webhook_body(notice: Notice) -> bytes:
    return orjson.dumps({"delivery_id": notice.delivery_id, "kind": notice.kind,
                         "work_order_id": notice.work_order_id, "version": notice.version,
                         "person": notice.person.id, "urgent": notice.urgent, "step": notice.step,
                         "subject": notice.subject(), "text": notice.text(),
                         "category_name": notice.summary.get("category_name"),
                         "place": notice.summary.get("place"), "due_at": notice.summary.get("due_at")})


class WebhookSender:
    def __init__(self, s: WebhookSettings):
        self.s = s
        self.key = secret(s.secret_env).encode()
        self.session: aiohttp.ClientSession | None = None

    async def send(self, notice: Notice, address: str) -> str:
        if not self.key:
            raise ChannelError(f"webhook: no HMAC key ({self.s.secret_env} is not set)")
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.s.timeout_seconds))
        body = webhook_body(notice)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.key, body),
                   DELIVERY_HEADER: notice.delivery_id, IDEMPOTENCY_HEADER: notice.delivery_id,
                   TIMESTAMP_HEADER: str(int(time.time()))}
        try:
            async with self.session.post(address, data=body, headers=headers) as resp:
                text = (await resp.text())[:200]
                if resp.status >= 300:
                    raise ChannelError(f"webhook: HTTP {resp.status} {text}")
                return f"webhook HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ChannelError(f"webhook: {type(e).__name__}: {e}") from e

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class SmsSender:
    """SMPP 3.4 ``submit_sm`` through smpplib (a bind as transmitter per message; UCS-2 text
    in concatenated parts).  A ``submit_sm_resp`` with status 0 is ``sent`` (the SMSC took it)."""

    def __init__(self, s: SmppSettings):
        self.s = s

    def _send(self, notice: Notice, address: str) -> str:
        import smpplib.client
        import smpplib.consts
        import smpplib.exceptions
        import smpplib.gsm

        ids: list[str] = []
        client = smpplib.client.Client(self.s.host, self.s.port, timeout=self.s.timeout_seconds,
                                         allow_unknown_opt_params=True)   # as SMPP 3.4 says
        client.set_message_sent_handler(lambda pdu: ids.append(
            pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else str(pdu.message_id)))
        try:
            client.connect()
            client.bind_transmitter(system_id=self.s.system_id, password=secret(self.s.password_env))
            parts, coding, esm_class = smpplib.gsm.make_parts(notice.text())
            for part in parts:
                client.send_message(source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                                    source_addr_npi=smpplib.consts.SMPP_NPI_UNK,
                                    source_addr=self.s.source_addr,
                                    dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                                    dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                                    destination_addr=address, short_message=part, data_coding=coding,
                                    esm_class=esm_class, registered_delivery=True)
                client.read_once()   # the submit_sm_resp: an error status raises
        except (OSError, smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError) as e:
            raise ChannelError(f"smpp: {type(e).__name__}: {e}") from e
        finally:
            try:
                client.unbind()   # some SMSCs close at once, without an unbind_resp: the message is sent
            except (OSError, smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError):
                pass
            client.disconnect()
        if len(ids) != len(parts):
            raise ChannelError(f"smpp: {len(ids)} of {len(parts)} parts acknowledged")
        return SMPP_SENT + ",".join(ids)

    async def send(self, notice: Notice, address: str) -> str:
        return await asyncio.to_thread(self._send, notice, address)

    async def close(self) -> None:
        return None


class SmsReceiptListener:
    """短信回执: a receiver bind to the SMSC (smpplib, in a thread of its own, reconnecting
    with backoff) that hands every delivery report to ``on_receipt`` on the event loop.
    ``deliver_sm`` is answered ROK once read (a receipt the notifier cannot match is logged)."""

    def __init__(self, s: SmppSettings, on_receipt: Callable[[Receipt], None],
                 loop: asyncio.AbstractEventLoop):
        self.s, self.on_receipt, self.loop = s, on_receipt, loop
        self.bound = threading.Event()
        self._stop = threading.Event()
        self._client: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="smpp-receipts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = getattr(self._client, "_socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)    # wakes the thread's blocking read

    def _received(self, pdu: Any, **_kw: Any) -> None:
        receipt = parse(int(getattr(pdu, "esm_class", 0) or 0), getattr(pdu, "short_message", b""),
                        getattr(pdu, "receipted_message_id", None), getattr(pdu, "message_state", None))
        if receipt is not None:
            self.loop.call_soon_threadsafe(self.on_receipt, receipt)

    def _run(self) -> None:
        import smpplib.client
        import smpplib.exceptions

        backoff = 1.0
        while not self._stop.is_set():
            client = smpplib.client.Client(self.s.host, self.s.port, timeout=self.s.timeout_seconds,
                                           allow_unknown_opt_params=True)
            client.set_message_received_handler(self._received)
            self._client = client
            try:
                client.connect()
                client.bind_receiver(system_id=self.s.system_id, password=secret(self.s.password_env))
                self.bound.set()
                backoff = 1.0
                while not self._stop.is_set():
                    client.read_once()
            except (OSError, smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError) as e:
                if not self._stop.is_set():
                    log.warning("短信回执连接中断 SMPP receipt bind to %s:%d lost (%s: %s), again in %.0f s",
                                self.s.host, self.s.port, type(e).__name__, e, backoff)
            finally:
                self.bound.clear()
                with contextlib.suppress(Exception):
                    client.disconnect()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
