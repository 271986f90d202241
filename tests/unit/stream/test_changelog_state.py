"""The batch stages' state: what reaches the changelog, and when."""

from citybrain.stream.batch import ChangelogState


def keys(outputs):
    return sorted((o.partition, o.key.decode(), o.value) for o in outputs)


def test_changes_are_drained_once_per_key_with_their_partition():
    st = ChangelogState("s", "s-changelog", lazy_seconds=2)
    st.set(0, "a", b"1")
    st.set(0, "a", b"2")
    st.set(3, "b", b"x")
    assert keys(st.drain(now=st.last_lazy_drain)) == [(0, "a", b"2"), (3, "b", b"x")]
    assert st.drain(now=st.last_lazy_drain) == []
    assert st.get(0, "a") == b"2" and st.get(1, "a") is None


def test_lazy_changes_wait_for_their_interval_but_eager_ones_overtake_them():
    st = ChangelogState("s", "s-changelog", lazy_seconds=2)
    t0 = st.last_lazy_drain
    st.set(0, "a", b"marks-1", lazy=True)
    assert st.drain(now=t0 + 1) == [] and st.get(0, "a") == b"marks-1"
    st.set(0, "b", b"marks", lazy=True)
    st.set(0, "b", b"alarm", lazy=False)           # an eager write supersedes the lazy one
    assert keys(st.drain(now=t0 + 1)) == [(0, "b", b"alarm")]
    assert keys(st.drain(now=t0 + 2.5)) == [(0, "a", b"marks-1")]


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
    assert keys(st.drain(now=st.last_lazy_drain)) == [(0, "a", b"alarm+marks")]


def test_compressed_state_reads_back_and_drains_plain_json():
    state = ChangelogState("work_orders", "t-changelog", compress=True)
    body = b'{"work_order_id": "WO-x", "events": [' + b'{"k": "v"}, ' * 50 + b'{}]}'
    state.set(1, "WO-x", body)
    assert state.get(1, "WO-x") == body and list(state.values(1)) == [body]
    assert len(state.data[1]["WO-x"]) < len(body) / 3        # held compressed
    [out] = state.drain(now=0.0)
    assert (out.key, out.value, out.partition) == (b"WO-x", body, 1)   # the changelog gets JSON
