"""The media store: images only (by their bytes), content-addressed, written whole; the
topic's records folded in, a record whose bytes do not hash to its key skipped."""

import hashlib
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citybrain.web.media import MAX_BYTES, MediaStore, sniff
from citybrain.wire.media import sha_of_url, url_of

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 40
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x02" * 20


def test_sniff_by_magic_not_by_name():
    assert (sniff(PNG), sniff(JPEG), sniff(WEBP)) == ("image/png", "image/jpeg", "image/webp")
    assert sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>") is None and sniff(b"") is None


def test_put_is_content_addressed_and_idempotent(tmp_path):
    store = MediaStore(tmp_path)
    sha, kind = store.put(PNG)
    assert sha == hashlib.sha256(PNG).hexdigest() and kind == "image/png"
    assert store.put(PNG) == (sha, kind) and store.path(sha).read_bytes() == PNG
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ValueError, match="image"):
        store.put(b"#!/bin/sh\nrm -rf /")
    with pytest.raises(ValueError, match="larger"):
        store.put(JPEG + b"\x00" * MAX_BYTES)


def test_fold_takes_the_topics_records_and_skips_a_lying_key(tmp_path):
    store = MediaStore(tmp_path)
    good = hashlib.sha256(JPEG).hexdigest()
    rec = lambda key, value, offset: SimpleNamespace(key=key, value=value, topic="media", partition=0,  # noqa: E731
                                                     offset=offset)
    store.fold([rec(good.encode(), JPEG, 0), rec(b"0" * 64, PNG, 1), rec(b"1" * 64, b"not an image", 2),
                rec(None, JPEG, 3), rec(good.encode(), None, 4)])
    assert store.has(good)
    assert not store.has("0" * 64) and not store.has(hashlib.sha256(PNG).hexdigest())


@given(st.binary(min_size=32, max_size=32), st.sampled_from(["image/jpeg", "image/png", "image/webp"]),
       st.sampled_from(["", "https://city.example.invalid"]))
def test_a_media_url_names_its_hash(digest, kind, host):
    sha = digest.hex()
    assert sha_of_url(host + url_of(sha, kind)) == sha
    assert sha_of_url(f"{host}/api/v1/media/{sha}.gif") is None and sha_of_url("https://x/photo.jpg") is None
