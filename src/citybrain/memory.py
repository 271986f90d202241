"""Give freed heap memory back to the system.

Measured (docs/performance.md, "A year of history"): after folding 187k state records of
a month's history, the worker's view held ~175 MB of Python objects but its RSS was
1.5 GB — glibc keeps freed memory below a live allocation at the top of its heap.
``malloc_trim(0)`` returns it (1.5 GB → 231 MB).  Called when the whole-log readers have
caught up and then every minute; a no-op where the C library is not glibc."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("citybrain.memory")


def _load_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_trim = _load_trim()


def release_free_memory() -> bool:
    """True when the C library gave memory back."""
    return bool(_trim(0)) if _trim is not None else False
