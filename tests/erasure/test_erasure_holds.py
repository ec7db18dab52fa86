"""An erasure holds against what the real world does after it has begun: Stripe's late,
retried and reordered webhooks, a refused mailbox, rows changed between two runs, a
restore from before the erasure, the same person signing up again."""

from __future__ import annotations

import dataclasses
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from tasks.billing.objects import apply_subscription
from tasks.billing.ordering import apply_in_order
from tasks.billing.processing import process_event
from tasks.erasure.admin import reapply
from tasks.erasure.ledger import digest
from tasks.erasure.requests import request_erasure
from tasks.erasure.saga import run_request
from tasks.erasure.steps import STAGES, Step
from tasks.erasure.verify import find_leftovers
from tests.billing_events import deliver, event, stored, subscription
from tests.erasure_scenario import erase_now, erasure_of, mails_to, make_customer, remove_databases
from workers.db import connect, drop_database, ensure_database
from workers.devstack import commands
from workers.devstack.servers import free_port, running
from workers.mail import NotAMailbox, mailbox
from workers.resources import Resources


@pytest.fixture
def resources(worker_resources: Resources) -> Resources:
    return worker_resources


async def test_stripe_s_events_after_the_erasure_bring_nothing_back(
    resources: Resources, database_url: str
) -> None:
    pool = resources.pool
    customer = await make_customer(resources, database_url, instances=1)
    sub = customer.object_ids["subscription"]
    try:
        # Stored before the erasure began, processed after it: checked again when claimed.
        [early] = await stored(
            pool, event("customer.subscription.updated", subscription(sub, customer.customer_id, "active"))
        )
        assert await run_request(resources, await erase_now(resources, customer.account_id)) == "done"
        assert await process_event(pool, early) == "ignored"

        # What Stripe sends once the customer is deleted, late, twice and out of order.
        deleted = event("customer.subscription.deleted", subscription(sub, customer.customer_id, "canceled"))
        gone = event(
            "customer.deleted",
            {"id": customer.customer_id, "object": "customer", "email": customer.email, "deleted": True},
        )
        invoice = event(
            "invoice.voided",
            {
                "id": customer.object_ids["invoice"],
                "object": "invoice",
                "customer": customer.customer_id,
                "customer_email": customer.email,
                "currency": "eur",
                "status": "void",
            },
        )
        mandate = event(
            "mandate.updated",
            {
                "id": customer.object_ids["mandate"],
                "object": "mandate",
                "payment_method": customer.object_ids["sepa"],
                "status": "inactive",
                "type": "multi_use",
            },
        )
        assert await deliver(pool, gone, invoice, deleted, mandate, deleted) == ["skipped"] * 5
        rows = await pool.fetch(
            "SELECT state, payload, object_id FROM stripe_events WHERE id = ANY($1)",
            [early, gone["id"], invoice["id"], deleted["id"], mandate["id"]],
        )
        assert [(r["state"], r["payload"], r["object_id"]) for r in rows] == [("ignored", None, None)] * 5
        assert await pool.fetchval("SELECT count(*) FROM subscriptions WHERE id = $1", sub) == 0
        assert (
            await pool.fetchval(
                "SELECT customer_id FROM invoices WHERE id = $1", customer.object_ids["invoice"]
            )
            is None
        )
        # A backfill's list page of the canceled subscription is refused as well.
        async with pool.acquire() as conn, conn.transaction():
            canceled = subscription(sub, customer.customer_id, "canceled")
            assert not await apply_in_order(
                conn,
                apply_subscription,
                canceled,
                source="backfill",
                as_of=await conn.fetchval("SELECT now()"),
            )
        assert not await find_leftovers(await erasure_of(resources, customer.account_id))
        # The tombstones hold digests, never the raw ids that verification looks for.
        raw = await pool.fetchval(
            "SELECT count(*) FROM stripe_tombstones WHERE position($1::bytea IN digest) > 0",
            customer.customer_id.encode(),
        )
        assert raw == 0
    finally:
        await remove_databases(customer)


