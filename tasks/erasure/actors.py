"""Erasure actors and jobs: thin wrappers over tasks.erasure.requests and tasks.erasure.saga."""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq

from tasks.erasure.notices import request_notice
from tasks.erasure.requests import cancel_erasure, due_requests, request_erasure, summary
from tasks.erasure.saga import run_request
from workers.enqueue import enqueue_many
from workers.jobs import JobArguments, RowId, current_requester, job, row_must_exist
from workers.logs import get_logger
from workers.mail import MailRefused, NotAMailbox, send_message
from workers.queues import policy
from workers.resources import Resources, current_resources

log = get_logger(__name__)


class AccountArguments(JobArguments):
    account_id: RowId


async def send_request_notice(resources: Resources, request_id: int) -> str | None:
    """Email the customer when the erasure will run and how to stop it, once per request.
    Returns 'sent', or why it never will be ('refused 550', 'not a mailbox', kept in the
    request's report), or None when it was sent already or the request has begun."""
    row = await resources.pool.fetchrow(
        """SELECT r.run_after, a.email FROM erasure_requests r JOIN accounts a ON a.id = r.account_id
            WHERE r.id = $1 AND r.notice_sent_at IS NULL AND r.state = 'pending'
              AND NOT r.report ? 'request_notice'""",
        request_id,
    )
    if row is None:
        return None
    settings = resources.settings
    try:
        await send_message(settings, request_notice(settings, row["email"], request_id, row["run_after"]))
    except MailRefused as refused:
        outcome = f"refused {refused.code}"
    except NotAMailbox:
        outcome = "not a mailbox"
    else:
        await resources.pool.execute(
            "UPDATE erasure_requests SET notice_sent_at = now() WHERE id = $1", request_id
        )
        return "sent"
    # Never deliverable: recorded (a reply code, no address), and the erasure goes on.
    await resources.pool.execute(
        """UPDATE erasure_requests SET report = report || jsonb_build_object('request_notice', $2::text)
            WHERE id = $1""",
        request_id,
        outcome,
    )
    log.info("erasure notice not delivered", request_id=request_id, outcome=outcome)
    return outcome


async def request_job(resources: Resources, arguments: AccountArguments) -> dict[str, Any]:
    """Open (or find) the account's erasure request and tell the customer. Idempotent: a
    second request returns the open one; the notice is sent once."""
    async with resources.pool.acquire() as conn:
        request, created = await request_erasure(
            conn,
            arguments.account_id,
            grace=resources.settings.erasure_grace,
            requested_by=current_requester(),
        )
    notice = await send_request_notice(resources, request["id"])
    return summary(request, created, notice)


async def cancel_job(resources: Resources, arguments: AccountArguments) -> dict[str, Any]:
    """Cancel the account's pending erasure within its grace period. A repeat fails clearly."""
    async with resources.pool.acquire() as conn:
        cancelled = await cancel_erasure(conn, arguments.account_id, cancelled_by=current_requester())
    return {"request_id": cancelled["id"], "state": cancelled["state"]}


account_exists = row_must_exist("accounts", "account_id")
job("erasure.request", scope="erasure", arguments=AccountArguments, queue="erasure", precheck=account_exists)(
    request_job
)
job("erasure.cancel", scope="erasure", arguments=AccountArguments, queue="erasure", precheck=account_exists)(
    cancel_job
)


@dramatiq.actor(actor_name="erasure.run", queue_name="erasure", **policy("erasure").actor_options())
async def run(request_id: int) -> None:
    """Run an erasure's remaining steps. Idempotent: finished steps are skipped, each step
    is safe to repeat, and a request another worker holds is left to it."""
    state = await run_request(current_resources(), request_id)
    log.info("erasure run", request_id=request_id, state=state)


async def send_runs(request_ids: list[int]) -> None:
    if request_ids:
        messages = [run.message(request_id) for request_id in request_ids]
        await asyncio.to_thread(enqueue_many, run.broker, messages)


@dramatiq.actor(actor_name="erasure.run_due", **policy("default").actor_options())
async def run_due() -> None:
    """Send every request whose grace has ended, or whose worker died. Safe to repeat: a
    request is claimed by one worker at a time."""
    request_ids = await due_requests(current_resources().pool)
    await send_runs(request_ids)
    if request_ids:
        log.info("sent due erasures", count=len(request_ids))
