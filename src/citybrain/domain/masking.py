"""Personal-data masking (脱敏) for free text and phone numbers.

ID-card numbers (18 digits, last may be X) keep their first 3 and last 4
characters; mobile numbers keep 3 + 4; landlines keep the area code and the last
4 digits.  ID cards are masked first because they contain phone-like runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{3})\d{11}(\d{3}[\dXx])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)[- ]?\d{4}[- ]?(\d{4})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})[- ]?\d{3,4}(\d{4})(?!\d)")


# Every match of the three is a run of digits, spaces, hyphens and a leading "+" (an ID
# card may end in X): masking looks only inside such runs.  Three patterns tried at every
# position of a 64 KiB dead letter cost 10 ms of the stage's event loop; with this scan, 1.2.
_RUN = re.compile(r"[+\d][\d \-]{5,}[\dXx]")


def _mask_run(text: str) -> str:
    text = _ID_CARD.sub(lambda m: f"{m.group(1)}{'*' * 11}{m.group(2)}", text)
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)
    return _LANDLINE.sub(lambda m: f"{m.group(1)}-****{m.group(2)}", text)


def mask_text(text: str) -> str:
    return _mask_runs(text, _RUN.finditer(text))


def _mask_runs(text: str, runs: Iterable[re.Match[str]] | Iterable[re.Match[bytes]]) -> str:
    out: list[str] = []
    done = 0
    for run in runs:
        # One character of context each side: the patterns look one character around.
        start, end = max(run.start() - 1, 0), min(run.end() + 1, len(text))
        masked = _mask_run(text[start:end])
        head, tail = run.start() - start, end - run.end()
        out += (text[done:run.start()], masked[head:len(masked) - tail])
        done = run.end()
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


# The same runs found in the bytes (latin-1 has no digits but 0-9): a bytes pattern scans
# a 64 KiB dead letter in a third of the time the text pattern takes (0.16 against 0.5 ms).
_RUN_BYTES = re.compile(rb"[+0-9][0-9 \-]{5,}[0-9Xx]")


def mask_bytes(raw: bytes) -> bytes:
    """``mask_text`` over raw record bytes, whatever their encoding: read as latin-1 (one
    character per byte, so every other byte comes back as it was), digits masked."""
    runs = list(_RUN_BYTES.finditer(raw))
    if not runs:
        return raw
    return _mask_runs(raw.decode("latin-1"), runs).encode("latin-1")


def mask_phone(phone: str) -> str:
    """A contact phone in masked form; anything unrecognised keeps only its last 4 digits."""
    masked = mask_text(phone.strip())
    if masked != phone.strip():
        return masked
    digits = re.sub(r"\D", "", phone)
    return "*" * max(len(digits) - 4, 0) + digits[-4:]