async def test_a_customer_whose_card_was_detached_is_erased(resources: Resources, database_url: str) -> None:
    pool = resources.pool
    customer = await make_customer(resources, database_url, instances=1)
    try:
        detached = {
            "id": customer.object_ids["card"],
            "object": "payment_method",
            "type": "card",
            "customer": None,
            "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2031},
            "billing_details": {"name": "Jeanne Dupont", "email": customer.email},
        }
        detach = event("payment_method.detached", detached)
        detach["data"]["previous_attributes"] = {"customer": customer.customer_id}
        assert await deliver(pool, detach) == ["done"]
        request_id = await erase_now(resources, customer.account_id)
        assert await run_request(resources, request_id) == "done"
        assert await pool.fetchval("SELECT payload FROM stripe_events WHERE id = $1", detach["id"]) is None
    finally:
        await remove_databases(customer)


def _failing_once(name: str) -> list[list[tuple[str, Step]]]:
    failed: list[str] = []

    def wrap(step: Step) -> Step:
        async def run(erasure: object) -> dict[str, int]:
            if not failed:
                failed.append(name)
                raise RuntimeError("the worker died here")
            return await step(erasure)

        return run

    return [[(n, wrap(s) if n == name else s) for n, s in stage] for stage in STAGES]


async def test_a_retried_erasure_works_with_the_identity_captured_at_its_first_run(
    resources: Resources, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = resources.pool
    customer = await make_customer(resources, database_url, instances=1)
    try:
        request_id = await erase_now(resources, customer.account_id)
        monkeypatch.setattr("tasks.erasure.saga.STAGES", _failing_once("rows"))
        with pytest.raises(RuntimeError):
            await run_request(resources, request_id)
        # Between the two runs the account row is changed (an unlinking, the customer area).
        await pool.execute(
            "UPDATE accounts SET stripe_customer_id = NULL, email = 'changed@example.org' WHERE id = $1",
            customer.account_id,
        )
        await pool.execute("UPDATE erasure_requests SET lease_until = NULL WHERE id = $1", request_id)
        assert await run_request(resources, request_id) == "done"
        key = resources.settings.erasure_ledger_key.get_secret_value()
        for kind, value in (("stripe_customer_id", customer.customer_id), ("email", customer.email)):
            assert (
                await pool.fetchval(
                    "SELECT count(*) FROM erasure_ledger WHERE kind = $1 AND digest = $2",
                    kind,
                    digest(key, kind, value),
                )
                == 1
            ), kind
        assert (
            await pool.fetchval("SELECT count(*) FROM erasure_subjects WHERE request_id = $1", request_id)
            == 0
        )
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM stripe_events WHERE payload::text LIKE '%' || $1 || '%'",
                customer.customer_id,
            )
            == 0
        )
    finally:
        await remove_databases(customer)


async def test_reapply_erases_a_restored_copy_and_never_the_same_person_signed_up_again(
    resources: Resources, database_url: str, tmp_path: Path
) -> None:
    pool = resources.pool
    erased = await make_customer(resources, database_url, instances=1)
    dump = tmp_path / "before.dump"
    restored_url = database_url.rsplit("/", 1)[0] + f"/restored_{tmp_path.name[-8:].replace('-', '_')}"
    try:
        subprocess.run(["pg_dump", "-Fc", "-f", str(dump), "--dbname", database_url], check=True)
        assert await run_request(resources, await erase_now(resources, erased.account_id)) == "done"
        again = await pool.fetchval(
            "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id", erased.email
        )

        await ensure_database(restored_url)
        subprocess.run(["pg_restore", "--no-owner", "--dbname", restored_url, str(dump)], check=True)
        restored = await connect(restored_url)
        try:
            assert await reapply(resources.settings, restored_url) == [erased.account_id]
            assert (
                await restored.fetchval("SELECT count(*) FROM accounts WHERE id = $1", erased.account_id) == 0
            )
            # In the restored copy the id is free again: a new customer who gets it is not erased.
            await restored.execute(
                """INSERT INTO accounts (id, email, password_hash) OVERRIDING SYSTEM VALUE
                   VALUES ($1, $2, 'x')""",
                erased.account_id,
                erased.email,
            )
            assert await reapply(resources.settings, restored_url) == []
        finally:
            await restored.close()
        assert await reapply(resources.settings, None) == []
        assert await pool.fetchval("SELECT status FROM accounts WHERE id = $1", again) == "active"
    finally:
        await drop_database(restored_url)
        await remove_databases(erased)


