"""Properties of the signature check and the card-number mask."""

from __future__ import annotations

import json

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.billing.signature import SignatureError, verify_signature
from tests.privacy.card_detector import card_numbers
from workers.card_numbers import MASK, luhn_valid, mask_card_numbers, may_hold_card_number

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


def test_short_numbers_and_numbers_without_a_card_in_them_are_kept() -> None:
    # No window of 13 to 19 of its digits passes Luhn (tests/privacy/card_detector.py).
    no_card = "4229401980715161"
    assert card_numbers(no_card) == []
    assert mask_card_numbers({"invoice": no_card, "zip": 75001, "last4": "4242"}) == {
        "invoice": no_card,
        "zip": 75001,
        "last4": "4242",
    }


_SEPARATOR = st.sampled_from(["", " ", "  ", "-", ".", "/", "\u00a0", "\u202f", " - "])


@given(
    prefix=st.from_regex(r"[1-9][0-9]{11,17}", fullmatch=True),
    separator=_SEPARATOR,
    before=st.sampled_from(["", "1 ", "card ", "n°", "\n"]),
    after=st.sampled_from(["", " 123", " exp 12/29", ".", " 7"]),
    as_key=st.booleans(),
)
def test_a_card_number_is_masked_wherever_it_hides(
    prefix: str, separator: str, before: str, after: str, as_key: bool
) -> None:
    number = _with_check_digit(prefix)
    grouped = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    text = f"{before}{grouped}{after}"
    masked = mask_card_numbers({text: 1} if as_key else {"note": text})
    assert card_numbers(json.dumps(masked, ensure_ascii=False)) == [], masked


@given(text=st.text(alphabet=st.sampled_from("0123456789 -./x\u00a0"), max_size=60))
def test_what_the_masker_keeps_the_detector_does_not_call_a_card(text: str) -> None:
    assert card_numbers(str(mask_card_numbers(text))) == []


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


def test_a_card_number_written_as_a_json_float_is_masked_before_storing() -> None:
    """Stored as written: 4242424242424242.0, or digits after a point, would be a card
    number in the inbox's text. (Seen: a Luhn-valid 17-digit fraction left in a payload.)"""
    from tasks.billing.inbox import parse_event
    from workers.card_numbers import MASK

    body = '{"id": "evt_x1", "object": "event", "type": "t", "created": 1, "data": {"object": '
    for number, kept in (("4242424242424242.0", False), ("0.4242424242424242", False), ("1.5", True)):
        event = parse_event((body + '{"x": ' + number + "}}}").encode())
        assert (number in event.payload) is kept and (MASK in event.payload) is not kept, event.payload


# Text as JSON may carry it: with NULs and unpaired surrogates, which only \\u escapes deliver.
_texts = st.text(st.sampled_from("\x00\ud800\udfffaé") | st.characters(exclude_categories=[]), max_size=6)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_texts, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(
    event_type=_texts,
    data=st.dictionaries(_texts, _json_values, max_size=4),
    livemode=st.booleans() | _json_values,
)
def test_any_json_body_is_either_a_storable_event_or_refused_as_malformed(
    event_type: str, data: dict[str, object], livemode: object
) -> None:
    """A well-formed envelope carrying any text: what parse_event lets through can never
    make the inbox's INSERT fail (a 500). The envelope's own checks have their cases in
    tests/billing/test_stripe_webhook.py."""
    import json
    import re

    from tasks.billing.inbox import MAX_CREATED, MalformedEvent, parse_event

    try:
        envelope = {
            "id": "evt_1",
            "object": "event",
            "type": event_type,
            "created": 1,
            "data": {"object": data},
        }
        event = parse_event(json.dumps({**envelope, "livemode": livemode}).encode())
    except MalformedEvent:
        return
    assert re.fullmatch(r"evt_[A-Za-z0-9_]+", event.id) and len(event.id) <= 255
    assert event.type and "\x00" not in event.type and len(event.type) <= 255
    assert 0 <= event.created.timestamp() <= MAX_CREATED and isinstance(event.livemode, bool)
    strings, stack = [], [json.loads(event.payload)]
    while stack:  # every string of the stored payload, keys included
        value = stack.pop()
        if isinstance(value, dict):
            strings += list(value)
            stack += list(value.values())
        elif isinstance(value, list):
            stack += value
        elif isinstance(value, str):
            strings.append(value)
    for text in strings:  # what Postgres would refuse: a NUL, an unpaired surrogate
        assert "\x00" not in text
        text.encode()
