"""Properties of the signature check and the card-number mask."""

from __future__ import annotations

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from tasks.billing.masking import MASK, luhn_valid, mask_card_numbers, may_hold_card_number
from tasks.billing.signature import SignatureError, verify_signature

bodies = st.binary(min_size=0, max_size=2048).map(lambda raw: raw.decode("latin-1").encode())
secrets_ = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40)
NOW = 1_800_000_000


@given(body=bodies, secret=secrets_, skew=st.integers(-300, 300))
def test_stripes_own_signature_verifies_within_the_tolerance(body: bytes, secret: str, skew: int) -> None:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=NOW + skew)
    verify_signature(body, header, [secret], now=NOW)


@given(body=bodies, secret=secrets_, flip=st.integers(min_value=0))
def test_any_changed_byte_is_refused(body: bytes, secret: str, flip: int) -> None:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=NOW)
    tampered = body + b"x" if not body else body[: flip % len(body)] + b"\x00" + body[flip % len(body) + 1 :]
    if tampered == body:
        tampered = body + b" "
    with pytest.raises(SignatureError):
        verify_signature(tampered, header, [secret], now=NOW)


@given(header=st.text(max_size=200))
def test_arbitrary_headers_never_crash(header: str) -> None:
    with pytest.raises(SignatureError):
        verify_signature(b"{}", header, ["whsec_x"], now=NOW)


@given(skew=st.integers(301, 10**6), sign=st.sampled_from([-1, 1]))
def test_timestamps_beyond_the_tolerance_either_way_are_refused(skew: int, sign: int) -> None:
    header = stripe.WebhookSignature.generate_signature_header("{}", "whsec_x", timestamp=NOW + sign * skew)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(b"{}", header, ["whsec_x"], now=NOW)


def _with_check_digit(prefix: str) -> str:
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


@given(prefix=st.from_regex(r"[1-9][0-9]{11,17}", fullmatch=True), sep=st.sampled_from(["", " ", "-"]))
def test_every_luhn_valid_card_number_is_masked(prefix: str, sep: str) -> None:
    number = _with_check_digit(prefix)
    grouped = sep.join(number[i : i + 4] for i in range(0, len(number), 4))
    masked = mask_card_numbers({"a": [f"pay {grouped} now"], "b": int(number)})
    assert number not in str(masked) and grouped not in str(masked)
    assert masked["b"] == MASK


def test_luhn_invalid_and_short_numbers_are_kept() -> None:
    assert mask_card_numbers({"invoice": "4242424242424241", "zip": 75001}) == {
        "invoice": "4242424242424241",
        "zip": 75001,
    }


@given(
    text=st.text(alphabet=st.sampled_from('0123456789 -x,:"{}'), max_size=80),
    prefix=st.from_regex(r"[1-9][0-9]{11,17}", fullmatch=True),
    sep=st.sampled_from(["", " ", "-"]),
)
def test_the_receivers_pre_check_lets_no_card_number_through(text: str, prefix: str, sep: str) -> None:
    # The receiver stores a body as received when the pre-check says nothing can need masking.
    number = _with_check_digit(prefix)
    grouped = sep.join(number[i : i + 4] for i in range(0, len(number), 4))
    for body in (text, f"{text}{grouped}{text}"):
        if not may_hold_card_number(body.encode()):
            assert mask_card_numbers(body) == body
    assert may_hold_card_number(f"{text}{grouped}{text}".encode())


def test_escaped_or_non_ascii_digits_take_the_full_path() -> None:
    escaped = "".join(f"\\u{ord(d):04x}" for d in "4242424242424242")
    assert may_hold_card_number(('{"note": "' + escaped + '"}').encode())
    assert may_hold_card_number('{"note": "٤٢٤٢"}'.encode())
    assert not may_hold_card_number(b'{"created": 1795608438, "id": "evt_1234567890ab"}')


def test_a_card_number_hidden_in_json_escapes_is_masked_before_storing() -> None:
    from tasks.billing.inbox import parse_event

    escaped = "".join(f"\\u{ord(d):04x}" for d in "4242424242424242")
    body = '{"id": "evt_x1", "object": "event", "type": "t", "created": 1, "data": {"object": {"note": "'
    event = parse_event((body + escaped + '"}}}').encode())
    assert "4242424242424242" not in event.payload and MASK in event.payload
