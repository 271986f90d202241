"""KRaft cluster ids for the local broker's storage format."""

import base64

from citybrain_tools.local_kafka.broker import new_cluster_id


def test_cluster_ids_never_look_like_an_option_and_decode_to_16_bytes():
    # 1 in 64 raw ids would start with "-" and break `kafka-storage format -t ID`.
    for _ in range(5000):
        cid = new_cluster_id()
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
