"""Sending a campaign, one batch at a time, by lanes: each `breach.send` message claims the
next BREACH_BATCH_SIZE due rows (`pending → sending`, with a lease), sends them through the
worker's SMTP pool under the global rate limit, records each outcome, and sends itself
again while rows remain. Several lanes run at once; rows are claimed with SKIP LOCKED, so
two lanes never hold the same row.

Exactly once, per recipient: a row is `sent` only after the server accepted the message.
Outcomes are written every FLUSH_EVERY messages, so a crash re-sends at most what its lane
had sent but not yet recorded: the reconciler returns rows whose lease ran out to
`pending` (duplicates bounded by one batch per lane in flight). A live lane renews the
lease of the rows it still holds every RENEW_EVERY, whatever the rate.

Outcomes: a 2xx reply is `sent`; 4xx replies and connection errors come back `pending`
after a backoff, up to BREACH_MAX_ATTEMPTS tries, then `failed`; 5xx is `failed` with its
code. When failures pass BREACH_FAILURE_THRESHOLD the campaign pauses itself and says why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiosmtplib
import asyncpg

from tasks.breach.campaigns import finish_if_done, load, notice_of, pause_itself
from tasks.breach.message import Prepared, Recipient
from tasks.breach.notice import Notice, NoticeError
from workers.db import rows_affected
from workers.rate_limit import RateLimiter
from workers.settings import Settings
from workers.smtp_pool import SmtpPool

LEASE = timedelta(minutes=5)
RENEW_EVERY = LEASE / 3
FLUSH_EVERY = 20
MAX_BACKOFF_SECONDS = 600.0
TOKENS_AT_ONCE = 20
PROBE_SECONDS = 10.0  # a lane tries an unreachable server again this often (one row's try)
CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
)


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


def backoff(attempts: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 5.0 * 2.0 ** (attempts - 1)))


@dataclass
class Lane:
    """What one lane needs: the worker's pool, limiter and settings."""

    pool: asyncpg.Pool
    settings: Settings
    smtp: SmtpPool
    limiter: RateLimiter | None
    tokens: int = 0  # taken from the shared bucket, not yet spent
    _prepared: Prepared | None = None

    def prepared(self, campaign_id: int, notice: Notice) -> Prepared:
        """The campaign's message, compiled once for the lane's batches (about a
        millisecond each time: 10 µs a message of a 100-row batch, half of what rendering
        a message costs)."""
        known = self._prepared
        if known is None or known.campaign_id != campaign_id or known.notice != notice:
            settings = self.settings
            known = Prepared(
                campaign_id, notice, sender=settings.mail_from, privacy_contact=settings.privacy_contact
            )
            self._prepared = known
        return known

    async def token(self) -> None:
        """One message's token. Taken from Redis a few at a time (a round trip per message
        cost as much as writing the message); a lane holds at most a twentieth of a
        second's worth, so the provider's rate is kept within that."""
        assert self.limiter is not None
        if self.tokens == 0:
            chunk = max(1, min(TOKENS_AT_ONCE, int(self.settings.breach_messages_per_second / 20)))
            await self.limiter.take(chunk)
            self.tokens = min(chunk, self.limiter.burst)
        self.tokens -= 1


async def send_batch(lane: Lane, campaign_id: int) -> dict[str, int | float | None]:
    """Claim and send one batch. Returns counts and `more`: 0 when nothing is due now,
    else 1; `wait`: seconds until the earliest retry when nothing is due but some wait."""
    pool, settings = lane.pool, lane.settings
    campaign = await load(pool, campaign_id)
    if campaign["state"] != "sending":
        return {"claimed": 0, "more": 0, "wait": None}
    claimed = await pool.fetch(CLAIM, campaign_id, settings.breach_batch_size, LEASE)
    if not claimed:
        wait = await pool.fetchval(
            """SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM breach_recipients
                WHERE campaign_id = $1 AND state = 'pending'""",
            campaign_id,
        )
        if wait is None:
            await finish_if_done(pool, campaign_id)
        return {"claimed": 0, "more": 0, "wait": max(1.0, float(wait)) if wait is not None else None}
    prepared = lane.prepared(campaign_id, notice_of(campaign))
    outcomes: list[Outcome] = []
    counts = {"claimed": len(claimed), "sent": 0, "failed": 0, "retry": 0, "released": 0}
    wait = None
    loop = asyncio.get_running_loop()
    renewed_at, held = loop.time(), [r["account_id"] for r in claimed]
    for done, row in enumerate(claimed):
        if loop.time() - renewed_at > RENEW_EVERY.total_seconds():
            # Those sent but not yet recorded too: a lane sending them again would be a duplicate.
            await pool.execute(RENEW, campaign_id, held, LEASE)
            renewed_at = loop.time()
        outcome = await _send_one(lane, prepared, row)
        outcomes.append(outcome)
        if outcome.state == "pending" and outcome.reply_code is None:
            # The server is unreachable: the rest of the batch waits without spending a try,
            # and so does this lane.
            rest = [r["account_id"] for r in claimed[done + 1 :]]
            counts["released"] = await _release(pool, campaign_id, rest)
            await pool.execute(
                "UPDATE breach_campaigns SET unreachable_at = now() WHERE id = $1", campaign_id
            )
            wait = min(outcome.retry_in or PROBE_SECONDS, PROBE_SECONDS)
            break
        if len(outcomes) >= FLUSH_EVERY:
            tally = await _record(pool, campaign_id, outcomes, counts)
            outcomes = []
            # Paused or cancelled meanwhile, or paused by this very tally: stop here.
            if tally["state"] != "sending" or await _check_failures(lane, campaign_id, tally):
                counts["released"] = await _release(
                    pool, campaign_id, [r["account_id"] for r in claimed[done + 1 :]]
                )
                break
    if outcomes:
        await _check_failures(lane, campaign_id, await _record(pool, campaign_id, outcomes, counts))
    if counts["sent"] and campaign["unreachable_at"] is not None:
        await _reachable_again(pool, campaign_id)
    return {**counts, "more": 0 if wait else 1, "wait": wait}


