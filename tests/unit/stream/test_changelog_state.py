"""The batch stages' state: what reaches the changelog, and when."""

from hypothesis import given, strategies

from citybrain.stream.state import ChangelogState


def keys(outputs):
    return sorted((o.partition, o.key.decode(), o.value) for o in outputs)


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def drain_at(st: ChangelogState, now: float) -> list:
    """The state's drain with its (fake) clock at ``now``."""
    st.clock.now = now
    return st.drain()


def test_changes_are_drained_once_per_key_with_their_partition():
    st = ChangelogState("s", "s-changelog", lazy_seconds=2)
    st.set(0, "a", b"1")
    st.set(0, "a", b"2")
    st.set(3, "b", b"x")
    assert keys(st.drain()) == [(0, "a", b"2"), (3, "b", b"x")]
    assert st.drain() == []
    assert st.get(0, "a") == b"2" and st.get(1, "a") is None


def test_lazy_changes_wait_for_their_interval_but_eager_ones_overtake_them():
    st = ChangelogState("s", "s-changelog", lazy_seconds=2, clock=FakeClock())
    t0 = st.clock()
    st.set(0, "a", b"marks-1", lazy=True)
    assert drain_at(st, t0 + 1) == [] and st.get(0, "a") == b"marks-1"
    st.set(0, "b", b"marks", lazy=True)
    st.set(0, "b", b"alarm", lazy=False)           # an eager write supersedes the lazy one
    assert keys(drain_at(st, t0 + 1)) == [(0, "b", b"alarm")]
    assert keys(drain_at(st, t0 + 2.5)) == [(0, "a", b"marks-1")]


def test_dropping_partitions_forgets_their_pending_changes():
    st = ChangelogState("s", "s-changelog", lazy_seconds=0)
    st.set(1, "a", b"1")
    st.set(2, "b", b"2", lazy=True)
    st.drop({1, 2})
    assert st.drain() == [] and st.get(1, "a") is None


def test_a_lazy_change_after_an_eager_one_in_the_same_batch_is_not_lost():
    st = ChangelogState("s", "s-changelog", lazy_seconds=2)
    st.set(0, "a", b"alarm")
    st.set(0, "a", b"alarm+marks", lazy=True)
    assert keys(st.drain()) == [(0, "a", b"alarm+marks")]


def test_compressed_state_reads_back_and_drains_plain_json():
    state = ChangelogState("work_orders", "t-changelog", compress=True)
    body = b'{"work_order_id": "WO-x", "events": [' + b'{"k": "v"}, ' * 50 + b'{}]}'
    state.set(1, "WO-x", body)
    assert state.get(1, "WO-x") == body and list(state.values(1)) == [body]
    assert len(state.data[1]["WO-x"]) < len(body) / 3        # held compressed
    [out] = state.drain()
    assert (out.key, out.value, out.partition) == (b"WO-x", body, 1)   # the changelog gets JSON


def counted_encoder():
    calls = []

    def encode(v):
        calls.append(v)
        return str(v).encode()
    return encode, calls


def test_a_deferred_value_is_encoded_once_when_due_or_read():
    encode, calls = counted_encoder()
    st = ChangelogState("s", "s-changelog", lazy_seconds=2, encode=encode, clock=FakeClock())
    t0 = st.clock()
    for v in range(100):                       # a device's marks, reading after reading
        st.set_later(0, "a", v)
    assert calls == []
    assert drain_at(st, t0 + 1) == [] and calls == []          # not due yet
    assert keys(drain_at(st, t0 + 2.5)) == [(0, "a", b"99")] and calls == [99]
    st.set_later(0, "b", 7)
    assert st.get(0, "b") == b"7" and calls == [99, 7]         # read: encoded then
    assert keys(drain_at(st, t0 + 5)) == [(0, "b", b"7")]


def test_deferred_values_follow_eager_writes_deletes_and_drops():
    encode, _ = counted_encoder()
    st = ChangelogState("s", "s-changelog", lazy_seconds=2, encode=encode, clock=FakeClock())
    t0 = st.clock()
    st.set_later(0, "a", 1)
    st.set(0, "a", b"alarm")                   # an eager write supersedes the deferred one
    st.set_later(0, "a", 2)                    # … and a later one rides along with it
    st.set_later(0, "gone", 3)
    st.delete(0, "gone")
    st.set_later(5, "dropped", 4)
    st.drop({5})
    assert keys(drain_at(st, t0 + 1)) == [(0, "a", b"2"), (0, "gone", None)]
    assert drain_at(st, t0 + 2.5) == [] and st.get(5, "dropped") is None
    st.set_later(1, "x", 8)
    assert list(st.items(1)) == [("x", b"8")] and list(st.values(1)) == [b"8"]


@given(strategies.lists(strategies.tuples(
    strategies.sampled_from(["eager", "lazy", "later", "delete", "drain", "get", "drop"]),
    strategies.integers(0, 2), strategies.sampled_from("abc"), strategies.integers(0, 9)), max_size=60))
