"""Verify `Stripe-Signature`: HMAC-SHA256 of `{t}.{body}` with any configured secret.

Unlike stripe-python's `verify_header`, a timestamp too far in the *future* is refused
too: a signature captured now must not stay replayable for longer than the tolerance
just because its clock ran ahead.
"""

from __future__ import annotations

import hashlib
import hmac

TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """The request is not a fresh, authentic Stripe delivery. The message says why (no secrets)."""


def verify_signature(
    body: bytes, header: str | None, secrets: list[str], now: float, tolerance: int = TOLERANCE_SECONDS
) -> None:
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed Stripe-Signature timestamp") from None
        elif key == "v1":
            signatures.append(value.encode())
    if timestamp is None or not signatures:
        raise SignatureError("Stripe-Signature needs t= and at least one v1=")
    if abs(now - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")
    signed = str(timestamp).encode() + b"." + body
    # Compare every candidate with every secret: how long it takes says nothing of which matched.
    matched = False
    for secret in secrets:
        expected = hmac.digest(secret.encode(), signed, hashlib.sha256).hex().encode()  # one-shot, in C
        for signature in signatures:
            matched |= hmac.compare_digest(expected, signature)
    if not matched:
        raise SignatureError("no signature matches")
