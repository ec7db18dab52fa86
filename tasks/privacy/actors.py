"""Privacy actors and jobs: thin wrappers over tasks.privacy.deadlines and tasks.privacy.export."""

from __future__ import annotations

from typing import Any

import asyncpg
import dramatiq

import workers.broker  # noqa: F401  (Dramatiq's global broker must exist before actors are declared)
from tasks.privacy.deadlines import check_deadlines
from tasks.privacy.export import Exporting, being_erased, export_account
from tasks.privacy.register import open_request
from workers.jobs import Conflict, JobArguments, RowId, current_job_id, current_requester, job, row_must_exist
from workers.queues import policy
from workers.resources import Resources, current_resources
from workers.stripe_calls import RateLimitedStripe


@dramatiq.actor(actor_name="privacy.check_deadlines", **policy("default").actor_options())
async def check_deadlines_now() -> None:
    """Alert on open requests overdue or due within 5 days. Repeating it repeats the alert,
    which is the point while a request waits."""
    resources = current_resources()
    await check_deadlines(resources.pool, resources.settings)


class ExportArguments(JobArguments):
    account_id: RowId
    with_instances: bool = False


account_exists = row_must_exist("accounts", "account_id")


async def exportable(pool: asyncpg.Pool, arguments: ExportArguments) -> str | Conflict | None:
    if (missing := await account_exists(pool, arguments)) is not None:
        return missing
    why = await being_erased(pool, arguments.account_id)
    return Conflict(why) if why is not None else None


@job("privacy.export", scope="privacy", arguments=ExportArguments, queue="exports", precheck=exportable)
async def export_job(resources: Resources, arguments: ExportArguments) -> dict[str, Any]:
    """Send the customer a link to an archive of all their data (GDPR Art. 15 and 20), and
    record the request in the register. `with_instances` adds their instances' databases."""
    assert resources.stripe is not None
    async with resources.pool.acquire() as conn, conn.transaction():
        request_id = await open_request(
            conn,
            "export",
            arguments.account_id,
            received_by=current_requester(),
            export_job_id=current_job_id(),
        )
    clients = Exporting(
        resources.settings, resources.pool, resources.stripe, RateLimitedStripe(resources.stripe_limiter)
    )
    return await export_account(
        clients, arguments.account_id, request_id, with_instances=arguments.with_instances
    )
