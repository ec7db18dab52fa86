"""Defence in depth: anything that looks like a full card number is kept out of every
table. The Stripe inbox masks it in payloads before storing them (Stripe never sends one;
if it ever did, it would not land here); the job API refuses arguments that hold one."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

MASK = "[card number removed]"
# A run of digits, any of them separated by up to three of: whitespace (no-break spaces
# included), dashes, dots, slashes. Within a run every window of 13 to 19 digits that
# starts with a non-zero digit (no card number starts with 0) and passes Luhn is a card
# number: "4242 4242 4242 4242 123" (a card and its CVC) and "1 4242424242424242" (a
# lone digit before it) hold one, although the run as a whole fails Luhn.
_RUN = re.compile(r"\d(?:[\s./-]{0,3}\d)*")
# For the pre-check: every ASCII digit becomes "0", "e" and "E" become "e", what may come
# before a JSON value (":", ",", "[") becomes ":", every other byte "x", and separators
# and JSON's whitespace are deleted. A candidate then leaves 13 "0"s in a row, or a JSON
# number with an exponent (":0e", ":00e"…), which Postgres writes out in full (1.5e+20 is
# stored as 150000000000000000000). Digits and an "e" inside an id ("sub_1e5…") follow a
# letter or a quote, so they do not count. bytes.translate and `in` run in C, several
# times faster than a regex scan of the body; the regex only reads the translated bytes,
# from their rare ":"s.
_SEPARATORS = b" -./\t\n\r"
_CLASSES = b"".join(
    b"0" if char in "0123456789" else b"e" if char in "eE" else b":" if char in ":,[" else b"x"
    for char in map(chr, range(256))
)
_THIRTEEN = b"0" * 13
_EXPONENT = re.compile(rb":0+e")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)  # any script's digit, as `\d` finds them
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_spans(run: str, offset: int) -> list[tuple[int, int]]:
    """(start, end) in the text of each Luhn-valid window of the run starting at `offset`."""
    places = [offset + index for index, char in enumerate(run) if char.isdecimal()]
    digits = "".join(char for char in run if char.isdecimal())
    spans = []
    for first in range(len(digits) - 12):
        if digits[first] == "0":
            continue
        for length in range(13, min(19, len(digits) - first) + 1):
            if luhn_valid(digits[first : first + length]):
                spans.append((places[first], places[first + length - 1] + 1))
    return spans


def _mask_text(text: str) -> str:
    spans = [span for run in _RUN.finditer(text) if run.end() - run.start() >= 13
             for span in _card_spans(run.group(0), run.start())]  # fmt: skip
    if not spans:
        return text
    out, position = [], 0
    for start, end in sorted(spans):
        if end <= position:
            continue
        if start >= position:
            out += [text[position:start], MASK]
        position = end
    out.append(text[position:])
    return "".join(out)


def may_hold_card_number(body: bytes) -> bool:
    """Cheap pre-check on a raw body: False means nothing in it can need masking.

    A body with JSON escapes (`\\u0034` is a "4", `\\t` a separator) or non-ASCII bytes
    (digits of other scripts, no-break spaces) always takes the full path, which decodes
    before it looks.
    """
    if b"\\" in body or not body.isascii():
        return True
    classes = body.translate(_CLASSES, _SEPARATORS)
    return _THIRTEEN in classes or (b"0e" in classes and _EXPONENT.search(classes) is not None)


def mask_card_numbers(value: Any) -> Any:
    """A copy of a decoded JSON value with every card number masked, in keys too."""
    if isinstance(value, str):
        return _mask_text(value) if any(c.isdigit() for c in value) else value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        text = str(abs(value))
        return MASK if _mask_text(text) != text else value
    if isinstance(value, float):
        # Judged as jsonb stores it, in fixed-point notation: 3.724961645683773e+16 is
        # stored as 37249616456837730, which holds windows its repr does not.
        text = format(Decimal(repr(value)), "f")
        return MASK if _mask_text(text) != text else value
    if isinstance(value, dict):
        masked = {}
        for key, item in value.items():
            name = _mask_text(key) if isinstance(key, str) else key
            while name in masked:  # two keys masked alike: both kept
                name += "'"
            masked[name] = mask_card_numbers(item)
        return masked
    if isinstance(value, list):
        return [mask_card_numbers(item) for item in value]
    return value


def holds_card_number(value: Any) -> bool:
    """Whether a decoded JSON value holds anything `mask_card_numbers` would mask."""
    return bool(mask_card_numbers(value) != value)
