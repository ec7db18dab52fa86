"""Breach campaigns end to end: `bindery breach` commands, real `bindery worker`
processes, a real SMTP sink that keeps every message (and so every Message-ID)."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from tasks.breach import recipient_rows
from tasks.breach.campaigns import start
from tasks.breach.lanes import CampaignSender, send_batch
from tasks.breach.recipient_rows import CLAIM, LEASE, RECORD
from tests.breach_setup import (
    BATCH,
    DATA,
    LANES,
    campaign_state,
    create_campaign,
    expected_ids,
    message_ids,
    none_sending,
    recipient_counts,
    recipients,
    sink,
    worker,
)
from tests.processes import equals, eventually, run_bindery
from workers.db import connect
from workers.settings import load_settings
from workers.smtp_pool import SmtpPool


async def test_451_is_retried_and_delivered_550_fails_and_is_reported(
    accounts_db: Any, tmp_path: Path
) -> None:
    db = await accounts_db(1_000)
    pool = db.pool
    with sink(tmp_path, "--tempfail-once", "+tempfail", "--reject", "+reject") as (smtp_url, mail):
        env = db.env(smtp_url)
        campaign_id = create_campaign(env)
        assert run_bindery("breach", "start", str(campaign_id), env=env).returncode == 0
        with worker(tmp_path / "worker.log", env):
            await eventually(lambda: equals(campaign_state(pool, campaign_id), "done"), 180, "the campaign")
        rows = await recipients(pool, campaign_id)
        seen = message_ids(mail)
    rejected = {a for a, row in rows.items() if "+reject" in row["email"]}
    retried = {a for a, row in rows.items() if "+tempfail" in row["email"]}
    assert (len(rejected), len(retried)) == (4, 8)
    for account_id in rejected:
        assert (rows[account_id]["state"], rows[account_id]["reply_code"]) == ("failed", 550)
    for account_id in retried:
        assert (rows[account_id]["state"], rows[account_id]["attempts"]) == ("sent", 2)
    assert set(seen) == expected_ids(campaign_id, set(rows) - rejected) and set(seen.values()) == {1}
    report = json.loads(run_bindery("breach", "status", str(campaign_id), "--json", env=env).stdout)
    assert report["failed"] == len(rejected) and report["reply_codes"]["550"] == len(rejected)


async def test_failures_past_the_threshold_pause_the_campaign_and_say_why(
    accounts_db: Any, tmp_path: Path
) -> None:
    db = await accounts_db(1_000)
    pool = db.pool
    with sink(tmp_path, "--reject", "@") as (smtp_url, _):
        env = db.env(smtp_url)
        campaign_id = create_campaign(env)
        assert run_bindery("breach", "start", str(campaign_id), env=env).returncode == 0
        with worker(tmp_path / "worker.log", env):
            await eventually(lambda: equals(campaign_state(pool, campaign_id), "paused"), 60, "the pause")
            await eventually(lambda: none_sending(pool, campaign_id), 30, "the lanes to stop")
        reason = await pool.fetchval("SELECT pause_reason FROM breach_campaigns WHERE id = $1", campaign_id)
        assert "messages failed" in reason and "550" in reason
        counts = await recipient_counts(pool, campaign_id)
        assert counts["failed"] < LANES * BATCH + 20 and counts["pending"] > 0  # stopped early
        cancelled = run_bindery("breach", "cancel", str(campaign_id), env=env)
        assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["state"] == "cancelled"
        again = run_bindery("breach", "resume", str(campaign_id), env=env)
        assert again.returncode == 1 and "is cancelled; cannot resume it" in again.stderr


async def test_an_internationalised_address_uses_smtputf8_or_fails_clearly(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from tasks.breach import campaigns
    from tasks.breach.notice import from_incident

    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id",
        f"josé.{secrets.token_hex(3)}@exemple.fr",
    )
    for faults, expected in (((), ("sent", 250, None)), (("--no-smtputf8",), ("failed", None, "SMTPUTF8"))):
        campaign_id = await campaigns.create(pool, from_incident(DATA / "incident.toml"), "test")
        # A campaign of this one account: rows written as `start` would, without the others.
        await pool.execute(
            "UPDATE breach_campaigns SET state = 'sending', started_at = now() WHERE id = $1", campaign_id
        )
        await pool.execute(
            """INSERT INTO breach_recipients (campaign_id, account_id, email)
               SELECT $1, id, email FROM accounts WHERE id = $2""",
            campaign_id,
            account_id,
        )
        with sink(tmp_path, *faults) as (smtp_url, mail):
            settings = load_settings().model_copy(update={"smtp_url": SecretStr(smtp_url)})
            smtp = SmtpPool(settings, 1)
            await send_batch(CampaignSender(pool, settings, smtp, None), campaign_id)
            await smtp.close()
            delivered = sum(message_ids(mail).values())
        row = (await recipients(pool, campaign_id))[account_id]
        state, code, reason = expected
        assert (row["state"], row["reply_code"]) == (state, code)
        assert (reason is None and row["error"] is None) or reason in row["error"]
        assert delivered == (1 if state == "sent" else 0)
        assert row["email"] not in (row["error"] or "")  # the reason never quotes the address


async def test_addresses_are_scrubbed_after_the_retention_counts_stay(
    accounts_db: Any, tmp_path: Path
) -> None:
    from tasks.breach import campaigns
    from tasks.breach.notice import from_incident

    db = await accounts_db(30)
    pool = db.pool
    campaign_id = await campaigns.create(pool, from_incident(DATA / "incident.toml"), "test")
    assert await campaigns.start(pool, campaign_id, "test") == 30
    await pool.execute(
        "UPDATE breach_recipients SET state = 'sent', sent_at = now() WHERE campaign_id = $1", campaign_id
    )
    await pool.execute(
        "UPDATE breach_campaigns SET state = 'done', finished_at = now() WHERE id = $1", campaign_id
    )
    assert await campaigns.scrub_finished(pool, timedelta(days=90)) == 0  # ended today: kept
    await pool.execute(
        "UPDATE breach_campaigns SET finished_at = now() - interval '91 days' WHERE id = $1", campaign_id
    )
    assert await campaigns.scrub_finished(pool, timedelta(days=90)) == 1
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM breach_recipients WHERE campaign_id = $1 AND email IS NOT NULL", campaign_id
        )
        == 0
    )
    assert (await campaigns.status(pool, campaign_id))["sent"] == 30  # the counts stay
    assert await campaigns.scrub_finished(pool, timedelta(days=90)) == 0  # once


async def test_a_preview_goes_to_the_operator_only_and_bad_input_changes_nothing(
    accounts_db: Any, tmp_path: Path
) -> None:
    db = await accounts_db(5)
    with sink(tmp_path) as (smtp_url, mail):
        env = db.env(smtp_url)
        campaign_id = create_campaign(env)
        sent = run_bindery("breach", "preview", str(campaign_id), "--to", "ops@exemple.fr", env=env)
        assert sent.returncode == 0, sent.stderr
        assert list(message_ids(mail)) == [expected_ids(campaign_id, [0]).pop()]  # account 0: nobody's
        assert await db.pool.fetchval("SELECT count(*) FROM breach_recipients") == 0  # still a draft
        unknown = run_bindery("breach", "start", "999", env=env)
        assert unknown.returncode == 1 and "unknown campaign 999" in unknown.stderr
        twice = run_bindery("breach", "start", str(campaign_id), env=env)
        assert twice.returncode == 0
        again = run_bindery("breach", "start", str(campaign_id), env=env)
        assert again.returncode == 1 and "only a draft can be started" in again.stderr
        assert await db.pool.fetchval("SELECT count(*) FROM breach_recipients") == 5  # one snapshot
        assert run_bindery("breach", "cancel", str(campaign_id), env=env).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[fr]\n")
    refused = run_bindery("breach", "create", "--incident", str(bad), env=env)
    assert refused.returncode == 1 and "[fr] table lacks" in refused.stderr
    assert await db.pool.fetchval("SELECT count(*) FROM breach_campaigns") == 1


def _rows_read(plan: dict[str, Any], table: str, under_table: bool = False) -> int:
    """Index entries and rows that the plan's scans of `table` went through (a bitmap
    index scan belongs to the table of the bitmap heap scan above it)."""
    node = plan["Node Type"]
    on_table = plan.get("Relation Name") == table or (under_table and node.startswith("Bitmap"))
    read = plan["Actual Rows"] * plan["Actual Loops"] + plan.get("Rows Removed by Filter", 0)
    own = read if on_table and node.endswith("Scan") else 0
    return int(own) + sum(_rows_read(child, table, on_table) for child in plan.get("Plans", []))


async def _generic_plan(url: str, sql: str, types: str, *literals: str) -> dict[str, Any]:
    """EXPLAIN ANALYZE of `sql` planned once for any values of its parameters, as
    Postgres may plan a statement prepared and run many times (asyncpg prepares every
    statement; the slow outcomes of a real campaign ran such a plan). Rolled back."""
    conn = await connect(url)  # its own session: the prepared statement dies with it
    measured = conn.transaction()
    await measured.start()
    try:
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE measured ({types}) AS {sql}")
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE measured ({', '.join(literals)})")
        return plan[0]["Plan"]  # type: ignore[no-any-return]  # connect() decodes json
    finally:
        await measured.rollback()
        await conn.close()


async def test_claims_and_outcomes_do_not_read_the_rows_already_sent(accounts_db: Any) -> None:
    # Postgres here runs without autovacuum, so every version a campaign leaves behind
    # stays in the table and its indexes. Plans that read them all make each statement a
    # little slower than the one before, all campaign long: claims reading a b-tree on
    # account_id alone in order, filtering on the state, or hash-joining every recipient;
    # outcomes combining an index of `sending` rows (every row passes through it) with the
    # whole campaign's primary key range (schema/0013).
    db = await accounts_db(5_000)
    pool = db.pool
    campaign_id = create_campaign(db.env("smtp://127.0.0.1:9"))
    await start(pool, campaign_id, "test")
    await pool.execute("ANALYZE breach_recipients")  # statistics as of the snapshot
    for _ in range(40):  # 4,000 sent, as lanes do it
        claimed = await pool.fetch(CLAIM, campaign_id, BATCH, LEASE)
        n = len(claimed)
        await pool.execute(
            RECORD,
            campaign_id,
            [row["account_id"] for row in claimed],
            [row["attempts"] for row in claimed],
            ["sent"] * n,
            [250] * n,
            [None] * n,
            [None] * n,
        )
    claim = await _generic_plan(
        db.url, CLAIM, "bigint, int, interval", str(campaign_id), str(BATCH), "'5 min'"
    )
    assert claim["Actual Rows"] == BATCH
    assert _rows_read(claim, "breach_recipients") < 4 * BATCH
    ids = [row["account_id"] for row in await pool.fetch(CLAIM, campaign_id, BATCH, LEASE)][:20]
    record = await _generic_plan(
        db.url,
        RECORD,
        "bigint, bigint[], int[], text[], int[], text[], float8[]",
        str(campaign_id),
        "'{" + ",".join(map(str, ids)) + "}'",
        "array_fill(1, ARRAY[20])",
        "array_fill('sent'::text, ARRAY[20])",
        "array_fill(250, ARRAY[20])",
        "array_fill(NULL::text, ARRAY[20])",
        "array_fill(NULL::float8, ARRAY[20])",
    )
    (outcomes,) = [plan for plan in record["Plans"] if plan.get("Subplan Name") == "CTE recorded"]
    assert outcomes["Actual Rows"] == 20
    assert _rows_read(record, "breach_recipients") < 4 * BATCH


async def test_a_lane_that_lost_its_rows_writes_nothing_and_counts_nothing(accounts_db: Any) -> None:
    # Lane A stalls past its lease; the reconciler returns its rows and lane B claims them.
    # A's late outcomes, renewals and releases must not touch B's rows nor the tally.
    db = await accounts_db(30)
    pool = db.pool
    campaign_id = create_campaign(db.env("smtp://127.0.0.1:9"))
    await start(pool, campaign_id, "test")
    lane_a = await recipient_rows.claim_batch(pool, campaign_id, 10)
    await pool.execute("UPDATE breach_recipients SET lease_until = now() - interval '1 second'")
    assert (await recipient_rows.recover(pool, timedelta(minutes=10)))["returned"] == 10
    lane_b = await recipient_rows.claim_batch(pool, campaign_id, 10)
    assert {r["account_id"] for r in lane_b} == {r["account_id"] for r in lane_a}

    def sent(rows: list[asyncpg.Record]) -> list[recipient_rows.Outcome]:
        return [recipient_rows.Outcome(r["account_id"], r["attempts"], "sent", 250) for r in rows]

    counts = {"sent": 0, "failed": 0, "retry": 0, "not_recorded": 0}
    assert not await recipient_rows.renew(pool, campaign_id, lane_a)
    assert await recipient_rows.release(pool, campaign_id, lane_a) == 0
    stale = await recipient_rows.record_outcomes(pool, campaign_id, sent(lane_a), counts)
    assert (stale["recorded"], stale["sent_count"], counts["not_recorded"]) == (0, 0, 10)
    assert await pool.fetchval("SELECT count(*) FROM breach_recipients WHERE state = 'sending'") == 10

    assert await recipient_rows.renew(pool, campaign_id, lane_b)
    fresh = await recipient_rows.record_outcomes(pool, campaign_id, sent(lane_b), counts)
    assert (fresh["recorded"], fresh["sent_count"], counts["sent"]) == (10, 10, 10)
