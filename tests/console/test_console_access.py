"""Who may use the console, against a real `bindery web`: the login page's CSRF token,
sessions that time out and end, the guessing limit, the headers on every response, the
operator commands' refusals."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.console.console_setup import PASSWORD, console_web, hidden_csrf, make_operator

Client = aiohttp.ClientSession


@pytest.fixture
async def web(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    with console_web(tmp_path) as base:
        yield base


def _client() -> Client:
    # unsafe: the cookie jar keeps cookies of an IP address host (127.0.0.1)
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _log_in(client: Client, base: str, name: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
    async with client.get(f"{base}/console/login") as page:
        token = hidden_csrf(await page.text())
    form = {"csrf_token": token, "username": name, "password": password}
    async with client.post(f"{base}/console/login", data=form, allow_redirects=False) as answer:
        await answer.read()
        return answer


def _name() -> str:
    return f"op-{secrets.token_hex(4)}"


def _operator(role: str) -> str:
    name = _name()
    assert make_operator(name, role).returncode == 0
    return name


async def _account(pool: asyncpg.Pool, label: str) -> int:
    account_id: int = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id",
        f"{label}.{secrets.token_hex(4)}@example.fr",
    )
    return account_id


async def test_pages_need_a_session_and_every_answer_carries_the_security_headers(web: str) -> None:
    async with _client() as client:
        async with client.get(f"{web}/console/", allow_redirects=False) as answer:
            assert (answer.status, answer.headers["Location"]) == (303, "/console/login")
            csp = answer.headers["Content-Security-Policy"]
        async with client.get(f"{web}/console/login") as login_page:
            assert login_page.status == 200
            headers = login_page.headers
        async with client.post(f"{web}/console/logout", allow_redirects=False) as refused:
            assert refused.status == 403  # no session: no action
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in headers  # development: HSTS only in production


async def test_a_post_without_the_csrf_token_is_refused_the_login_form_included(
    web: str, pool: asyncpg.Pool
) -> None:
    name = _name()
    assert make_operator(name, "operator").returncode == 0
    async with _client() as client:
        async with client.get(f"{web}/console/login") as page:
            token = hidden_csrf(await page.text())
        for form in (
            {"username": name, "password": PASSWORD},
            {"csrf_token": token + "x", "username": name, "password": PASSWORD},
        ):
            async with client.post(f"{web}/console/login", data=form, allow_redirects=False) as answer:
                assert answer.status == 403
        signed_in = await _log_in(client, web, name)
        assert (signed_in.status, signed_in.headers["Location"]) == (303, "/console/")
        cookie = signed_in.cookies["bindery_console"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console/"
        async with client.get(f"{web}/console/") as overview:
            html = await overview.text()
        assert name in html and "Where every promise stands" in html
        async with client.post(f"{web}/console/logout", data={}, allow_redirects=False) as no_token:
            assert no_token.status == 403
        async with client.post(
            f"{web}/console/logout", data={"csrf_token": hidden_csrf(html)}, allow_redirects=False
        ) as logged_out:
            assert logged_out.status == 303
        async with client.get(f"{web}/console/", allow_redirects=False) as after:
            assert after.status == 303  # the session is gone
    actions = await pool.fetch(
        "SELECT actor, action FROM audit_log WHERE actor = $1 ORDER BY id", f"operator:{name}"
    )
    assert [row["action"] for row in actions] == ["console.login", "console.logout"]


async def test_five_wrong_passwords_close_the_door_and_an_unknown_name_is_not_kept(
    web: str, pool: asyncpg.Pool
) -> None:
    name = _name()
    assert make_operator(name, "viewer").returncode == 0
    async with _client() as client:
        for _ in range(5):
            assert (await _log_in(client, web, name, "not the password at all")).status == 401
        assert (await _log_in(client, web, name)).status == 429  # even the right one, for now
        typed = f"hunter2-{secrets.token_hex(4)}"  # a password typed into the name field
        assert (await _log_in(client, web, typed)).status == 401
    assert not await pool.fetchval(
        "SELECT count(*) FROM console_login_failures WHERE operator_name = $1", typed
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM console_login_failures WHERE operator_name = $1", name) == 5
    )


async def test_an_idle_session_and_a_disabled_operators_sessions_end(web: str, pool: asyncpg.Pool) -> None:
    idle, disabled = _name(), _name()
    for name in (idle, disabled):
        assert make_operator(name, "operator").returncode == 0
    async with _client() as first, _client() as second:
        assert (await _log_in(first, web, idle)).status == 303
        assert (await _log_in(second, web, disabled)).status == 303
        # 31 minutes without a request: the session has timed out.
        await pool.execute(
            """UPDATE operator_sessions SET last_seen_at = now() - interval '31 minutes'
                WHERE operator_id = (SELECT id FROM operators WHERE name = $1)""",
            idle,
        )
        async with first.get(f"{web}/console/", allow_redirects=False) as answer:
            assert answer.status == 303
        assert not await pool.fetchval(
            """SELECT count(*) FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
                WHERE o.name = $1""",
            idle,
        )
        async with second.get(f"{web}/console/", allow_redirects=False) as answer:
            assert answer.status == 200
        from tests.processes import run_bindery

        assert run_bindery("operator", "disable", disabled).returncode == 0
        async with second.get(f"{web}/console/", allow_redirects=False) as answer:
            assert answer.status == 303
        assert (await _log_in(second, web, disabled)).status == 401


def test_operator_commands_refuse_bad_input_and_change_nothing(database_url: str) -> None:
    from tests.processes import run_bindery

    name = _name()
    short = make_operator(name, "admin", "too short")
    assert short.returncode == 1 and "12 characters at least" in short.stderr
    assert name not in run_bindery("operator", "list").stdout
    bad = make_operator("Not A Name", "admin")
    assert bad.returncode == 1 and "a name is" in bad.stderr
    assert make_operator(name, "admin").returncode == 0
    again = make_operator(name, "viewer")
    assert again.returncode == 1 and f"an operator named {name} exists already" in again.stderr
    unknown = run_bindery("operator", "disable", "nobody-here")
    assert unknown.returncode == 1 and "no enabled operator named nobody-here" in unknown.stderr
    listed = run_bindery("operator", "list", "--json").stdout
    assert f'"name": "{name}"' in listed and "password" not in listed


async def test_a_viewer_sees_but_cannot_act_and_an_operators_action_is_audited(
    web: str, pool: asyncpg.Pool
) -> None:
    viewer, operator = _name(), _name()
    assert make_operator(viewer, "viewer").returncode == 0
    assert make_operator(operator, "operator").returncode == 0
    event_id = f"evt_console{secrets.token_hex(6)}"
    await pool.execute(
        """INSERT INTO stripe_events (id, type, created, livemode, state, attempts, last_error, payload)
           VALUES ($1, 'invoice.paid', now(), false, 'failed', 5, 'boom', '{}')""",
        event_id,
    )
    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash, status) VALUES ($1, 'x', 'disabled') RETURNING id",
        f"grace.{secrets.token_hex(4)}@example.fr",
    )
    await pool.execute(
        """INSERT INTO erasure_requests (account_id, requested_by, run_after)
           VALUES ($1, 'test', now() + interval '1 day')""",
        account_id,
    )
    async with _client() as client:
        assert (await _log_in(client, web, viewer)).status == 303
        async with client.get(f"{web}/console/stripe") as page:
            html = await page.text()
        assert event_id in html and "Retry" not in html  # shown, without the buttons
        token = hidden_csrf(html)
        for path, form in (
            ("/console/stripe/retry", {"event_id": event_id}),
            ("/console/erasure/cancel", {"account_id": str(account_id)}),
        ):
            async with client.post(
                f"{web}{path}", data={**form, "csrf_token": token}, allow_redirects=False
            ) as no:
                assert no.status == 403 and "needs the operator role" in await no.text()
    assert await pool.fetchval("SELECT state FROM stripe_events WHERE id = $1", event_id) == "failed"
    assert (
        await pool.fetchval("SELECT state FROM erasure_requests WHERE account_id = $1", account_id)
        == "pending"
    )

    async with _client() as client:
        assert (await _log_in(client, web, operator)).status == 303
        async with client.get(f"{web}/console/privacy") as page:
            token = hidden_csrf(await page.text())
        async with client.post(
            f"{web}/console/stripe/retry",
            data={"event_id": event_id, "csrf_token": token},
            allow_redirects=False,
        ) as retried:
            assert retried.status == 303
        async with client.post(
            f"{web}/console/erasure/cancel",
            data={"account_id": str(account_id), "csrf_token": token},
            allow_redirects=False,
        ) as cancelled:
            assert cancelled.status == 303
        async with client.post(
            f"{web}/console/erasure/cancel", data={"account_id": str(account_id), "csrf_token": token}
        ) as again:
            assert again.status == 409 and "has no pending erasure" in await again.text()
    assert await pool.fetchval("SELECT attempts FROM stripe_events WHERE id = $1", event_id) == 0
    assert (
        await pool.fetchval("SELECT state FROM erasure_requests WHERE account_id = $1", account_id)
        == "cancelled"
    )
    actions = {
        row["action"]
        for row in await pool.fetch("SELECT action FROM audit_log WHERE actor = $1", f"operator:{operator}")
    }
    assert {"console.login", "console.stripe_retry", "erasure.cancelled"} <= actions


async def test_the_backups_grid_shows_each_days_outcome_and_back_up_now_sends_the_run(
    web: str, pool: asyncpg.Pool, redis_client: Any
) -> None:
    name = _operator("operator")
    account_id = await _account(pool, "paid")
    await pool.execute(
        "INSERT INTO subscriptions (id, customer_id, account_id, status) VALUES ($1, $2, $3, 'active')",
        f"sub_console{account_id}",
        f"cus_console{account_id}",
        account_id,
    )
    instance_id = await pool.fetchval(
        """INSERT INTO instances (account_id, name, database_url)
           VALUES ($1, 'shop', 'postgresql://absent/x') RETURNING id""",
        account_id,
    )
    today = await pool.fetchval("SELECT (now() AT TIME ZONE 'Europe/Paris')::date")
    for back, state, size in ((1, "verified", 10 << 20), (2, "failed", None), (3, "verified", 12 << 20)):
        await pool.execute(
            """INSERT INTO backups (id, instance_id, day, state, object_key, manifest_key, dump_bytes,
                                    started_at, finished_at)
               VALUES (gen_random_uuid(), $1, $2, $3, 'k', 'm', $4, now() - interval '2 minutes', now())""",
            instance_id,
            today - timedelta(days=back),
            state,
            size,
        )
    async with _client() as client:
        assert (await _log_in(client, web, name)).status == 303
        async with client.get(f"{web}/console/backups?page=1") as page:
            html = await page.text()
        row = html[html.index(f"#{instance_id} shop") :].split("</tr>")[0]
        cells = re.findall(r'class="cell (\w+)" title="([0-9-]+):', row)
        assert len(cells) == 30 and cells[-1] == ("missing", str(today))  # today: not yet
        assert [state for state, _ in cells[-4:-1]] == ["verified", "failed", "verified"]
        async with (
            client.get(f"{web}/console/backups?q=SHO") as found,
            client.get(f"{web}/console/backups?q=no-such-shop") as none_found,
        ):
            assert f"#{instance_id} shop" in await found.text()
            assert "No paid instance." in await none_found.text()
        async with client.get(f"{web}/console/backups/instances/{instance_id}") as detail:
            page_html = await detail.text()
        assert page_html.count("<polyline") == 2 and "12.0 MB" in page_html
        async with client.post(
            f"{web}/console/backups/run",
            data={"instance_id": str(instance_id), "csrf_token": hidden_csrf(page_html)},
            allow_redirects=False,
        ) as sent:
            assert sent.status == 303
    assert redis_client.llen("bindery:backups") == 1  # the worker's backups.run, for today
    chosen = "SELECT id FROM backups WHERE instance_id = $1 AND state = $2 LIMIT 1"
    failed = await pool.fetchval(chosen, instance_id, "failed")
    verified = await pool.fetchval(chosen, instance_id, "verified")
    async with _client() as client:
        assert (await _log_in(client, web, name)).status == 303
        async with client.get(f"{web}/console/backups/{verified}") as detail:
            html = await detail.text()
        assert "Verify (read it back)" in html and "10.0 MB" in html
        token = hidden_csrf(html)
        for backup_id, expected in ((verified, 303), (failed, 409)):
            async with client.post(
                f"{web}/console/backups/verify",
                data={"backup_id": str(backup_id), "csrf_token": token},
                allow_redirects=False,
            ) as answer:
                assert answer.status == expected
    assert redis_client.llen("bindery:backups") == 2  # one backups.verify more, for the verified one
    assert await pool.fetchval(
        "SELECT details ->> 'day' FROM audit_log WHERE action = 'console.backup_now' AND subject_id = $1",
        str(instance_id),
    ) == str(today)


async def test_an_operator_asks_for_an_export_and_an_erasure_as_the_job_api_would(
    web: str, pool: asyncpg.Pool, redis_client: Any
) -> None:
    name = _operator("operator")
    account_id = await _account(pool, "asks")
    async with _client() as client:
        assert (await _log_in(client, web, name)).status == 303
        async with client.get(f"{web}/console/privacy") as page:
            token = hidden_csrf(await page.text())
        for path, form in (
            ("/console/privacy/export", {"account_id": str(account_id), "with_instances": "1"}),
            ("/console/erasure/request", {"account_id": str(account_id)}),
        ):
            async with client.post(
                f"{web}{path}", data={**form, "csrf_token": token}, allow_redirects=False
            ) as ok:
                assert ok.status == 303 and ok.headers["Location"].startswith("/console/jobs?name=")
        # The job API's own checks: an unknown account is refused, and nothing is queued.
        async with client.post(
            f"{web}/console/privacy/export", data={"account_id": "987654321", "csrf_token": token}
        ) as unknown:
            assert unknown.status == 400 and "unknown account 987654321" in await unknown.text()
        async with client.post(
            f"{web}/console/erasure/request", data={"account_id": "seven", "csrf_token": token}
        ) as bad:
            assert bad.status == 400
    jobs = await pool.fetch(
        "SELECT name, arguments FROM jobs WHERE arguments ->> 'account_id' = $1 ORDER BY created_at",
        str(account_id),
    )
    assert [(job["name"], job["arguments"]) for job in jobs] == [
        ("privacy.export", {"account_id": account_id, "with_instances": True}),
        ("erasure.request", {"account_id": account_id}),
    ]
    assert redis_client.llen("bindery:exports") == 1 and redis_client.llen("bindery:erasure") == 1
    audited = await pool.fetch(
        "SELECT details ->> 'name' AS name FROM audit_log WHERE actor = $1 AND action = 'console.job'",
        f"operator:{name}",
    )
    assert sorted(row["name"] for row in audited) == ["erasure.request", "privacy.export"]


async def test_ids_and_pages_out_of_range_or_not_ascii_are_refused_not_errors(web: str) -> None:
    name = _operator("operator")
    async with _client() as client:
        assert (await _log_in(client, web, name)).status == 303
        async with client.get(f"{web}/console/stripe?page=²") as page:  # "²".isdigit(), int() refuses it
            assert page.status == 200
            token = hidden_csrf(await page.text())
        for path, field in (
            ("/console/erasure/cancel", "account_id"),
            ("/console/backups/run", "instance_id"),
            ("/console/erasure/request", "account_id"),
        ):
            for value in ("99999999999999999999", "²", "0"):  # beyond bigint; not ASCII; no row id
                async with client.post(
                    f"{web}{path}", data={field: value, "csrf_token": token}, allow_redirects=False
                ) as answer:
                    assert answer.status in (303, 400), (path, value, answer.status)
