"""An independent detector of card numbers, for the scans: written apart from the masker
(workers/card_numbers.py), so that a blind spot in one is not the other's.

A number stands alone (not inside a hex hash or an id: bounded by anything but a letter
or a digit); its digits may be separated by up to three separators (whitespace of any
kind, `-`, `.`, `/`); every window of 13 to 19 of its digits is tried with Luhn.
"""

from __future__ import annotations

SEPARATORS = frozenset("-./")


def _is_separator(char: str) -> bool:
    return char in SEPARATORS or char.isspace()


def _luhn(digits: list[int]) -> bool:
    doubled = [(d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d for i, d in enumerate(reversed(digits))]
    return sum(doubled) % 10 == 0


def _numbers(text: str) -> list[tuple[str, list[int]]]:
    """(the text of the number, its digits) for each number standing alone."""
    found = []
    i = 0
    while i < len(text):
        if not text[i].isdecimal() or (i > 0 and text[i - 1].isalnum()):
            i += 1
            continue
        start, end, digits = i, i, []
        j = i
        while j < len(text):
            if text[j].isdecimal():
                digits.append(int(text[j]))
                end = j = j + 1
                continue
            k = j
            while k < len(text) and k - j < 3 and _is_separator(text[k]):
                k += 1
            if k > j and k < len(text) and text[k].isdecimal():
                j = k
                continue
            break
        if end >= len(text) or not text[end].isalpha():
            found.append((text[start:end], digits))
        i = max(end, i + 1)
    return found


def card_numbers(text: str) -> list[str]:
    """The numbers in `text` that hold a Luhn-valid window of 13 to 19 digits."""
    hits = []
    for written, digits in _numbers(text):
        windows = (
            digits[first : first + length]
            for first in range(len(digits))
            for length in range(13, 20)
            if first + length <= len(digits) and digits[first] != 0
        )
        if any(_luhn(window) for window in windows):
            hits.append(written)
    return hits
