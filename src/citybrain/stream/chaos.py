"""Fault injection for the chaos suite (tests/chaos): ``CITYBRAIN_CHAOS=point:probability``
makes the worker SIGKILL itself at that point of a stage's batch with that probability —
e.g. ``after_produce:0.05`` between a batch's produce and its commit.  Unset (always, in
production) it costs one comparison per batch."""

from __future__ import annotations

import os
import random
import signal

_SPEC = os.environ.get("CITYBRAIN_CHAOS", "")
_POINT, _, _P = _SPEC.partition(":")
_PROBABILITY = float(_P or 0) if _POINT else 0.0


def point(name: str) -> None:
    if _PROBABILITY and name == _POINT and random.random() < _PROBABILITY:
        os.kill(os.getpid(), signal.SIGKILL)
