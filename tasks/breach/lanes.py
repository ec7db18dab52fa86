"""Sending a campaign, one batch at a time, by lanes: each `breach.send` message claims the
next BREACH_BATCH_SIZE due rows (`pending → sending`, with a lease), sends them through the
worker's SMTP pool under the global rate limit, records each outcome, and sends itself
again while rows remain. Several lanes run at once; rows are claimed with SKIP LOCKED, so
two lanes never hold the same row.

Exactly once, per recipient: a row is `sent` only after the server accepted the message.
Outcomes are written every FLUSH_EVERY messages, so a crash re-sends at most what its lane
had sent but not yet recorded: the reconciler returns rows whose lease ran out to
`pending` (duplicates bounded by one batch per lane in flight). A live lane renews the
lease of the rows it still holds every RENEW_EVERY in the background
(`workers.leases.keep_renewing`), whatever the rate, even while a send waits on a slow
server.

Outcomes: a 2xx reply is `sent`; 4xx replies and connection errors come back `pending`
after a backoff, up to BREACH_MAX_ATTEMPTS tries, then `failed`; 5xx is `failed` with its
code. When failures pass BREACH_FAILURE_THRESHOLD the campaign pauses itself and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosmtplib
import asyncpg

from tasks.breach.campaigns import finish_if_done, load, notice_of, pause_itself
from tasks.breach.message import CompiledMessage, Recipient
from tasks.breach.notice import Notice, NoticeError
from tasks.breach.recipient_rows import (
    LEASE,
    Outcome,
    claim_batch,
    earliest_retry,
    reachable_again,
    record_outcomes,
    release,
    renew,
)
from tasks.breach.smtp_delivery import CONNECTION_ERRORS, deliver
from workers.leases import keep_renewing
from workers.rate_limit import RateLimiter
from workers.settings import Settings
from workers.smtp_pool import SmtpPool

FLUSH_EVERY = 20
RENEW_EVERY = LEASE / 3
MAX_BACKOFF_SECONDS = 600.0
TOKENS_AT_ONCE = 20
PROBE_SECONDS = 10.0  # a lane tries an unreachable server again this often (one row's try)


def backoff(attempts: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 5.0 * 2.0 ** (attempts - 1)))


@dataclass
class CampaignSender:
    """One lane of a campaign's sending: the worker's pool, SMTP pool, rate limiter and
    settings, with the campaign's message compiled once for all its batches."""

    pool: asyncpg.Pool
    settings: Settings
    smtp: SmtpPool
    limiter: RateLimiter | None
    tokens: int = 0  # taken from the shared bucket, not yet spent
    _compiled: CompiledMessage | None = None

    def compiled_message(self, campaign_id: int, notice: Notice) -> CompiledMessage:
        """The campaign's message, compiled once for the lane's batches: compiled once a
        batch, it would add about half again to what writing the batch's messages costs."""
        known = self._compiled
        if known is None or known.campaign_id != campaign_id or known.notice != notice:
            settings = self.settings
            known = CompiledMessage(
                campaign_id, notice, sender=settings.mail_from, privacy_contact=settings.privacy_contact
            )
            self._compiled = known
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


async def send_batch(lane: CampaignSender, campaign_id: int) -> dict[str, int | float | None]:
    """Claim and send one batch. Returns counts and `more`: 0 when nothing is due now,
    else 1; `wait`: seconds until the earliest retry when nothing is due but some wait."""
    pool, settings = lane.pool, lane.settings
    campaign = await load(pool, campaign_id)
    if campaign["state"] != "sending":
        return {"claimed": 0, "more": 0, "wait": None}
    claimed = await claim_batch(pool, campaign_id, settings.breach_batch_size)
    if not claimed:
        wait = await earliest_retry(pool, campaign_id)
        if wait is None:
            await finish_if_done(pool, campaign_id)
        return {"claimed": 0, "more": 0, "wait": max(1.0, wait) if wait is not None else None}
    compiled = lane.compiled_message(campaign_id, notice_of(campaign))
    outcomes: list[Outcome] = []
    counts = {"claimed": len(claimed), "sent": 0, "failed": 0, "retry": 0, "released": 0, "not_recorded": 0}
    wait = None
    # Those sent but not yet recorded too: a lane sending them again would be a duplicate.
    async with keep_renewing(
        lambda: renew(pool, campaign_id, claimed), RENEW_EVERY.total_seconds(), "breach rows"
    ):
        for done, row in enumerate(claimed):
            outcome = await _send_one(lane, compiled, row)
            outcomes.append(outcome)
            if outcome.state == "pending" and outcome.reply_code is None:
                # The server is unreachable: the rest of the batch waits without spending a try,
                # and so does this lane.
                counts["released"] = await release(pool, campaign_id, claimed[done + 1 :])
                await pool.execute(
                    "UPDATE breach_campaigns SET unreachable_at = now() WHERE id = $1", campaign_id
                )
                wait = min(outcome.retry_in or PROBE_SECONDS, PROBE_SECONDS)
                break
            if len(outcomes) >= FLUSH_EVERY:
                tally = await record_outcomes(pool, campaign_id, outcomes, counts)
                outcomes = []
                # Paused or cancelled meanwhile, or paused by this very tally: stop here.
                if tally["state"] != "sending" or await _check_failures(lane, campaign_id, tally):
                    counts["released"] = await release(pool, campaign_id, claimed[done + 1 :])
                    break
        if outcomes:
            tally = await record_outcomes(pool, campaign_id, outcomes, counts)
            await _check_failures(lane, campaign_id, tally)
    if counts["sent"] and campaign["unreachable_at"] is not None:
        await reachable_again(pool, campaign_id)
    return {**counts, "more": 0 if wait else 1, "wait": wait}


async def _send_one(lane: CampaignSender, compiled: CompiledMessage, row: asyncpg.Record) -> Outcome:
    account_id, attempts = row["account_id"], row["attempts"]
    if not row["exists"] or row["email"] is None:
        return Outcome(account_id, attempts, "skipped", error="account erased")
    recipient = Recipient(account_id, row["email"], row["first_name"], row["last_name"], row["business_name"])
    try:
        message = compiled.message(recipient)
    except NoticeError as error:
        return Outcome(account_id, attempts, "failed", error=str(error))  # our message: never the address
    if lane.limiter is not None:
        await lane.token()
    try:
        code = await deliver(lane.smtp, compiled.envelope_from, recipient.email, message)
    except aiosmtplib.SMTPNotSupported:
        needs = "the address needs SMTPUTF8, which the server does not offer"
        return Outcome(account_id, attempts, "failed", error=needs)
    except CONNECTION_ERRORS as error:
        return _later(account_id, attempts, lane.settings, None, type(error).__name__)
    if 200 <= code < 300:
        return Outcome(account_id, attempts, "sent", reply_code=code)
    if 400 <= code < 500:
        return _later(account_id, attempts, lane.settings, code, f"temporary reply {code}")
    return Outcome(account_id, attempts, "failed", reply_code=code, error=f"refused with {code}")


def _later(account_id: int, attempts: int, settings: Settings, code: int | None, error: str) -> Outcome:
    if attempts >= settings.breach_max_attempts:
        return Outcome(account_id, attempts, "failed", reply_code=code, error=f"{error}, {attempts} attempts")
    return Outcome(account_id, attempts, "pending", reply_code=code, error=error, retry_in=backoff(attempts))


async def _check_failures(lane: CampaignSender, campaign_id: int, tally: asyncpg.Record) -> bool:
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
