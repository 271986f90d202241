"""Reporter pseudonyms (DESIGN §16): a keyed hash at normalisation, matched back by the
notifier's roster with the same key."""

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from citybrain.domain.pseudonym import DEVELOPMENT, DEVELOPMENT_KEY, Pseudonymiser, from_environment, is_pseudonym

KEY = "k" * 32
P = Pseudonymiser(KEY)
ids = st.text(min_size=1, max_size=128)


@given(ids)
def test_a_pseudonym_is_stable_shaped_and_checkable(rid):
    p = P(rid)
    assert p == Pseudonymiser(KEY)(rid) and is_pseudonym(p) and p.startswith("rp_") and len(p) == 35
    assert P.matches(rid, p) and not P.matches(rid + "x", p)


@given(ids, ids)
def test_two_reporters_never_share_a_pseudonym(a, b):
    assert (P(a) == P(b)) == (a == b)


@given(ids)
def test_another_key_gives_another_pseudonym(rid):
    assert Pseudonymiser("another key of the city, 32 chars")(rid) != P(rid) != DEVELOPMENT(rid)


def test_a_phone_number_is_not_readable_in_its_pseudonym():
    phone = "13905331234"
    p = P(phone)
    assert phone not in p and "5331234" not in p and not is_pseudonym(phone)


def test_the_key_comes_from_the_environment_and_a_short_one_is_refused():
    dev = from_environment({})
    assert dev.development and dev("HL-1") == Pseudonymiser(DEVELOPMENT_KEY)("HL-1")
    assert from_environment({"CITYBRAIN_REPORTER_KEY": ""}).development
    real = from_environment({"CITYBRAIN_REPORTER_KEY": KEY})
    assert not real.development and real("HL-1") == P("HL-1")
    assert from_environment({"OTHER": KEY}, "OTHER")("HL-1") == P("HL-1")
    with pytest.raises(ValueError, match="CITYBRAIN_REPORTER_KEY"):
        from_environment({"CITYBRAIN_REPORTER_KEY": "short"})
    assert KEY not in repr(real) and KEY not in str(real)


def test_a_report_leaves_the_normaliser_with_its_reporters_pseudonym_only(normalizer, meta):
    from tests.unit.domain.test_normalize import report
    raw = report(reporter_id="13905331234", description="井盖破损")
    ev = normalizer.report(raw, meta("ingest.reports", b"13905331234")).event
    assert ev is not None and ev.reporter_id == DEVELOPMENT("13905331234")
    assert b"13905331234" not in orjson.dumps(ev.model_dump(mode="json"))
    normalizer_with_key = type(normalizer)(taxonomy=normalizer.taxonomy, sensor_rules=normalizer.sensor_rules,
                                           video_thresholds=normalizer.video_thresholds, city=normalizer.city,
                                           registry=normalizer.registry, limits=normalizer.limits, pseudonym=P)
    ev2 = normalizer_with_key.report(raw, meta("ingest.reports", b"13905331234")).event
    assert ev2 is not None and ev2.reporter_id == P("13905331234") != ev.reporter_id
