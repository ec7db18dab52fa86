"""Promise: "You have the option to request the deletion of your account and the above
information at any time."

An erasure leaves nothing of the customer in any table, instance database, backup
object or at Stripe, except the invoices French law makes us keep (unlinked from
anyone), proves it before it is done, and touches no other customer.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import stripe

from tasks.erasure.requests import (
    NotCancellable,
    UnknownAccount,
    cancel_erasure,
    request_erasure,
    request_status,
)
from tasks.erasure.saga import run_request
from tasks.erasure.steps import STEPS
from tests.erasure_scenario import (
    assert_intact,
    database_exists,
    erase_now,
    mails_to,
    make_customer,
    objects_under,
    remove_databases,
)
from workers.resources import Resources


async def test_an_erasure_leaves_nothing_but_unlinked_invoices_and_touches_nobody_else(
    worker_resources: Resources, database_url: str, smtp_sink: Path
) -> None:
    resources = worker_resources
    pool = resources.pool
    erased = await make_customer(resources, database_url)
    bystander = await make_customer(resources, database_url)
    try:
        request_id = await erase_now(resources, erased.account_id)
        async with pool.acquire() as conn:
            with pytest.raises(NotCancellable):  # the grace period is over
                await cancel_erasure(conn, erased.account_id, cancelled_by="test")
        assert await run_request(resources, request_id) == "done"

        assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = $1", erased.account_id) == 0
        for url in erased.database_urls:
            assert not await database_exists(pool, url)
        for instance_id in erased.instance_ids:
            assert await objects_under(resources, instance_id) == 0
        assert resources.stripe is not None
        try:  # Stripe answers `deleted: true`; localstripe forgets the customer
            gone = await resources.stripe.v1.customers.retrieve_async(erased.customer_id)
            assert gone.to_dict().get("deleted") is True
        except stripe.InvalidRequestError as error:
            assert error.http_status == 404
        invoice = await pool.fetchrow("SELECT * FROM invoices WHERE id = $1", erased.object_ids["invoice"])
        assert invoice["account_id"] is None and invoice["customer_id"] is None and invoice["total"] == 1900
        assert await pool.fetchval("SELECT count(*) FROM erasure_ledger") >= 3
        assert len(mails_to(smtp_sink, erased.email)) == 1  # the completion notice

        async with pool.acquire() as conn:
            status = await request_status(conn, request_id)
        assert status is not None and status["state"] == "done" and status["verification"] == "passed"
        assert [step["step"] for step in status["steps"]] == [name for name, _ in STEPS]
        assert all(step["finished_at"] for step in status["steps"])
        assert status["retained"]["invoices"]["count"] == 1
        assert "L123-22" in status["retained"]["invoices"]["legal_basis"]
        counts = {step["step"]: step["counts"] for step in status["steps"]}
        assert counts["backup_objects"] == {"objects": 6, "multipart_uploads": 1, "catalog_rows": 0}
        assert counts["instance_databases"] == {"instance_databases": 2}
        assert counts["stripe_customer"] == {"stripe_customers": 1}
        actions = await pool.fetch(
            "SELECT action, details::text AS details FROM audit_log WHERE subject_id = $1", str(request_id)
        )
        assert {"erasure.requested", "erasure.done"} <= {row["action"] for row in actions}
        assert not any(erased.email.lower() in row["details"].lower() for row in actions)

        await assert_intact(resources, bystander)
        async with pool.acquire() as conn:  # asking again once it is gone: a clear error
            with pytest.raises(UnknownAccount):
                await request_erasure(conn, erased.account_id, grace=timedelta(0), requested_by="test")
    finally:
        await remove_databases(erased)
        await remove_databases(bystander)
