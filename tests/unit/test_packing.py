"""In-memory packing of work-order JSON: lossless, and far smaller than plain zlib."""

import zlib

from hypothesis import given
from hypothesis import strategies as st

from citybrain.packing import ZDICT, pack, unpack


@given(st.binary(max_size=4000))
def test_round_trip(data):
    assert unpack(pack(data)) == data


@given(st.lists(st.binary(max_size=2000), max_size=5))
def test_the_primed_compressor_gives_a_fresh_ones_bytes_call_after_call(chunks):
    for data in chunks:
        fresh = zlib.compressobj(1, zdict=ZDICT)
        assert pack(data) == fresh.compress(data) + fresh.flush()


def test_a_snapshot_packs_smaller_than_plain_zlib():
    snap = (b'{"work_order_id":"WO-road_damage-9f1c2b7a55e0d4c3b2a1","version":2,"status":"dispatched",'
            b'"category":"road_damage","category_name":"\\u9053\\u8def\\u7834\\u635f","fusion_group":"road_damage",'
            b'"priority":"normal","department":"city_mgmt","route_rule":"category:road_damage","location":'
            b'{"lon":117.87123,"lat":36.80211,"district_code":"370306","street_code":"370306003",'
            b'"community_code":"370306003002","grid_code":"370306003002011"},"description":"",'
            b'"opened_at":"2026-11-22T07:01:13.512000Z","created_at":"2026-11-22T07:01:14.100231Z",'
            b'"time_limit_basis":"working","time_limit_hours":24.0,"due_at":"2026-11-24T10:00:00Z"}')
    assert len(pack(snap)) < 0.7 * len(zlib.compress(snap, 1))
