from __future__ import annotations

import json

import asyncpg
import pytest

from tests.processes import run_bindery
from workers.tokens import TokenError, TokenVerifier, create_token, revoke_token


async def test_a_created_token_verifies_with_its_scopes(pool: asyncpg.Pool) -> None:
    token = await create_token(pool, "svc-verify", ["erasure", "billing"])
    identity = await TokenVerifier(pool, cache_seconds=0).verify(token)
    assert identity is not None
    assert identity.allows("erasure") and not identity.allows("backups")
    stored = await pool.fetchval("SELECT secret_hash FROM api_tokens WHERE name = 'svc-verify'")
    # The secret may itself contain "_", so split at the first two only.
    secret = token.split("_", 2)[2]
    assert len(secret) >= 40 and secret.encode() not in stored


async def test_a_tampered_or_revoked_token_is_refused(pool: asyncpg.Pool) -> None:
    token = await create_token(pool, "svc-revoke", ["system"])
    verifier = TokenVerifier(pool, cache_seconds=0)
    assert await verifier.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert await verifier.verify("not-a-token") is None
    assert await revoke_token(pool, "svc-revoke")
    assert await verifier.verify(token) is None


async def test_unknown_scope_and_duplicate_names_are_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(TokenError, match="unknown scope"):
        await create_token(pool, "svc-bad", ["everything"])
    await create_token(pool, "svc-dup", ["system"])
    with pytest.raises(TokenError, match="already exists"):
        await create_token(pool, "svc-dup", ["system"])
    assert await pool.fetchval("SELECT count(*) FROM api_tokens WHERE name = 'svc-bad'") == 0


def test_cli_creates_lists_and_revokes_without_showing_secrets(database_url: str) -> None:
    created = run_bindery("token", "create", "cli-token", "--scope", "system")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    listed = run_bindery("token", "list", "--json")
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["cli-token"]["scopes"] == ["system"]
    assert token not in listed.stdout
    assert run_bindery("token", "revoke", "cli-token").returncode == 0
    again = run_bindery("token", "revoke", "cli-token")
    assert again.returncode == 1 and "no active token" in again.stderr
