"""What a person reads in a terminal: one clock and lines that fit.

* One clock: every time shown by the demo and the CLI is China Standard Time
  (Asia/Shanghai), whatever offset the record carries (sensors stamp +08:00, the
  worker UTC); lists say so once with ``CLOCK_LABEL``.
* Display width: CJK characters take two columns; lines are wrapped at
  ``MAX_COLUMNS`` by that width (``textwrap`` counts characters, so it cannot).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

CITY_TZ = ZoneInfo("Asia/Shanghai")
CLOCK_LABEL = "时间 CST"          # China Standard Time, UTC+8 (Asia/Shanghai)
MAX_COLUMNS = 100


def city_time(at: str | datetime, fmt: str = "%H:%M:%S") -> str:
    """``at`` (an ISO 8601 string or a datetime; naive means UTC) on the city's clock."""
    when = datetime.fromisoformat(at.replace("Z", "+00:00")) if isinstance(at, str) else at
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(CITY_TZ).strftime(fmt)


def width(s: str) -> int:
    """Columns ``s`` takes in a terminal: wide and full-width characters two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1
               for ch in s)


def pad(s: str, columns: int) -> str:
    return s + " " * max(0, columns - width(s))


def clip(s: str, columns: int) -> str:
    """``s`` cut to ``columns`` (an ellipsis marking the cut)."""
    if width(s) <= columns:
        return s
    out, used = "", 0
    for ch in s:
        if used + width(ch) > columns - 1:
            break
        out, used = out + ch, used + width(ch)
    return out + "…"


def wrap_items(head: str, items: Iterable[str], sep: str = ", ", columns: int = MAX_COLUMNS,
               indent: int | None = None) -> str:
    """``head`` followed by ``items`` joined by ``sep``, broken between items (never
    inside one) so no line is wider than ``columns``; continuation lines are indented
    ``indent`` spaces (default: the head's own indent + 4)."""
    items = list(items)
    if indent is None:
        indent = len(head) - len(head.lstrip(" ")) + 4
    gap = sep[len(sep.rstrip()):]        # what follows the sep's mark: its spaces
    lines: list[str] = []
    line, fresh = head, True
    for i, item in enumerate(items):
        piece = item + (sep.rstrip() if i < len(items) - 1 else "")
        add = piece if fresh else gap + piece
        if line.strip() and width(line) + width(add) > columns:
            lines.append(line.rstrip())
            line, add = " " * indent, piece
        line += clip(add, columns - width(line))
        fresh = False
    lines.append(line.rstrip())
    return "\n".join(lines)


def wrap_words(text: str, columns: int = MAX_COLUMNS, indent: int = 4) -> str:
    """``text`` broken at spaces so no line is wider than ``columns`` (display width)."""
    if width(text) <= columns:
        return text                       # its own spacing (aligned columns) kept
    lead = len(text) - len(text.lstrip(" "))
    lines: list[str] = []
    line = text[:lead]
    for word in text.split():
        if line.strip() and width(line) + 1 + width(word) > columns:
            lines.append(line)
            line = " " * indent
        line += (" " if line.strip() else "") + clip(word, columns - width(line) - 1)
    lines.append(line)
    return "\n".join(lines)
