"""Property: whatever a signed-in operator's browser posts to the console's forms (with
the right CSRF token), the answer is a redirect or a clear refusal, never an error, and
a refused form changes nothing."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.console.console_setup import PASSWORD, console_web, hidden_csrf, make_operator

ACTIONS = [
    "/console/stripe/retry",
    "/console/jobs/retry",
    "/console/erasure/cancel",
    "/console/erasure/request",
    "/console/privacy/export",
    "/console/backups/run",
    "/console/backups/verify",
    "/console/campaigns/1/action",
]
FIELDS = (
    "event_id",
    "all",
    "job_id",
    "account_id",
    "with_instances",
    "instance_id",
    "backup_id",
    "action",
    "confirm",
)
values = st.one_of(
    st.text(max_size=40),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(
        ["0", "1", "-1", "all", "start", "cancel", "pause", "00000000-0000-0000-0000-000000000000"]
    ),
)
forms = st.dictionaries(st.sampled_from(FIELDS), values, max_size=4)


@pytest.fixture
async def signed_in(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[str, aiohttp.ClientSession, str]]:
    name = f"forms-{secrets.token_hex(4)}"
    assert make_operator(name, "operator").returncode == 0
    with console_web(tmp_path) as base:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.get(f"{base}/console/login") as page:
                token = hidden_csrf(await page.text())
            form = {"csrf_token": token, "username": name, "password": PASSWORD}
            async with client.post(f"{base}/console/login", data=form) as answer:
                html = await answer.text()
            yield base, client, hidden_csrf(html)


async def _state(pool: asyncpg.Pool) -> tuple[int, ...]:
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM erasure_requests),
                  (SELECT count(*) FROM stripe_events WHERE state = 'failed'),
                  (SELECT count(*) FROM breach_campaigns WHERE state <> 'draft')"""
    )
    assert row is not None
    return tuple(row)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=forms, action=st.sampled_from(ACTIONS))
async def test_any_form_is_answered_with_a_redirect_or_a_refusal(
    signed_in: tuple[str, aiohttp.ClientSession, str], pool: asyncpg.Pool, form: dict[str, str], action: str
) -> None:
    base, client, token = signed_in
    before = await _state(pool)
    async with client.post(
        f"{base}{action}", data={**form, "csrf_token": token}, allow_redirects=False
    ) as answer:
        body = await answer.text()
        status = answer.status
    assert status in (303, 400, 404, 409), (action, form, status, body[:200])
    if status != 303 or not re.search(r"/console/jobs\?name=", answer.headers.get("Location", "")):
        assert await _state(pool) == before  # only an accepted export or erasure adds a row
