from hypothesis import given
from hypothesis import strategies as st

from citybrain.domain.masking import mask_bytes, mask_phone, mask_text


def test_mobile_numbers_are_masked():
    assert mask_text("联系电话13812345678谢谢") == "联系电话138****5678谢谢"
    assert mask_text("call +86 138-1234-5678") == "call 138****5678"


def test_id_card_numbers_are_masked_before_phones():
    out = mask_text("身份证370306199001011234，电话13905331234")
    assert out == "身份证370***********1234，电话139****1234"
    assert mask_text("证件号37030619900101123X") == "证件号370***********123X"


def test_landlines_are_masked():
    assert mask_text("座机0533-6123456") == "座机0533-****3456"


def test_other_numbers_are_kept():
    assert mask_text("积水约30厘米，持续15分钟，2辆车") == "积水约30厘米，持续15分钟，2辆车"
    assert mask_text("订单号 20261122") == "订单号 20261122"


def test_contact_phone_masked_form():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("12345") == "*2345"


@given(st.from_regex(r"1[3-9]\d{9}", fullmatch=True), st.text(max_size=20).filter(lambda s: not any(c.isdigit() for c in s)))
def test_no_mobile_number_survives(phone, text):
    out = mask_text(text + phone + text)
    assert phone not in out and phone[-4:] in out


@given(st.from_regex(r"\d{17}[\dX]", fullmatch=True))
def test_no_id_card_survives(idcard):
    out = mask_text(f"身份证{idcard}。")
    assert idcard not in out and out.startswith(f"身份证{idcard[:3]}")


@given(raw=st.binary(max_size=200).filter(lambda b: not any(48 <= c <= 57 for c in b)))
def test_bytes_without_digits_are_kept_as_they_are(raw):
    assert mask_bytes(raw) == raw


@given(prefix=st.binary(max_size=40), middle=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
       suffix=st.binary(max_size=40))
def test_no_mobile_number_survives_in_raw_bytes_whatever_surrounds_it(prefix, middle, suffix):
    # Bytes around it end in a non-digit, as in a JSON string.
    raw = prefix + b" " + middle.encode() + b" " + suffix
    assert middle.encode() not in mask_bytes(raw)


def _mask_whole(text: str) -> str:
    """The three patterns over the whole text: what mask_text must give, only faster."""
    from citybrain.domain import masking
    return masking._mask_run(text)


@given(st.text(alphabet="0123456789 -+Xxa中１", max_size=80))
def test_masking_inside_digit_runs_gives_what_the_patterns_give_over_the_whole_text(text):
    assert mask_text(text) == _mask_whole(text)


@given(st.lists(st.sampled_from(["13812345678", "+86 138-1234-5678", "370306199001011234",
                                 "37030619900101123X", "0533-6123456", "x", " ", "-", "+", "9",
                                 "2026-11-24", "A", "订单"]), max_size=12))
def test_masking_numbers_side_by_side_gives_what_the_patterns_give(parts):
    text = "".join(parts)
    assert mask_text(text) == _mask_whole(text)


@given(st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(
    [b"13812345678", b"+86 138-1234-5678", b"370306199001011234", b"0533-1234567", b"\xff1\xef\xbc\x91",
     b"12 34", b"X", b"-"])), max_size=12))
def test_masking_bytes_is_masking_their_latin_1_text(parts):
    raw = b"".join(parts)
    assert mask_bytes(raw) == mask_text(raw.decode("latin-1")).encode("latin-1")
