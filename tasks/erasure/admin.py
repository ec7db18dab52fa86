"""What the `bindery erasure …` commands do, as plain functions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tasks.erasure.actors import send_request_notice, send_runs
from tasks.erasure.ledger import erased_accounts
from tasks.erasure.requests import cancel_erasure, request_erasure, request_status, summary
from tasks.erasure.saga import REAPPLY, run_request
from workers.db import connect
from workers.resources import close_resources, open_resources
from workers.settings import Settings


async def request(settings: Settings, account_id: int, *, now: bool) -> dict[str, Any]:
    """Open the request (or find the open one) and notify the customer; with `now`, no
    grace period, and the run is sent at once."""
    resources = await open_resources(settings, pool_size=2)
    try:
        grace = timedelta(0) if now else settings.erasure_grace
        async with resources.pool.acquire() as conn:
            row, created = await request_erasure(conn, account_id, grace=grace, requested_by="cli")
        notice = await send_request_notice(resources, row["id"])
    finally:
        await close_resources(resources)
    if now:
        await send_runs([row["id"]])
    return summary(row, created, notice)


async def cancel(settings: Settings, account_id: int) -> dict[str, Any]:
    conn = await connect(settings.database_url)
    try:
        row = await cancel_erasure(conn, account_id, cancelled_by="cli")
    finally:
        await conn.close()
    return {"request_id": row["id"], "state": row["state"]}


async def status(settings: Settings, request_id: int) -> dict[str, Any] | None:
    conn = await connect(settings.database_url)
    try:
        return await request_status(conn, request_id)
    finally:
        await conn.close()


async def reapply(settings: Settings, target_url: str | None) -> list[int]:
    """Erase again, in `target_url` (default: DATABASE_URL), every account the ledger of
    DATABASE_URL says was erased: after a restore from a backup older than the erasure.
    Runs each erasure to the end here (without emailing the customer again); returns the
    account ids."""
    target_settings = settings.model_copy(update={"database_url": target_url or settings.database_url})
    ledger = await connect(settings.database_url)
    resources = await open_resources(target_settings, pool_size=2)
    try:
        key = settings.erasure_ledger_key.get_secret_value()
        async with resources.pool.acquire() as target:
            account_ids = await erased_accounts(ledger, target, key)
            request_ids = []
            for account_id in account_ids:
                row, _ = await request_erasure(target, account_id, grace=timedelta(0), requested_by=REAPPLY)
                # A request restored from within its grace period runs now too.
                await target.execute(
                    "UPDATE erasure_requests SET run_after = least(run_after, now()) WHERE id = $1", row["id"]
                )
                request_ids.append(row["id"])
        for request_id in request_ids:
            await run_request(resources, request_id)
    finally:
        await ledger.close()
        await close_resources(resources)
    return account_ids
