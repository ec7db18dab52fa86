"""A campaign's life: created as a draft, started (the recipients snapshotted), paused,
resumed, cancelled, done; its status and its final report. Ids and counts only leave
this module: never an address."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from tasks.breach.notice import Notice
from workers.audit_log import AuditRecord, write_audit
from workers.db import Connection, rows_affected
from workers.errors import JobError


class CampaignError(JobError):
    """The campaign cannot do that now; the message says why."""


async def audit(conn: asyncpg.Pool | Connection, actor: str, action: str, campaign_id: int) -> None:
    await write_audit(conn, AuditRecord(actor, action, "breach_campaign", str(campaign_id)))


async def create(pool: asyncpg.Pool, notice: Notice, actor: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        campaign_id: int = await conn.fetchval(
            """INSERT INTO breach_campaigns (subject_fr, subject_en, body_fr, body_en, created_by)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""",
            notice.subject_fr,
            notice.subject_en,
            notice.body_fr,
            notice.body_en,
            actor,
        )
        await audit(conn, actor, "breach.create", campaign_id)
    return campaign_id


async def load(pool: asyncpg.Pool | Connection, campaign_id: int) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM breach_campaigns WHERE id = $1", campaign_id)
    if row is None:
        raise CampaignError(f"unknown campaign {campaign_id}")
    return row


def notice_of(campaign: asyncpg.Record) -> Notice:
    return Notice(campaign["subject_fr"], campaign["subject_en"], campaign["body_fr"], campaign["body_en"])


async def start(pool: asyncpg.Pool, campaign_id: int, actor: str) -> int:
    """Snapshot every account existing now (disabled ones too) into one pending row each;
    the campaign is then `sending`. Returns the number of recipients."""
    async with pool.acquire() as conn, conn.transaction():
        campaign = await conn.fetchrow(
            "SELECT state FROM breach_campaigns WHERE id = $1 FOR UPDATE", campaign_id
        )
        if campaign is None:
            raise CampaignError(f"unknown campaign {campaign_id}")
        if campaign["state"] != "draft":
            raise CampaignError(f"campaign {campaign_id} is {campaign['state']}; only a draft can be started")
        recipients = await conn.execute(
            """INSERT INTO breach_recipients (campaign_id, account_id, email)
               SELECT $1, id, email FROM accounts""",
            campaign_id,
        )
        await conn.execute(
            """UPDATE breach_campaigns SET state = 'sending', started_at = now(), started_by = $2,
                      active_at = now() WHERE id = $1""",
            campaign_id,
            actor,
        )
        await audit(conn, actor, "breach.start", campaign_id)
    return rows_affected(recipients)


async def _move(
    pool: asyncpg.Pool, campaign_id: int, actor: str, action: str, allowed: tuple[str, ...], to: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        state = (await load(conn, campaign_id))["state"]
        if state not in allowed:
            raise CampaignError(f"campaign {campaign_id} is {state}; cannot {action.split('.')[-1]} it")
        await conn.execute(
            """UPDATE breach_campaigns SET state = $2,
                      pause_reason = CASE WHEN $2 = 'paused' THEN 'paused by ' || $3 ELSE NULL END,
                      finished_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE finished_at END
                WHERE id = $1""",
            campaign_id,
            to,
            actor,
        )
        await audit(conn, actor, action, campaign_id)


async def pause(pool: asyncpg.Pool, campaign_id: int, actor: str) -> None:
    await _move(pool, campaign_id, actor, "breach.pause", ("sending",), "paused")


async def resume(pool: asyncpg.Pool, campaign_id: int, actor: str) -> None:
    await _move(pool, campaign_id, actor, "breach.resume", ("paused",), "sending")


async def cancel(pool: asyncpg.Pool, campaign_id: int, actor: str) -> None:
    """Stops sending; what was sent stays sent, what was not is counted as not sent."""
    await _move(pool, campaign_id, actor, "breach.cancel", ("draft", "sending", "paused"), "cancelled")


async def pause_itself(pool: asyncpg.Pool, campaign_id: int, reason: str) -> bool:
    result = await pool.execute(
        "UPDATE breach_campaigns SET state = 'paused', pause_reason = $2 WHERE id = $1 AND state = 'sending'",
        campaign_id,
        reason,
    )
    if rows_affected(result):
        await audit(pool, "system", "breach.pause", campaign_id)
        return True
    return False


async def finish_if_done(pool: asyncpg.Pool, campaign_id: int) -> bool:
    """`done` once no row is pending or sending."""
    result = await pool.execute(
        """UPDATE breach_campaigns SET state = 'done', finished_at = now()
            WHERE id = $1 AND state = 'sending'
              AND NOT EXISTS (SELECT 1 FROM breach_recipients WHERE campaign_id = $1 AND state = 'pending')
              AND NOT EXISTS (SELECT 1 FROM breach_recipients WHERE campaign_id = $1 AND state = 'sending')
        """,
        campaign_id,
    )
    if rows_affected(result):
        await audit(pool, "system", "breach.done", campaign_id)
        return True
    return False


async def status(pool: asyncpg.Pool, campaign_id: int) -> dict[str, Any]:
    """Where the campaign stands: counts by state and by reply code, the rate over the
    last minute, the time left at that rate, and who started it."""
    campaign = await load(pool, campaign_id)
    counts = {
        row["state"]: row["n"]
        for row in await pool.fetch(
            "SELECT state, count(*) AS n FROM breach_recipients WHERE campaign_id = $1 GROUP BY state",
            campaign_id,
        )
    }
    codes = {
        str(row["reply_code"]): row["n"]
        for row in await pool.fetch(
            """SELECT reply_code, count(*) AS n FROM breach_recipients
                WHERE campaign_id = $1 AND reply_code IS NOT NULL GROUP BY reply_code ORDER BY reply_code""",
            campaign_id,
        )
    }
    recent: int = await pool.fetchval(
        """SELECT count(*) FROM breach_recipients
            WHERE campaign_id = $1 AND sent_at > now() - interval '1 minute'""",
        campaign_id,
    )
    total = sum(counts.values())
    left = counts.get("pending", 0) + counts.get("sending", 0)
    rate = recent / 60
    finished_at = campaign["finished_at"]
    return {
        "id": campaign_id,
        "state": campaign["state"],
        "pause_reason": campaign["pause_reason"],
        "recipients": total,
        "sent": counts.get("sent", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "pending": left,
        "reply_codes": codes,
        "rate_per_second": round(rate, 1),
        "eta_seconds": round(left / rate) if rate and campaign["state"] == "sending" else None,
        "created_by": campaign["created_by"],
        "started_by": campaign["started_by"],
        "started_at": campaign["started_at"],
        "finished_at": finished_at,
        "duration_seconds": (
            ((finished_at or datetime.now(UTC)) - campaign["started_at"]).total_seconds()
            if campaign["started_at"]
            else None
        ),
    }


async def scrub_finished(pool: asyncpg.Pool, retention: Any) -> int:
    """Delete the addresses of campaigns that ended more than `retention` ago; counts stay."""
    async with pool.acquire() as conn, conn.transaction():
        campaigns = await conn.fetch(
            """UPDATE breach_campaigns SET recipients_scrubbed_at = now()
                WHERE state IN ('done', 'cancelled') AND finished_at < now() - $1::interval
                  AND recipients_scrubbed_at IS NULL RETURNING id""",
            retention,
        )
        ids = [row["id"] for row in campaigns]
        await conn.execute(
            "UPDATE breach_recipients SET email = NULL WHERE campaign_id = ANY($1::bigint[])", ids
        )
    return len(ids)
