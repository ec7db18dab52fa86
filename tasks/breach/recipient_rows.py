"""The breach_recipients rows of a campaign as lanes move them: claimed with a lease
(`pending → sending`, SKIP LOCKED: never a row another lane holds), renewed while the lane
works, written back with their outcomes and the campaign's tally in one statement, released
untried, and returned to `pending` by the reconciler when their lane died.

A row's `attempts`, bumped by each claim, is the claim's fencing token: every write a lane
makes names the token it claimed with, so a lane that stalled past its lease, whose rows
were returned and claimed again, writes nothing over the new holder's and counts nothing
in the tally."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from tasks.breach.campaigns import finish_if_done
from workers.db import rows_affected
from workers.leases import abandoned

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
UPDATE breach_recipients SET lease_until = now() + $4::interval
 WHERE campaign_id = $1 AND account_id = ANY ($2::bigint[]) AND state = 'sending'
   AND (account_id, attempts) IN (SELECT * FROM unnest($2::bigint[], $3::int[]))
"""


# A lane's outcomes, and the campaign's tally after them, in one statement (one round trip,
# atomic). The outcomes are written by primary key: `= ANY ($2)` says which keys to a plan
# made for any parameters, which the join on the unnested arrays alone does not.
# `state = 'sending'`: an erasure may have scrubbed the row meanwhile; it stays skipped.
# `attempts = o.attempt`: the row is still this claim's. The tally counts the rows written,
# never the outcomes offered, and the rows are locked before the campaign's row, as
# everywhere else.
RECORD = """
WITH recorded AS (
    UPDATE breach_recipients r
       SET state = o.state, reply_code = o.code, error = o.error, lease_until = NULL,
           sent_at = CASE WHEN o.state = 'sent' THEN now() END,
           email = CASE WHEN o.state = 'skipped' THEN NULL ELSE r.email END,
           next_attempt_at = CASE WHEN o.retry_in IS NULL THEN NULL
                                  ELSE now() + o.retry_in * interval '1 second' END
      FROM unnest($2::bigint[], $3::int[], $4::text[], $5::int[], $6::text[], $7::float8[])
           AS o(account_id, attempt, state, code, error, retry_in)
     WHERE r.campaign_id = $1 AND r.account_id = ANY ($2::bigint[])
       AND r.account_id = o.account_id AND r.state = 'sending' AND r.attempts = o.attempt
    RETURNING o.state)
UPDATE breach_campaigns
   SET sent_count = sent_count + written.sent, failed_count = failed_count + written.failed,
       active_at = now()
  FROM (SELECT count(*) AS rows, count(*) FILTER (WHERE state = 'sent') AS sent,
               count(*) FILTER (WHERE state = 'failed') AS failed FROM recorded) AS written
 WHERE id = $1
RETURNING sent_count, failed_count, state, written.rows AS recorded, written.sent, written.failed
"""


# The reconciler's part: rows whose lane is gone are pending again, for the next claim.
RETURN_ABANDONED = (
    "UPDATE breach_recipients SET state = 'pending', lease_until = NULL"  # nosec B608: a fixed predicate of workers.leases
    " WHERE campaign_id IN (SELECT id FROM breach_campaigns WHERE state <> 'done') AND "
    + abandoned("sending")
)


@dataclass(frozen=True)
class Outcome:
    account_id: int
    attempt: int  # the claim's fencing token: the row's attempts when claimed
    state: str  # sent | failed | pending (to try again after `retry_in`)
    reply_code: int | None = None
    error: str | None = None
    retry_in: float | None = None


async def claim_batch(pool: asyncpg.Pool, campaign_id: int, size: int) -> list[asyncpg.Record]:
    return await pool.fetch(CLAIM, campaign_id, size, LEASE)


def _keys(rows: list[asyncpg.Record]) -> tuple[list[int], list[int]]:
    return [row["account_id"] for row in rows], [row["attempts"] for row in rows]


async def renew(pool: asyncpg.Pool, campaign_id: int, rows: list[asyncpg.Record]) -> bool:
    """Whether any of the claimed rows was still the lane's to renew."""
    return rows_affected(await pool.execute(RENEW, campaign_id, *_keys(rows), LEASE)) > 0


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
    """Write the outcomes still the lane's to write; the campaign's tally and state after
    them, in the same round trip."""
    tally = await pool.fetchrow(
        RECORD,
        campaign_id,
        [o.account_id for o in outcomes],
        [o.attempt for o in outcomes],
        [o.state for o in outcomes],
        [o.reply_code for o in outcomes],
        [o.error for o in outcomes],
        [o.retry_in for o in outcomes],
    )
    assert tally is not None and tally["recorded"] <= len(outcomes)
    counts["sent"] += tally["sent"]
    counts["failed"] += tally["failed"]
    counts["retry"] += sum(o.state == "pending" for o in outcomes)
    counts["not_recorded"] += len(outcomes) - tally["recorded"]  # taken over, or scrubbed
    return tally


async def release(pool: asyncpg.Pool, campaign_id: int, rows: list[asyncpg.Record]) -> int:
    """Rows claimed but not tried (the campaign was paused or cancelled): pending again."""
    result = await pool.execute(
        """UPDATE breach_recipients SET state = 'pending', attempts = attempts - 1, lease_until = NULL
            WHERE campaign_id = $1 AND account_id = ANY ($2::bigint[]) AND state = 'sending'
              AND (account_id, attempts) IN (SELECT * FROM unnest($2::bigint[], $3::int[]))""",
        campaign_id,
        *_keys(rows),
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


async def recover(pool: asyncpg.Pool, quiet: timedelta) -> dict[str, Any]:
    """Rows left `sending` by a dead worker go back to `pending`; campaigns `sending` with
    no claim for `quiet` (their lane messages lost, say) are returned to restart lanes;
    campaigns with nothing left are finished."""
    # Only the campaigns not yet done: the table holds every row of every campaign.
    returned = rows_affected(await pool.execute(RETURN_ABANDONED))
    restart, finished = [], []
    for campaign in await pool.fetch(
        "SELECT id, active_at < now() - $1::interval AS quiet FROM breach_campaigns WHERE state = 'sending'",
        quiet,
    ):
        if await finish_if_done(pool, campaign["id"]):
            finished.append(campaign["id"])
        elif campaign["quiet"] or returned:
            restart.append(campaign["id"])
    return {"restart": restart, "finished": finished, "returned": returned}
