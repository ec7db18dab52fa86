"""The breach_recipients rows of a campaign as lanes move them: claimed with a lease
(`pending → sending`, SKIP LOCKED: never a row another lane holds), renewed while the lane
works, written back with their outcomes and the campaign's tally in one statement, released
untried, and returned to `pending` by the reconciler when their lane died."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from tasks.breach.campaigns import finish_if_done
from workers.db import rows_affected

LEASE = timedelta(minutes=5)


# The next due rows of a campaign, in account order, for one lane (SKIP LOCKED: never a row
# another lane holds); with what the message needs of each account. The address is the
# account's own at sending time (a customer who changed it mid-campaign is written to at
# the new one), unless the row's was scrubbed: its erasure has begun. The claimed rows are
# updated through `= ANY (ARRAY(…))`, by primary key: Postgres may plan a prepared statement
# once for any parameters, and joining on the locked rows themselves was then planned for
# a tenth of the table (`LIMIT $2` unknown): a hash join over every recipient and account.
CLAIM = """
WITH due AS (
    SELECT account_id FROM breach_recipients
     WHERE campaign_id = $1 AND state = 'pending'
       AND (next_attempt_at IS NULL OR next_attempt_at <= now())
     ORDER BY account_id LIMIT $2 FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE breach_recipients
       SET state = 'sending', attempts = attempts + 1, lease_until = now() + $3::interval
     WHERE campaign_id = $1 AND account_id = ANY (ARRAY(SELECT account_id FROM due))
    RETURNING account_id, email, attempts)
SELECT c.account_id, CASE WHEN c.email IS NOT NULL THEN a.email END AS email, c.attempts,
       a.id IS NOT NULL AS exists, a.first_name, a.last_name, a.business_name
  FROM claimed c LEFT JOIN accounts a ON a.id = c.account_id
"""

# The rows a lane still holds stay its own while it works through them, however slow the
# provider's rate: without this, at a rate below a batch per LEASE the reconciler would
# hand rows still being sent to another lane, which would send them again.
RENEW = """
UPDATE breach_recipients SET lease_until = now() + $3::interval
 WHERE campaign_id = $1 AND account_id = ANY ($2::bigint[]) AND state = 'sending'
"""


# A lane's outcomes, and the campaign's tally after them, in one statement (one round trip,
# atomic). The outcomes are written by primary key: `= ANY ($2)` says which keys to a plan
# made for any parameters, which the join on the unnested arrays alone does not.
# `state = 'sending'`: an erasure may have scrubbed the row meanwhile; it stays skipped. The
# campaign is updated from the count of rows written, so the rows are locked before the
# campaign's row, as everywhere else.
RECORD = """
WITH recorded AS (
    UPDATE breach_recipients r
       SET state = o.state, reply_code = o.code, error = o.error, lease_until = NULL,
           sent_at = CASE WHEN o.state = 'sent' THEN now() END,
           email = CASE WHEN o.state = 'skipped' THEN NULL ELSE r.email END,
           next_attempt_at = CASE WHEN o.retry_in IS NULL THEN NULL
                                  ELSE now() + o.retry_in * interval '1 second' END
      FROM unnest($2::bigint[], $3::text[], $4::int[], $5::text[], $6::float8[])
           AS o(account_id, state, code, error, retry_in)
     WHERE r.campaign_id = $1 AND r.account_id = ANY ($2::bigint[])
       AND r.account_id = o.account_id AND r.state = 'sending'
    RETURNING r.account_id)
UPDATE breach_campaigns
   SET sent_count = sent_count + $7, failed_count = failed_count + $8, active_at = now()
  FROM (SELECT count(*) AS rows FROM recorded) AS written
 WHERE id = $1
