"""The local copy of a stage state (RocksDB): per partition, atomic, with its changelog
offset; too old a copy is not used (compaction may have dropped tombstones it predates)."""

from citybrain.stream.localstore import LocalStore


def test_a_partition_copy_round_trips_with_its_offset(tmp_path):
    now = [1000.0]
    store = LocalStore(tmp_path, "t-changelog", clock=lambda: now[0])
    store.save(0, {"a": b"1", "b": b"2"}, 17)
    store.save(1, {"a": b"other"}, 5)
    store.save(0, {"b": b"3"}, 20)                 # replaces the partition's copy whole
    assert store.load(0) == ({"b": b"3"}, 20)
    assert store.load(1) == ({"a": b"other"}, 5)
    assert store.load(2) is None
    store.close()
    again = LocalStore(tmp_path, "t-changelog", clock=lambda: now[0])   # survives a restart
    assert again.load(0) == ({"b": b"3"}, 20)
    now[0] += LocalStore.MAX_AGE + 1
    assert again.load(0) is None                   # too old: read the changelog instead
    again.close()


def test_partitions_ten_and_one_do_not_mix(tmp_path):
    store = LocalStore(tmp_path, "t")
    store.save(1, {"x": b"1"}, 1)
    store.save(10, {"y": b"10"}, 2)
    store.save(11, {}, 3)
    assert store.load(1) == ({"x": b"1"}, 1) and store.load(10) == ({"y": b"10"}, 2) and store.load(11) == ({}, 3)
    store.close()
