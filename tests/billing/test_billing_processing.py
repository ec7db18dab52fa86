"""Inbox events applied to the billing tables: in order, once, allow-listed columns only."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.billing.inbox import parse_event, store_events
from tasks.billing.processing import MAX_ATTEMPTS, process_event, process_events, stale_events
from tasks.system import prune_records
from tests.billing_events import deliver, event, new_account, new_id, stored, subscription
from tests.processes import run_bindery


async def test_customer_metadata_links_the_account_and_an_active_subscription_makes_it_paid(
    pool: asyncpg.Pool,
) -> None:
    account_id = await new_account(pool)
    customer, sub = new_id("cus"), new_id("sub")
    states = await deliver(
        pool,
        event(
            "customer.created",
            {"id": customer, "object": "customer", "metadata": {"account_id": str(account_id)}},
        ),
        event("customer.subscription.created", subscription(sub, customer, "active")),
    )
    assert states == ["done", "done"]
    assert (
        await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id) == customer
    )
    row = await pool.fetchrow(
        "SELECT account_id, status, price_id, current_period_end FROM subscriptions WHERE id = $1", sub
    )
    assert (row["account_id"], row["status"], row["price_id"]) == (account_id, "active", "price_pro")
    assert row["current_period_end"] == datetime.fromtimestamp(1_792_678_400, UTC)
    assert await pool.fetchval("SELECT count(*) FROM paid_accounts WHERE account_id = $1", account_id) == 1
    await deliver(pool, event("customer.subscription.deleted", subscription(sub, customer, "canceled")))
    assert await pool.fetchval("SELECT count(*) FROM paid_accounts WHERE account_id = $1", account_id) == 0


async def test_an_event_older_than_the_applied_one_changes_nothing(pool: asyncpg.Pool) -> None:
    customer, sub = new_id("cus"), new_id("sub")
    newer = event("customer.subscription.updated", subscription(sub, customer, "active"), created=2_000)
    older = event("customer.subscription.updated", subscription(sub, customer, "incomplete"), created=1_000)
    assert await deliver(pool, newer, older) == ["done", "done"]
    assert await pool.fetchval("SELECT status FROM subscriptions WHERE id = $1", sub) == "active"


async def test_a_duplicate_delivery_is_applied_once(pool: asyncpg.Pool) -> None:
    customer, sub = new_id("cus"), new_id("sub")
    created = event("customer.subscription.created", subscription(sub, customer, "trialing"))
    assert await deliver(pool, created, created) == ["done", "skipped"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(6)))
async def test_shuffled_delivery_ends_in_the_same_state_as_in_order(
    pool: asyncpg.Pool, order: list[int]
) -> None:
    customer, first, second = new_id("cus"), new_id("sub"), new_id("sub")
    timeline = [
        event("customer.subscription.created", subscription(first, customer, "incomplete"), created=10),
        event("customer.subscription.updated", subscription(first, customer, "active"), created=20),
        event("customer.subscription.created", subscription(second, customer, "trialing"), created=15),
        event(
            "customer.subscription.updated", subscription(first, customer, "past_due", "price_b"), created=30
        ),
        event("customer.subscription.updated", subscription(second, customer, "active"), created=25),
        event("customer.subscription.deleted", subscription(second, customer, "canceled"), created=40),
    ]
    await deliver(pool, *(timeline[i] for i in order))
    rows = await pool.fetch(
        "SELECT id, status, price_id FROM subscriptions WHERE id = ANY($1) ORDER BY id", [first, second]
    )
    final = {row["id"]: (row["status"], row["price_id"]) for row in rows}
    assert final == {first: ("past_due", "price_b"), second: ("canceled", "price_pro")}


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(4)))
async def test_linking_an_account_ends_the_same_whatever_order_its_events_arrive_in(
    pool: asyncpg.Pool, order: list[int]
) -> None:
    account_id = await new_account(pool)
    customer, sub, card, invoice = new_id("cus"), new_id("sub"), new_id("pm"), new_id("in")
    timeline = [
        event(
            "customer.created",
            {"id": customer, "object": "customer", "metadata": {"account_id": str(account_id)}},
        ),
        event("customer.subscription.created", subscription(sub, customer, "active")),
        event(
            "payment_method.attached",
            {
                "id": card,
                "object": "payment_method",
                "type": "card",
                "customer": customer,
                "card": {"brand": "visa", "last4": "4242", "exp_month": 1, "exp_year": 2030},
            },
        ),
        event(
            "invoice.paid",
            {
                "id": invoice,
                "object": "invoice",
                "customer": customer,
                "currency": "eur",
                "total": 100,
                "amount_due": 100,
                "amount_paid": 100,
                "status": "paid",
                "created": 1_790_000_000,
            },
        ),
    ]
    await deliver(pool, *(timeline[i] for i in order))
    linked = [
        await pool.fetchval(f"SELECT account_id FROM {table} WHERE id = $1", object_id)
        for table, object_id in (("subscriptions", sub), ("payment_methods", card), ("invoices", invoice))
    ]
    assert linked == [account_id] * 3
    assert await pool.fetchval("SELECT count(*) FROM paid_accounts WHERE account_id = $1", account_id) == 1


async def test_invoices_keep_their_legal_fields(pool: asyncpg.Pool) -> None:
    customer, invoice = new_id("cus"), new_id("in")
    paid = {
        "id": invoice,
        "object": "invoice",
        "customer": customer,
        "number": "F-2026-0042",
        "currency": "eur",
        "total": 1200,
        "amount_due": 1200,
        "amount_paid": 1200,
        "status": "paid",
        "created": 1_790_000_000,
        "due_date": None,
        "status_transitions": {"paid_at": 1_790_000_500},
        "hosted_invoice_url": "https://invoice.stripe.com/i/x",
        "customer_email": "jeanne@example.fr",
    }
    await deliver(pool, event("invoice.paid", paid))
    row = await pool.fetchrow("SELECT number, total, status, paid_at FROM invoices WHERE id = $1", invoice)
    assert (row["number"], row["total"], row["status"]) == ("F-2026-0042", 1200, "paid")
    assert row["paid_at"] == datetime.fromtimestamp(1_790_000_500, UTC)


async def test_other_event_types_are_recorded_as_ignored(pool: asyncpg.Pool) -> None:
    assert await deliver(pool, event("charge.succeeded", {"id": new_id("ch"), "object": "charge"})) == [
        "ignored"
    ]


async def test_an_event_that_cannot_be_applied_fails_after_its_attempts_with_a_safe_error(
    pool: asyncpg.Pool,
) -> None:
    customer, method = new_id("cus"), new_id("pm")
    broken = event(
        "payment_method.attached",
        {
            "id": method,
            "object": "payment_method",
            "type": "card",
            "customer": customer,
            "card": {"brand": "visa", "last4": "42x2", "exp_month": 1, "exp_year": 2030},
        },
    )
    await store_events(pool, [parse_event(json.dumps(broken).encode())])
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(asyncpg.CheckViolationError):
            await process_event(pool, broken["id"])
    assert await process_event(pool, broken["id"]) == "failed"
    row = await pool.fetchrow(
        "SELECT state, attempts, last_error FROM stripe_events WHERE id = $1", broken["id"]
    )
    assert tuple(row) == ("failed", MAX_ATTEMPTS, "CheckViolationError")
    assert await pool.fetchval("SELECT count(*) FROM payment_methods WHERE id = $1", method) == 0


async def test_failed_events_are_listed_and_can_be_retried(
    pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    invoice = {"id": new_id("in"), "object": "invoice", "customer": "cus_x", "currency": "EURO", "created": 1}
    broken = event("invoice.paid", invoice)  # a currency code of four letters: refused by the schema
    await store_events(pool, [parse_event(json.dumps(broken).encode())])
    await pool.execute("UPDATE stripe_events SET attempts = $2 WHERE id = $1", broken["id"], MAX_ATTEMPTS - 1)
    assert await process_event(pool, broken["id"]) == "failed"

    listed = await asyncio.to_thread(run_bindery, "stripe", "events", "--failed", "--json")
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows[broken["id"]]["last_error"] == "CheckViolationError"
    assert "payload" not in rows[broken["id"]]

    retried = await asyncio.to_thread(run_bindery, "stripe", "retry", broken["id"])
    assert retried.returncode == 0 and "re-queued 1 event(s)" in retried.stdout
    assert await pool.fetchval("SELECT state FROM stripe_events WHERE id = $1", broken["id"]) == "received"
    assert redis_client.llen("bindery:billing") == 1
    again = await asyncio.to_thread(run_bindery, "stripe", "retry", broken["id"])
    assert again.returncode == 1 and "no failed event" in again.stderr


async def test_pruning_drops_old_payloads_then_old_ids(pool: asyncpg.Pool) -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    ids = {age: f"evt_prune{age}{secrets.token_hex(4)}" for age in (10, 40, 100)}
    for age, event_id in ids.items():
        await pool.execute(
            """INSERT INTO stripe_events (id, type, created, state, processed_at, payload)
               VALUES ($1, 'charge.succeeded', $2, 'ignored', $2, '{"x": 1}')""",
            event_id,
            now - timedelta(days=age),
        )
    await prune_records(pool, now)
    kept = {
        row["id"]: row["payload"]
        for row in await pool.fetch(
            "SELECT id, payload FROM stripe_events WHERE id = ANY($1)", list(ids.values())
        )
    }
    assert kept == {ids[10]: {"x": 1}, ids[40]: None}


async def test_pruning_drops_the_payload_of_an_event_failed_long_ago_and_keeps_its_row(
    pool: asyncpg.Pool,
) -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    ids = {age: f"evt_failed{age}{secrets.token_hex(4)}" for age in (10, 40, 100)}
    for age, event_id in ids.items():
        await pool.execute(
            """INSERT INTO stripe_events
                      (id, type, created, state, received_at, attempts, last_error, payload)
               VALUES ($1, 'invoice.paid', $2, 'failed', $2, 8, 'CheckViolationError', '{"x": 1}')""",
            event_id,
            now - timedelta(days=age),
        )
    await prune_records(pool, now)
    kept = {
        row["id"]: (row["state"], row["payload"])
        for row in await pool.fetch(
            "SELECT id, state, payload FROM stripe_events WHERE id = ANY($1)", list(ids.values())
        )
    }
    # Still retryable within the retention; afterwards a record of the failure without the data.
    assert kept == {ids[10]: ("failed", {"x": 1}), ids[40]: ("failed", None), ids[100]: ("failed", None)}


async def test_an_event_whose_worker_died_is_picked_up_after_its_lease(pool: asyncpg.Pool) -> None:
    customer, sub = new_id("cus"), new_id("sub")
    orphan = event("customer.subscription.created", subscription(sub, customer, "active"))
    await store_events(pool, [parse_event(json.dumps(orphan).encode())])
    # A worker claimed it, then died (kill -9) before its transaction committed.
    await pool.execute(
        """UPDATE stripe_events SET state = 'processing', attempts = 1,
                  lease_until = now() + interval '5 minutes'
            WHERE id = $1""",
        orphan["id"],
    )
    assert orphan["id"] not in await stale_events(pool, timedelta(minutes=1))
    assert await process_event(pool, orphan["id"]) == "skipped"  # its lease still runs
    await pool.execute(
        "UPDATE stripe_events SET lease_until = now() - interval '1 second' WHERE id = $1", orphan["id"]
    )
    assert orphan["id"] in await stale_events(pool, timedelta(minutes=1))
    assert await process_event(pool, orphan["id"]) == "done"
    assert await pool.fetchval("SELECT count(*) FROM subscriptions WHERE id = $1", sub) == 1


async def test_a_deleted_customers_payload_is_not_kept(pool: asyncpg.Pool) -> None:
    customer = new_id("cus")
    deleted = event(
        "customer.deleted",
        {
            "id": customer,
            "object": "customer",
            "email": "gone@example.fr",
            "name": "Gone Away",
            "deleted": True,
        },
    )
    assert await deliver(pool, deleted) == ["done"]
    row = await pool.fetchrow(
        "SELECT state, payload, object_id FROM stripe_events WHERE id = $1", deleted["id"]
    )
    assert (row["state"], row["payload"], row["object_id"]) == ("done", None, None)


async def test_a_message_s_events_apply_in_one_transaction_and_the_newest_state_wins(
    pool: asyncpg.Pool,
) -> None:
    sub, customer = new_id("sub"), new_id("cus")
    older = event(
        "customer.subscription.updated", subscription(sub, customer, "trialing"), created=1_700_000_000
    )
    newer = event(
        "customer.subscription.updated", subscription(sub, customer, "active"), created=1_700_000_100
    )
    others = [
        event("customer.subscription.created", subscription(new_id("sub"), customer, "active"))
        for _ in range(3)
    ]
    ids = await stored(pool, newer, *others, older)  # the newer one first, as Stripe may deliver

    states = await process_events(pool, ids)
    assert states == {newer["id"]: "done", older["id"]: "done", **{o["id"]: "done" for o in others}}
    assert await pool.fetchval("SELECT status FROM subscriptions WHERE id = $1", sub) == "active"
    assert (
        await pool.fetchval("SELECT last_event_id FROM stripe_objects WHERE object_id = $1", sub)
        == newer["id"]
    )
    # One transaction wrote every row: they carry the same transaction id.
    subs = [sub] + [o["data"]["object"]["id"] for o in others]
    writers = await pool.fetch("SELECT xmin::text FROM subscriptions WHERE id = ANY($1)", subs)
    assert len({row["xmin"] for row in writers}) == 1
    assert await process_events(pool, ids) == {}  # all done: nothing is claimed again


async def test_one_bad_event_in_a_message_holds_back_no_other_and_alone_is_retried(
    pool: asyncpg.Pool,
) -> None:
    invoice = {"id": new_id("in"), "object": "invoice", "customer": "cus_x", "currency": "EURO", "created": 1}
    broken = event("invoice.paid", invoice)  # a currency code of four letters: refused by the schema
    # In object order the customer ("cus_…") is applied before the invoice ("in_…") and
    # the subscriptions ("sub_…") after it: the shared transaction fails half-way.
    good = [
        event("customer.subscription.created", subscription(new_id("sub"), "cus_y", "active"))
        for _ in range(3)
    ]
    good_subs = [g["data"]["object"]["id"] for g in good]
    good.append(event("customer.created", {"id": new_id("cus"), "object": "customer", "metadata": {}}))
    ids = await stored(pool, *good, broken)

    with pytest.raises(asyncpg.CheckViolationError):
        await process_events(pool, ids)
    rows = {
        r["id"]: r
        for r in await pool.fetch(
            "SELECT id, state, attempts, last_error FROM stripe_events WHERE id = ANY($1)", ids
        )
    }
    assert {(rows[g["id"]]["state"], rows[g["id"]]["attempts"]) for g in good} == {("done", 1)}
    assert (rows[broken["id"]]["state"], rows[broken["id"]]["attempts"]) == ("received", 1)
    assert rows[broken["id"]]["last_error"] == "CheckViolationError"
    # Rolled back, then applied one by one: each in a transaction of its own.
    writers = await pool.fetch("SELECT xmin::text FROM subscriptions WHERE id = ANY($1)", good_subs)
    assert len(writers) == 3
    assert len({row["xmin"] for row in writers}) == 3

    # Dramatiq's retry of the message: only the broken event is claimed again.
    with pytest.raises(asyncpg.CheckViolationError):
        await process_events(pool, ids)
    attempts = {
        r["id"]: r["attempts"]
        for r in await pool.fetch("SELECT id, attempts FROM stripe_events WHERE id = ANY($1)", ids)
    }
    assert attempts == {**{g["id"]: 1 for g in good}, broken["id"]: 2}