def test_set_later_is_seen_as_a_lazy_set_of_the_encoded_value(ops):
    """Whatever the sequence, deferring the encoding changes neither what is read nor the
    latest value each drain sends per key."""
    def encode(v):
        return str(v).encode()
    clock = FakeClock(0.0)
    plain = ChangelogState("s", "s-changelog", lazy_seconds=2, clock=clock)
    later = ChangelogState("s", "s-changelog", lazy_seconds=2, encode=encode, clock=clock)
    for op, p, k, v in ops:
        if op == "eager":
            plain.set(p, k, encode(v))
            later.set(p, k, encode(v))
        elif op == "lazy":
            plain.set(p, k, encode(v), lazy=True)
            later.set(p, k, encode(v), lazy=True)
        elif op == "later":
            plain.set(p, k, encode(v), lazy=True)
            later.set_later(p, k, v)
        elif op == "delete":
            plain.delete(p, k)
            later.delete(p, k)
        elif op == "drop":
            plain.drop({p})
            later.drop({p})
        elif op == "get":
            assert plain.get(p, k) == later.get(p, k)
        else:
            clock.now += v / 3
            assert keys(plain.drain()) == keys(later.drain())
    assert keys(plain.drain(everything=True)) == keys(later.drain(everything=True))
    for p in range(3):
        assert sorted(plain.items(p)) == sorted(later.items(p))


def test_lazy_keys_are_due_each_after_its_own_first_change_not_all_at_once():
    """1,000 devices read evenly over 2 s, drained every 10 ms: each drain sends the few
    that came due, not all 1,000 in one batch (the normalise hop's tail was that burst)."""
    encode, _ = counted_encoder()
    clock = FakeClock(0.0)
    st = ChangelogState("s", "s-changelog", lazy_seconds=2, encode=encode, clock=clock)
    sizes, first_sent = [], {}
    for tick in range(600):                       # 6 s of 10 ms batches
        clock.now = tick / 100
        for d in range(tick * 1000 // 200 % 1000, (tick + 1) * 1000 // 200 % 1000 or 1000):
            st.set_later(d % 3, f"dev-{d}", tick)   # each device read once every 2 s
        out = st.drain()
        sizes.append(len(out))
        for o in out:
            first_sent.setdefault(o.key, clock.now)
    assert len(first_sent) == 1000                # every device's marks reached the changelog
    assert max(sizes[300:]) <= 10                 # ~5 a batch in the steady state
    assert sum(sizes[300:]) <= 3 * 1000 + 10      # each key once per 2 s window at most


@given(strategies.lists(strategies.tuples(
    strategies.sampled_from(["eager", "lazy", "later", "delete", "drain", "get", "drop", "wait"]),
    strategies.integers(0, 2), strategies.sampled_from("abc"), strategies.integers(0, 9)), max_size=60))
def test_no_lazy_change_waits_longer_than_lazy_seconds_past_a_drain(ops):
    """A lazy change reaches a drain at most ``lazy_seconds`` after it was made."""
    clock = FakeClock(0.0)
    st = ChangelogState("s", "s-changelog", lazy_seconds=2, encode=lambda v: str(v).encode(), clock=clock)
    waiting: dict[tuple[int, str], float] = {}    # lazy changes not yet drained: since when
    for op, p, k, v in ops:
        if op in ("lazy", "later"):
            if op == "lazy":
                st.set(p, k, str(v).encode(), lazy=True)
            else:
                st.set_later(p, k, v)
            waiting.setdefault((p, k), clock.now)
        elif op == "eager":
            st.set(p, k, str(v).encode())
            waiting.pop((p, k), None)          # goes with the next drain whatever comes after
        elif op == "delete":
            st.delete(p, k)
            waiting.pop((p, k), None)
        elif op == "drop":
            st.drop({p})
            waiting = {key: t for key, t in waiting.items() if key[0] != p}
        elif op == "get":
            st.get(p, k)
        elif op == "wait":
            clock.now += v / 3
        else:
            sent = {(o.partition, o.key.decode()) for o in st.drain()}
            waiting = {key: t for key, t in waiting.items() if key not in sent}
            # Still waiting: not yet due — with the state's own arithmetic (now - 2 against
            # the stamp), as now - stamp rounds 2.667 - 0.667 up to exactly 2.0.
            assert all(t > clock.now - 2 for t in waiting.values()), (clock.now, waiting)


def test_a_deferred_value_too_large_for_the_changelog_is_dropped_not_raised(caplog):
    # Encoded after its record was handled (when due, or when another key's read settles
    # the partition): raising there would stop the stage or dead-letter the wrong record.
    big = "x" * (ChangelogState.MAX_VALUE_BYTES + 1)
    st = ChangelogState("health", "h-changelog", lazy_seconds=2, clock=FakeClock(),
                        encode=lambda v: v.encode())
    t0 = st.clock()
    st.set(0, "dev-ok", b"old")
    st.drain()
    st.set_later(0, "dev-big", big)
    st.set_later(0, "dev-ok", "new")
    assert dict(st.items(0)) == {"dev-ok": b"new"}        # a read of the partition goes on
    st.set_later(1, "dev-big", big)
    assert keys(drain_at(st, t0 + 3)) == [(0, "dev-big", None), (0, "dev-ok", b"new"), (1, "dev-big", None)]
    assert st.get(1, "dev-big") is None and st.drain() == []
    assert "state value too large" in caplog.text