async def _reachable_again(pool: asyncpg.Pool, campaign_id: int) -> None:
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


async def _send_one(lane: Lane, prepared: Prepared, row: asyncpg.Record) -> Outcome:
    account_id, attempts = row["account_id"], row["attempts"]
    if not row["exists"] or row["email"] is None:
        return Outcome(account_id, "skipped", error="account erased")
    recipient = Recipient(account_id, row["email"], row["first_name"], row["last_name"], row["business_name"])
    try:
        message = prepared.message(recipient)
    except NoticeError as error:
        return Outcome(account_id, "failed", error=str(error))  # our message: never the address
    if lane.limiter is not None:
        await lane.token()
    try:
        code = await _deliver(lane.smtp, prepared.envelope_from, recipient.email, message)
    except aiosmtplib.SMTPNotSupported:
        return Outcome(
            account_id, "failed", error="the address needs SMTPUTF8, which the server does not offer"
        )
    except CONNECTION_ERRORS as error:
        return _later(account_id, attempts, lane.settings, None, type(error).__name__)
    if 200 <= code < 300:
        return Outcome(account_id, "sent", reply_code=code)
    if 400 <= code < 500:
        return _later(account_id, attempts, lane.settings, code, f"temporary reply {code}")
    return Outcome(account_id, "failed", reply_code=code, error=f"refused with {code}")


def _later(account_id: int, attempts: int, settings: Settings, code: int | None, error: str) -> Outcome:
    if attempts >= settings.breach_max_attempts:
        return Outcome(account_id, "failed", reply_code=code, error=f"{error}, {attempts} attempts")
    return Outcome(account_id, "pending", reply_code=code, error=error, retry_in=backoff(attempts))


async def _deliver(smtp: SmtpPool, sender: str, recipient: str, message: bytes) -> int:
    """The server's reply code for the message (its only recipient's, if refused there).

    MAIL, RCPT and DATA are sent one by one rather than through `sendmail`, which parses
    both addresses twice and rewrites the message's line ends twice more: a tenth of a
    lane's CPU, for a message already written with CRLF and addresses already checked
    (`check_address`)."""
    async with smtp.connection() as client:
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        options, encoding = [], "ascii"
        if not recipient.isascii():
            if not client.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not offered")
            options, encoding = ["SMTPUTF8"], "utf-8"
        if client.supports_extension("size"):
            options.append(f"SIZE={len(message)}")  # RFC 1870: lets the server refuse it early
        try:
            await client.mail(sender, options=options, encoding=encoding)
            await client.rcpt(recipient, encoding=encoding)
            await client.data(message)
        except aiosmtplib.SMTPResponseException as error:
            await client.rset()  # the connection stays usable for the next message
            return int(error.code)
        return 250  # anything but a 2xx to DATA raises


async def _record(
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


async def _release(pool: asyncpg.Pool, campaign_id: int, account_ids: list[int]) -> int:
    """Rows claimed but not tried (the campaign was paused or cancelled): pending again."""
    result = await pool.execute(
        """UPDATE breach_recipients SET state = 'pending', attempts = attempts - 1, lease_until = NULL
            WHERE campaign_id = $1 AND account_id = ANY($2::bigint[]) AND state = 'sending'""",
        campaign_id,
        account_ids,
    )
    return rows_affected(result)


async def _check_failures(lane: Lane, campaign_id: int, tally: asyncpg.Record) -> bool:
    """Pause the campaign when failures pass the threshold; whether it is now paused."""
    settings = lane.settings
    tried = tally["sent_count"] + tally["failed_count"]
    failed = tally["failed_count"]
    if failed >= settings.breach_failure_minimum and failed >= settings.breach_failure_threshold * tried:
        codes = await lane.pool.fetch(
            """SELECT reply_code, count(*) AS n FROM breach_recipients
                WHERE campaign_id = $1 AND state = 'failed' GROUP BY reply_code ORDER BY n DESC LIMIT 3""",
            campaign_id,
        )
        common = ", ".join(f"{r['reply_code'] or 'no reply'} ×{r['n']}" for r in codes)
        return await pause_itself(
            lane.pool,
            campaign_id,
            f"{failed} of {tried} messages failed (threshold {settings.breach_failure_threshold:.0%});"
            f" most common: {common}. Check the sender's configuration, then `bindery breach resume`.",
        )
    return False


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