RETURNING sent_count, failed_count, state, written.rows AS recorded
"""


@dataclass(frozen=True)
class Outcome:
    account_id: int
    state: str  # sent | failed | pending (to try again after `retry_in`)
    reply_code: int | None = None
    error: str | None = None
    retry_in: float | None = None


async def claim_batch(pool: asyncpg.Pool, campaign_id: int, size: int) -> list[asyncpg.Record]:
    return await pool.fetch(CLAIM, campaign_id, size, LEASE)


async def renew(pool: asyncpg.Pool, campaign_id: int, account_ids: list[int]) -> bool:
    """Whether any of the rows was still the lane's to renew."""
    return rows_affected(await pool.execute(RENEW, campaign_id, account_ids, LEASE)) > 0


async def earliest_retry(pool: asyncpg.Pool, campaign_id: int) -> float | None:
    """Seconds until the first pending row's retry is due; None when no row is pending."""
    wait = await pool.fetchval(
        """SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM breach_recipients
            WHERE campaign_id = $1 AND state = 'pending'""",
        campaign_id,
    )
    return float(wait) if wait is not None else None


async def record_outcomes(
    pool: asyncpg.Pool, campaign_id: int, outcomes: list[Outcome], counts: dict[str, int]
) -> asyncpg.Record:
    """Write the outcomes; the campaign's tally and state after them, in the same round trip."""
    sent = sum(o.state == "sent" for o in outcomes)
    failed = sum(o.state == "failed" for o in outcomes)
    tally = await pool.fetchrow(
        RECORD,
        campaign_id,
        [o.account_id for o in outcomes],
        [o.state for o in outcomes],
        [o.reply_code for o in outcomes],
        [o.error for o in outcomes],
        [o.retry_in for o in outcomes],
        sent,
        failed,
    )
    assert tally is not None and tally["recorded"] <= len(outcomes)
    counts["sent"] += sent
    counts["failed"] += failed
    counts["retry"] += sum(o.state == "pending" for o in outcomes)
    return tally


async def release(pool: asyncpg.Pool, campaign_id: int, account_ids: list[int]) -> int:
    """Rows claimed but not tried (the campaign was paused or cancelled): pending again."""
    result = await pool.execute(
        """UPDATE breach_recipients SET state = 'pending', attempts = attempts - 1, lease_until = NULL
            WHERE campaign_id = $1 AND account_id = ANY($2::bigint[]) AND state = 'sending'""",
        campaign_id,
        account_ids,
    )
    return rows_affected(result)


async def reachable_again(pool: asyncpg.Pool, campaign_id: int) -> None:
    """The server answers again: what waited only for it (no reply code) is due now."""
    async with pool.acquire() as conn, conn.transaction():
        cleared = await conn.fetchval(
            """UPDATE breach_campaigns SET unreachable_at = NULL
                WHERE id = $1 AND unreachable_at IS NOT NULL RETURNING id""",
            campaign_id,
        )
        if cleared:
            await conn.execute(
                """UPDATE breach_recipients SET next_attempt_at = NULL
                    WHERE campaign_id = $1 AND state = 'pending' AND reply_code IS NULL
                      AND next_attempt_at > now()""",
                campaign_id,
            )


async def reconcile(pool: asyncpg.Pool, quiet: timedelta) -> dict[str, Any]:
    """Rows left `sending` by a dead worker go back to `pending`; campaigns `sending` with
    no claim for `quiet` (their lane messages lost, say) are returned to restart lanes;
    campaigns with nothing left are finished."""
    returned = await pool.execute(
        """UPDATE breach_recipients SET state = 'pending', lease_until = NULL
            WHERE campaign_id IN (SELECT id FROM breach_campaigns WHERE state <> 'done')
              AND state = 'sending' AND lease_until < now()"""
    )
    restart, finished = [], []
    for campaign in await pool.fetch(
        "SELECT id, active_at < now() - $1::interval AS quiet FROM breach_campaigns WHERE state = 'sending'",
        quiet,
    ):
        if await finish_if_done(pool, campaign["id"]):
            finished.append(campaign["id"])
        elif campaign["quiet"] or rows_affected(returned):
            restart.append(campaign["id"])
    return {"restart": restart, "finished": finished, "returned": rows_affected(returned)}
