"""API tokens for `POST /jobs/{name}`: `bnd_<id>_<secret>`, shown once, stored as sha256(secret).

The id part finds the row; the secret is compared in constant time. Secrets carry
256 random bits, so a fast hash is enough (a slow password hash buys nothing here).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import asyncpg

from workers.jobs import SCOPES

ALL_SCOPES = "*"
_TOKEN = re.compile(r"^bnd_([0-9]{1,18})_([A-Za-z0-9_-]{43})$")


class TokenError(Exception):
    """Bad token name or scope (raised by `create_token`)."""


@dataclass(frozen=True)
class TokenIdentity:
    token_id: int
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return ALL_SCOPES in self.scopes or scope in self.scopes


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_token(conn: asyncpg.Connection | asyncpg.Pool, name: str, scopes: list[str]) -> str:
    """Store a new token and return it; this is the only time the secret exists in clear."""
    unknown = sorted(set(scopes) - {*SCOPES, ALL_SCOPES})
    if not scopes or unknown:
        raise TokenError(
            f"unknown scope(s) {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(SCOPES)} or {ALL_SCOPES}"
        )
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
        raise TokenError("token names are 1-63 characters: lowercase letters, digits, . _ -")
    secret = secrets.token_urlsafe(32)
    try:
        token_id = await conn.fetchval(
            "INSERT INTO api_tokens (name, secret_hash, scopes) VALUES ($1, $2, $3) RETURNING id",
            name,
            _hash(secret),
            sorted(set(scopes)),
        )
    except asyncpg.UniqueViolationError:
        raise TokenError(f"a token named {name!r} already exists (revoke it first)") from None
    return f"bnd_{token_id}_{secret}"


async def revoke_token(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> bool:
    revoked = await conn.fetchval(
        "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING id",
        name,
    )
    return revoked is not None


async def list_tokens(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, name, scopes, created_at, revoked_at FROM api_tokens ORDER BY id")


class TokenVerifier:
    """Checks bearer tokens, remembering good ones for `cache_seconds` to spare the database."""

    def __init__(self, pool: asyncpg.Pool | asyncpg.Connection, *, cache_seconds: float) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[float, TokenIdentity]] = {}

    async def verify(self, token: str) -> TokenIdentity | None:
        # Keyed by a hash: a dict lookup on the raw token would compare it non-constant-time.
        cache_key = _hash(token)
        cached = self._cache.get(cache_key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        match = _TOKEN.match(token)
        if match is None:
            return None
        row = await self._pool.fetchrow(
            "SELECT secret_hash, scopes FROM api_tokens WHERE id = $1 AND revoked_at IS NULL",
            int(match.group(1)),
        )
        # Compare even when the row is missing, so timing says nothing about which ids exist.
        expected = row["secret_hash"] if row is not None else b"\0" * 32
        if not hmac.compare_digest(expected, _hash(match.group(2))) or row is None:
            return None
        identity = TokenIdentity(int(match.group(1)), frozenset(row["scopes"]))
        if self._cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[cache_key] = (now + self._cache_seconds, identity)
        return identity
