"""A stage's batch size (stream/batchsize.py): bounded by its handling time, so what a
kill replays is bounded in seconds whatever the box's speed."""

from hypothesis import given
from hypothesis import strategies as st

from citybrain.stream.batchsize import BatchSize


def test_full_speed_keeps_the_largest_batch():
    size = BatchSize(most=2000, target=0.25)
    assert size.records == 50                    # nothing measured yet: the smallest
    size.handled(50, 0.0025)                     # 20k records/s
    assert size.records == 2000
    size.handled(2000, 0.1)                      # 2,000 take 0.1 s
    assert size.records == 2000


def test_a_slow_box_takes_smaller_batches_and_a_fast_one_grows_them_back():
    size = BatchSize(most=2000, least=50, target=0.25)
    for _ in range(10):
        size.handled(2000, 2.0)                  # 1k records/s: a 2,000 batch is 2 s of work
    assert 240 <= size.records <= 260            # ~0.25 s of work
    for _ in range(20):
        size.handled(size.records, size.records / 20_000)
    assert size.records == 2000


def test_a_handful_of_records_says_nothing_of_the_rate():
    size = BatchSize(most=2000, least=50)
    size.handled(3, 0.2)                         # three records and the batch's own overhead
    assert size.records == 50                    # still nothing measured


@given(st.lists(st.tuples(st.integers(0, 5000), st.floats(0, 30, allow_nan=False)), max_size=30))
def test_the_size_stays_between_its_bounds(batches):
    size = BatchSize(most=2000, least=50, target=0.25)
    for records, seconds in batches:
        size.handled(records, seconds)
        assert 50 <= size.records <= 2000
