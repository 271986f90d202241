"""Where a consumed record came from, in the domain's terms — one place for the unit of
the timestamp (aiokafka gives milliseconds)."""

from __future__ import annotations

from citybrain.domain.normalize import RecordMeta


def record_meta(m) -> RecordMeta:
    """``m``: an aiokafka ``ConsumerRecord`` (timestamp in ms)."""
    return RecordMeta(m.topic, m.partition, m.offset, m.timestamp / 1000.0, m.key)