@pytest.fixture
def refusing_resources(resources: Resources, tmp_path: Path) -> object:
    """The resources, mailing through a sink that answers 550 to addresses holding 'closed'."""
    port = free_port()
    command = commands.smtp_sink(port, tmp_path / "mail", "--reject", "closed")
    with running("refusing smtp sink", command, port, tmp_path / "sink.log"):
        settings = resources.settings.model_copy(update={"smtp_url": SecretStr(f"smtp://127.0.0.1:{port}")})
        yield dataclasses.replace(resources, settings=settings)


async def test_a_closed_mailbox_is_recorded_and_the_erasure_finishes(refusing_resources: Resources) -> None:
    from tasks.erasure.admin import request as request_command

    resources = refusing_resources
    pool = resources.pool
    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ('closed.box@example.fr', 'x') RETURNING id"
    )
    answer = await request_command(resources.settings, account_id, now=False)
    assert answer["notice"] == "refused 550"
    request_id = answer["request_id"]
    report = await pool.fetchval("SELECT report FROM erasure_requests WHERE id = $1", request_id)
    assert report == {"request_notice": "refused 550"}
    await pool.execute("UPDATE erasure_requests SET run_after = now() WHERE id = $1", request_id)
    assert await run_request(resources, request_id) == "done"
    counts = await pool.fetchval(
        "SELECT counts FROM erasure_steps WHERE request_id = $1 AND step = 'completion_email'", request_id
    )
    assert counts == {"emails": 0, "refused": 550}
    stored_text = await pool.fetchval(
        "SELECT coalesce(last_error, '') || report::text FROM erasure_requests WHERE id = $1",
        request_id,
    )
    assert "closed.box" not in stored_text


async def test_an_address_that_is_not_one_mailbox_is_never_mailed(
    resources: Resources, smtp_sink: Path
) -> None:
    pool = resources.pool
    two = "a.two@example.fr, b.two@example.org"
    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id", two
    )
    async with pool.acquire() as conn:
        request, _ = await request_erasure(conn, account_id, grace=timedelta(0), requested_by="test")
    assert await run_request(resources, request["id"]) == "done"
    counts = await pool.fetchval(
        "SELECT counts FROM erasure_steps WHERE request_id = $1 AND step = 'completion_email'", request["id"]
    )
    assert counts == {"emails": 0, "not_a_mailbox": 1}
    assert mails_to(smtp_sink, two) == [] and mails_to(smtp_sink, "b.two@example.org") == []


@given(
    st.sampled_from(
        [
            "a@x.fr, b@y.org",
            "a@x.fr;b@y.org",
            "Ana <a@x.fr>",
            "a@b@c.fr",
            "@x.fr",
            "a@",
            "a b@x.fr",
            "a@x.fr\r\nBcc: b@y.org",
            "a\x00@x.fr",
            "(c)a@x.fr",
            '"a"@x.fr',
            "a@x.fr\u2028",
        ]
    )
)
def test_mailbox_refuses_what_is_not_exactly_one_address(address: str) -> None:
    with pytest.raises(NotAMailbox) as raised:
        mailbox(address)
    assert address not in str(raised.value)


@given(st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}@[a-z0-9-]{1,20}(\.[a-z]{2,6}){1,2}", fullmatch=True))
def test_mailbox_accepts_one_plain_address(address: str) -> None:
    assert mailbox(address) == address
