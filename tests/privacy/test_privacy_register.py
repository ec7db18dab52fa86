"""The register of data-subject requests: the legal clock of Art. 12(3) across month
ends, the extension's limit, bad input that changes nothing, and erasure requests that
enter and leave the register by themselves."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
from hypothesis import given
from hypothesis import strategies as st

from tasks.erasure.requests import cancel_erasure, request_erasure
from tasks.erasure.saga import run_request
from tasks.privacy.legal_clock import PARIS, add_months, days_left, due_at, latest_extension
from tests.billing_events import new_account
from tests.erasure_scenario import erase_now, mails_to, make_customer, remove_databases
from tests.processes import run_bindery
from workers.resources import Resources


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


def test_one_month_ends_on_the_same_date_or_the_last_day_of_a_shorter_month() -> None:
    assert due_at(paris(2027, 1, 31, 15, 0)) == paris(2027, 3, 1)  # the end of 28 February
    assert due_at(paris(2028, 1, 31, 15, 0)) == paris(2028, 3, 1)  # 2028: the end of the 29th
    assert due_at(paris(2028, 1, 29, 9, 0)) == paris(2028, 2, 29) + timedelta(days=1)
    assert due_at(paris(2026, 12, 15, 9, 0)) == paris(2027, 1, 16)
    # Read in Paris: 23:30 UTC on 30 November is already 1 December there.
    assert due_at(datetime(2026, 11, 30, 23, 30, tzinfo=UTC)) == paris(2027, 1, 2)
    assert latest_extension(paris(2026, 11, 30, 10, 0)) == paris(2027, 3, 1)  # 28 Feb 2027
    assert days_left(paris(2027, 3, 1), paris(2027, 2, 28, 23, 0)) == 0  # its last day
    assert days_left(paris(2027, 3, 1), paris(2027, 3, 1, 0, 1)) == -1


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)), st.integers(1, 36))
def test_adding_months_keeps_the_date_or_clamps_it_to_the_month(day: date, months: int) -> None:
    later = add_months(day, months)
    assert (later.year * 12 + later.month) - (day.year * 12 + day.month) == months
    assert later.day == day.day or (later.day < day.day and (later + timedelta(days=1)).day == 1)


async def _row(pool: asyncpg.Pool, request_id: int) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM privacy_requests WHERE id = $1", request_id)
    assert row is not None
    return row


async def test_logging_extending_and_closing_by_hand_and_bad_input_changes_nothing(
    pool: asyncpg.Pool,
) -> None:
    account_id = await new_account(pool)
    before = await pool.fetchval("SELECT count(*) FROM privacy_requests")
    unknown = run_bindery("privacy", "log", "--kind", "objection", "999999999", "--note", "x")
    assert unknown.returncode == 1 and "unknown account 999999999" in unknown.stderr
    kind = run_bindery("privacy", "log", "--kind", "export", str(account_id))
    assert kind.returncode == 2 and "invalid choice" in kind.stderr
    long_note = run_bindery("privacy", "log", "--kind", "other", str(account_id), "--note", "n" * 2001)
    assert long_note.returncode == 1 and "longer than 2000" in long_note.stderr
    assert await pool.fetchval("SELECT count(*) FROM privacy_requests") == before

    logged = run_bindery(
        "privacy", "log", "--kind", "rectification", str(account_id), "--note", "wrong VAT id"
    )
    assert logged.returncode == 0, logged.stderr
    request_id = json.loads(logged.stdout)["request_id"]
    row = await _row(pool, request_id)
    assert (row["kind"], row["state"], row["received_by"]) == ("rectification", "open", "cli")
    assert row["due_at"] == due_at(row["received_at"])

    latest = latest_extension(row["received_at"]).astimezone(PARIS).date() - timedelta(days=1)
    too_far = run_bindery(
        "privacy",
        "extend",
        str(request_id),
        "--until",
        str(latest + timedelta(days=1)),
        "--reason",
        "complex",
    )
    assert too_far.returncode == 1 and "two more months" in too_far.stderr
    no_reason = run_bindery("privacy", "extend", str(request_id), "--until", str(latest), "--reason", " ")
    assert no_reason.returncode == 1 and "the reason is required" in no_reason.stderr
    earlier = run_bindery("privacy", "extend", str(request_id), "--until", "2000-01-01", "--reason", "x")
    assert earlier.returncode == 1 and "not later" in earlier.stderr
    assert (await _row(pool, request_id))["extended_until"] is None

    extended = run_bindery(
        "privacy", "extend", str(request_id), "--until", str(latest), "--reason", "complex"
    )
    assert extended.returncode == 0, extended.stderr
    row = await _row(pool, request_id)
    assert row["extended_until"] == latest_extension(row["received_at"])

    listed = run_bindery("privacy", "requests", "--open", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = [e for e in json.loads(listed.stdout) if e["id"] == request_id]
    assert entry["days_left"] == (latest - datetime.now(PARIS).date()).days
    assert "wrong VAT id" not in listed.stdout  # the note is not listed

    assert run_bindery("privacy", "close", str(request_id), "--outcome", "corrected").returncode == 0
    again = run_bindery("privacy", "close", str(request_id), "--outcome", "corrected")
    assert again.returncode == 1 and f"no open privacy request {request_id}" in again.stderr
    row = await _row(pool, request_id)
    assert (row["state"], row["outcome"]) == ("closed", "corrected")
    closed_listing = json.loads(run_bindery("privacy", "requests", "--open", "--json").stdout)
    assert request_id not in [e["id"] for e in closed_listing]
    actions = await pool.fetch(
        "SELECT action FROM audit_log WHERE subject_type = 'privacy_request' AND subject_id = $1 ORDER BY id",
        str(request_id),
    )
    assert [a["action"] for a in actions] == ["privacy.opened", "privacy.extended", "privacy.closed"]


async def test_an_erasure_enters_the_register_and_leaves_it_cancelled_or_erased(
    worker_resources: Resources, database_url: str, smtp_sink: Path
) -> None:
    resources = worker_resources
    pool = resources.pool
    account_id = await new_account(pool)
    async with pool.acquire() as conn:
        erasure, _ = await request_erasure(conn, account_id, grace=timedelta(hours=24), requested_by="test")
    row = await pool.fetchrow("SELECT * FROM privacy_requests WHERE erasure_request_id = $1", erasure["id"])
    assert (row["kind"], row["account_id"], row["state"]) == ("erasure", account_id, "open")
    assert row["received_at"] == erasure["requested_at"]
    async with pool.acquire() as conn:
        await cancel_erasure(conn, account_id, cancelled_by="test")
    row = await _row(pool, row["id"])
    assert (row["state"], row["outcome"]) == ("closed", "cancelled within the grace period")

    customer = await make_customer(resources, database_url, instances=1)
    try:
        logged = run_bindery(
            "privacy", "log", "--kind", "objection", str(customer.account_id), "--note", "Named in note"
        )
        assert logged.returncode == 0, logged.stderr
        request_id = await erase_now(resources, customer.account_id)
        assert await run_request(resources, request_id) == "done"
    finally:
        await remove_databases(customer)
    erased = await pool.fetchrow("SELECT * FROM privacy_requests WHERE erasure_request_id = $1", request_id)
    assert (erased["state"], erased["outcome"]) == ("closed", "erased")
    objection = await _row(pool, json.loads(logged.stdout)["request_id"])
    assert (objection["state"], objection["note"]) == ("open", None)  # kept, without its note


async def test_requests_overdue_or_due_within_five_days_are_told_to_the_privacy_contact(
    worker_resources: Resources, smtp_sink: Path
) -> None:
    resources = worker_resources
    from tasks.privacy.deadlines import check_deadlines
    from tasks.privacy.register import open_request

    pool, settings = resources.pool, resources.settings
    account_id = await new_account(pool)
    now = datetime.now(PARIS)
    async with pool.acquire() as conn, conn.transaction():
        ids = {
            age: await open_request(
                conn, "other", account_id, received_by="test", received_at=now - timedelta(days=age)
            )
            for age in (40, 28, 10)
        }
    at_risk = {r["id"]: r["overdue"] for r in await check_deadlines(pool, settings)}
    assert at_risk[ids[40]] is True and at_risk[ids[28]] is False and ids[10] not in at_risk
    [alert] = [
        m for m in mails_to(smtp_sink, settings.privacy_contact) if f"request {ids[40]} " in m.get_content()
    ]
    body = alert.get_content()
    assert f"request {ids[40]} (other): OVERDUE since" in body and f"request {ids[28]} (other): due" in body
    assert f"request {ids[10]} " not in body
