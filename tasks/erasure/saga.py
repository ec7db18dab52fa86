"""Run one erasure request through its steps, resuming after whatever was finished.

A worker claims the request with a lease; the claim's attempt number fences it: before
each stage (a step, or steps that run at once: see `STAGES`) the request is re-read, and
if another worker has claimed it since (this one's lease ran out) or it is no longer
running, this one stops. Each step's start, attempts, error and counts are recorded in
`erasure_steps`; a finished step is not run again. A failing step leaves the request
`running` with the error, lease released once the steps beside it have finished, and
raises: the broker retries with backoff, and the scheduler's sweep re-sends it if the
message is lost. Only `delete_account`, after `verify` passed, marks it `done`.
"""

from __future__ import annotations

import asyncio

import asyncpg

from tasks.erasure.audit import audit
from tasks.erasure.context import Erasure, capture_identity
from tasks.erasure.steps import STAGES, Step
from workers.jobs import describe_error
from workers.leases import Held, abandoned, lease_for
from workers.logs import get_logger
from workers.resources import Resources
from workers.stripe_calls import RateLimitedStripe

log = get_logger(__name__)
# A run is one message, which Dramatiq stops at the queue's time limit: it never outlives
# its lease. Renewed before each stage all the same, fenced by the attempt number.
LEASE = lease_for("erasure")
REAPPLY = "reapply"  # requested_by of an erasure re-applied to a restored database


async def run_request(resources: Resources, request_id: int) -> str:
    """Run the request's remaining steps; return its state ('skipped' when not ours now)."""
    assert resources.stripe is not None
    pool = resources.pool
    claim = await _claim(pool, request_id)
    if claim is None:
        return "skipped"
    erasure = Erasure(
        request_id=request_id,
        account_id=claim["account_id"],
        settings=resources.settings,
        pool=pool,
        stripe=resources.stripe,
        gate=RateLimitedStripe(resources.stripe_limiter),
        instance_ids=await _instance_ids(pool, request_id, claim),
        identity=await capture_identity(pool, request_id, claim["account_id"]),
        notify=claim["requested_by"] != REAPPLY,
        s3=resources.s3,
    )
    finished = await _finished_steps(pool, request_id)
    for stage in STAGES:
        remaining = [(name, step) for name, step in stage if name not in finished]
        if not remaining:
            continue
        if not await _held(request_id, claim["attempts"]).renew(pool):
            return "superseded"
        # A step that fails does not stop its siblings: what they finish stays finished.
        outcomes = await asyncio.gather(
            *(_run_step(erasure, name, step) for name, step in remaining), return_exceptions=True
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            if all(isinstance(failure, Exception) for failure in failures):
                # Released once the siblings are done too: no other run starts beside them.
                await _held(request_id, claim["attempts"]).release(pool)
            raise failures[0]
    log.info("erasure done", request_id=request_id)
    return "done"


async def _claim(pool: asyncpg.Pool, request_id: int) -> asyncpg.Record | None:
    """The request, now ours for LEASE: due and pending, or running with its lease run out."""
    claimed: asyncpg.Record | None = await pool.fetchrow(
        f"""
        UPDATE erasure_requests SET state = 'running', attempts = attempts + 1,
               lease_until = now() + $2::interval
         WHERE id = $1 AND ((state = 'pending' AND run_after <= now()) OR {abandoned("running")})
        RETURNING account_id, attempts, report, requested_by
        """,  # nosec B608: workers.leases' fixed predicates, no input
        request_id,
        LEASE,
    )
    return claimed


async def _instance_ids(pool: asyncpg.Pool, request_id: int, claim: asyncpg.Record) -> list[int]:
    """The account's instances as the first run found them, remembered by id for every later run."""
    report = claim["report"] or {}
    if "instance_ids" not in report:
        ids = await pool.fetch(
            "SELECT id FROM instances WHERE account_id = $1 ORDER BY id", claim["account_id"]
        )
        report = {**report, "instance_ids": [row["id"] for row in ids]}
        await pool.execute("UPDATE erasure_requests SET report = $2 WHERE id = $1", request_id, report)
    instance_ids: list[int] = report["instance_ids"]
    return instance_ids


async def _finished_steps(pool: asyncpg.Pool, request_id: int) -> set[str]:
    rows = await pool.fetch(
        "SELECT step FROM erasure_steps WHERE request_id = $1 AND finished_at IS NOT NULL", request_id
    )
    return {row["step"] for row in rows}


def _held(request_id: int, attempts: int) -> Held:
    """The claim of one run: fenced by its attempt number, so a later run that took over wins."""
    return Held("erasure_requests", "id", request_id, "attempts", attempts, LEASE)


async def _run_step(erasure: Erasure, name: str, step: Step) -> None:
    """Run one step, recording its start, attempts, and its error or its counts."""
    pool, request_id = erasure.pool, erasure.request_id
    await pool.execute(
        """
        INSERT INTO erasure_steps (request_id, step, started_at, attempts) VALUES ($1, $2, now(), 1)
        ON CONFLICT (request_id, step) DO UPDATE SET attempts = erasure_steps.attempts + 1, error = NULL
        """,
        request_id,
        name,
    )
    try:
        counts = await step(erasure)
    except Exception as error:
        message = describe_error(error)
        await pool.execute(
            "UPDATE erasure_steps SET error = $3 WHERE request_id = $1 AND step = $2",
            request_id,
            name,
            message,
        )
        await pool.execute(
            "UPDATE erasure_requests SET last_error = $2 WHERE id = $1", request_id, f"{name}: {message}"
        )
        log.warning("erasure step failed", request_id=request_id, step=name, error=message)
        raise
    if name != "delete_account":  # that step records itself, with the request's end
        await pool.execute(
            """UPDATE erasure_steps SET finished_at = now(), counts = $3, error = NULL
                WHERE request_id = $1 AND step = $2""",
            request_id,
            name,
            counts,
        )
    await audit(pool, "system", f"erasure.step.{name}", request_id, {"counts": counts})
