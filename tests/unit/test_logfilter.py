"""A broker outage must not flood the log: one line per kind of client error per interval,
with the count of those held back (issue 11: ~330 ERROR lines a second before)."""

import logging

from citybrain.logfilter import RepeatFilter


def rec(name: str, msg: str, level=logging.ERROR, args=()) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeated_client_errors_pass_once_per_interval_with_a_count():
    now = [0.0]
    f = RepeatFilter(every=10, clock=lambda: now[0])
    template = "Unable connect to %r: %s"
    passed = []
    for i in range(330 * 20):            # 20 s of an outage at the measured rate
        now[0] = i / 330
        r = rec("aiokafka.conn", template, args=(f"node-{i % 3}", "refused"))
        if f.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 2                # t=0 and t=10 s
    assert "+3299 like it" in passed[1]


def test_other_messages_and_our_own_logs_are_untouched():
    f = RepeatFilter(every=10, clock=lambda: 0.0)
    assert f.filter(rec("aiokafka.conn", "a")) and f.filter(rec("aiokafka.conn", "b"))
    assert all(f.filter(rec("citybrain.stage", "same")) for _ in range(5))
    assert all(f.filter(rec("aiokafka.conn", "x", level=logging.INFO)) for _ in range(5))
