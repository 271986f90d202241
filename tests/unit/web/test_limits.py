"""Per-token API limits against a fake clock."""

from citybrain.web.limits import RequestRate, StreamSlots


def test_a_burst_then_the_rate():
    now = [0.0]
    rate = RequestRate(rate=10, burst=3, clock=lambda: now[0])
    assert [rate.wait("a") for _ in range(3)] == [0, 0, 0]
    assert rate.wait("a") == 0.1                 # empty: one more in a tenth of a second
    assert rate.wait("b") == 0                   # every token has its own bucket
    now[0] = 0.1
    assert rate.wait("a") == 0
    now[0] = 100.0                               # a long pause refills only up to the burst
    assert [rate.wait("a") for _ in range(4)][-1] > 0


def test_streams_per_token():
    slots = StreamSlots(most=2)
    assert slots.take("a") and slots.take("a") and not slots.take("a")
    assert slots.take("b")
    slots.give_back("a")
    assert slots.take("a") and not slots.take("a")
