"""短信回执 SMS delivery reports (SMPP 3.4 §5.2.12, Appendix B): what an SMSC's ``deliver_sm``
with ``esm_class`` "SMSC delivery receipt" says of a message it took (pure, unit-tested).

The message is named by the ``receipted_message_id`` TLV or the text's ``id:``; its fate by
the ``message_state`` TLV or the text's ``stat:``.  Final states only: ``DELIVRD`` →
``delivered``; ``EXPIRED``, ``DELETED``, ``UNDELIV``, ``REJECTD`` → ``failed``; ``ENROUTE``,
``ACCEPTD``, ``UNKNOWN`` say nothing yet (None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RECEIPT_ESM_MASK = 0x3C          # esm_class bits 5-2: the message type
SMSC_DELIVERY_RECEIPT = 0x04
# message_state (SMPP 3.4 §5.3.2.35) → the text's stat: form
STATE_NAMES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
               7: "UNKNOWN", 8: "REJECTD"}
DELIVERED = frozenset({"DELIVRD"})
FAILED = frozenset({"EXPIRED", "DELETED", "UNDELIV", "REJECTD"})
_ID = re.compile(rb"(?:^|\s)id:(\S+)", re.IGNORECASE)
_STAT = re.compile(rb"(?:^|\s)stat:(\w+)", re.IGNORECASE)
_ERR = re.compile(rb"(?:^|\s)err:(\w+)", re.IGNORECASE)


@dataclass(frozen=True)
class Receipt:
    message_id: str          # the SMSC's id from its submit_sm_resp
    stat: str                # DELIVRD, UNDELIV, …
    err: str = ""

    @property
    def status(self) -> str | None:
        """The delivery's status this receipt gives: delivered, failed, or None (not final)."""
        if self.stat in DELIVERED:
            return "delivered"
        if self.stat in FAILED:
            return "failed"
        return None

    def detail(self) -> str:
        return f"smsc receipt {self.message_id}: stat {self.stat}" + (f" err {self.err}" if self.err else "")


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    raw = value if isinstance(value, bytes) else value.encode()
    return raw.rstrip(b"\x00").decode("ascii", "replace").strip()


def parse(esm_class: int, short_message: bytes | None, receipted_message_id: bytes | str | None = None,
          message_state: int | None = None) -> Receipt | None:
    """The receipt a ``deliver_sm`` carries, or None when it is not one (a mobile-originated
    message) or names no message."""
    if esm_class & RECEIPT_ESM_MASK != SMSC_DELIVERY_RECEIPT:
        return None
    text = short_message or b""
    message_id = _text(receipted_message_id)
    if not message_id:
        m = _ID.search(text)
        message_id = _text(m.group(1)) if m else ""
    if not message_id:
        return None
    stat = STATE_NAMES.get(message_state or 0, "")
    if not stat:
        m = _STAT.search(text)
        stat = _text(m.group(1)).upper() if m else "UNKNOWN"
    e = _ERR.search(text)
    return Receipt(message_id, stat, _text(e.group(1)) if e else "")
