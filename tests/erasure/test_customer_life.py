"""The life of a customer, through real `bindery web`, `worker` and `scheduler` processes,
the S3 server, an SMTP sink and a Stripe fake that delivers its webhooks as Stripe does.

Sign up, subscribe by card, add SEPA with a mandate, detach the card, two nightly
backups, a breach campaign running; then the erasure, with Stripe's after-deletion
webhooks late, twice and out of order, a worker killed in the middle and the completion
email refused once. Then nothing of the customer is anywhere, nobody else is touched, and
when the same person signs up again, `reapply` erases the old account from a restored
dump and leaves the new one alone."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
import stripe

from tests.breach_setup import create_campaign, recipient_counts, sink
from tests.erasure_scenario import database_exists, objects_under
from tests.http import answers, call, finished_job
from tests.processes import bindery, eventually, run_bindery, wait_until
from tests.stripe_fake import client_for, deliveries, delivering_stripe, sepa_set_up, subscribe_by_card
from workers.db import connect, drop_database, ensure_database
from workers.devstack import commands
from workers.devstack.servers import free_port
from workers.resources import Resources

SECRET = "whsec_customer_life"
REFUSED = "Your account and your data have been deleted"  # in the completion email's body
TEXT_TYPES = ("text", "character varying", "json", "jsonb")


async def _sign_up(pool: asyncpg.Pool, email: str, tag: str) -> int:
    account_id: int = await pool.fetchval(
        """INSERT INTO accounts (email, password_hash, business_name, first_name, last_name, address,
                                 postal_code, country, vat_number)
           VALUES ($1, '$2y$10$opaque', $2, 'Camille', $3, '8 quai des Orfèvres', '75001', 'FR', NULL)
           RETURNING id""",
        email,
        f"Atelier {tag}",
        f"Lemaire{tag}",
    )
    return account_id


async def _instance(pool: asyncpg.Pool, base_url: str, account_id: int, tag: str) -> tuple[int, str]:
    url = f"{base_url}/life_{tag}"
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    await conn.execute(
        """CREATE TABLE patients (name text);
           INSERT INTO patients SELECT 'patient ' || g FROM generate_series(1, 50) g"""
    )
    await conn.close()
    instance_id: int = await pool.fetchval(
        "INSERT INTO instances (account_id, name, database_url) VALUES ($1, $2, $3) RETURNING id",
        account_id,
        f"cabinet-{tag}",
        url,
    )
    return instance_id, url


async def _value(pool: asyncpg.Pool, query: str, *args: Any) -> Any:
    return await pool.fetchval(query, *args)


async def _deleted_at_stripe(client: stripe.StripeClient, customer_id: str) -> bool:
    """Stripe answers a deleted customer with `deleted: true`; localstripe with a 404."""
    try:
        customer = await client.v1.customers.retrieve_async(customer_id)
    except stripe.InvalidRequestError as error:
        return error.http_status == 404
    return getattr(customer, "deleted", False) is True


async def _mentions(pool: asyncpg.Pool, needles: list[str]) -> dict[str, int]:
    """Every text and JSON column of every table searched for each needle, here, in SQL:
    independent of the saga's own verification."""
    columns = await pool.fetch(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
             JOIN information_schema.tables t USING (table_schema, table_name)
            WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
              AND c.data_type = ANY($1::text[])""",
        list(TEXT_TYPES),
    )
    found = {}
    for row in columns:
        table, column = row["table_name"], row["column_name"]
        # Names from the catalog, quoted; the needles are parameters.
        count = await pool.fetchval(
            f'SELECT count(*) FROM "{table}" WHERE lower("{column}"::text) LIKE ANY($1::text[])',
            [f"%{needle.lower()}%" for needle in needles],
        )
        if count:
            found[f"{table}.{column}"] = count
    return found


@pytest.mark.slow
async def test_the_life_of_a_customer(
    accounts_db: Any,
    worker_resources: Resources,
    s3_server: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    db = await accounts_db(2_000)  # the bystanders: the breach campaign mails them all
    pool = db.pool
    base_url = db.url.rsplit("/", 1)[0]
    tag = secrets.token_hex(3)
    email = f"Camille.{tag}@Exemple.fr"
    web_port = free_port()
    webhooks = commands.stripe_webhooks(web_port, SECRET, delay="0.2:3", duplicates=0.5)
    created_urls: list[str] = []
    scratch = f"{base_url}/life_restored_{tag}"
    with (
        sink(tmp_path, "--reject-data-once", REFUSED) as (smtp_url, mail),
        delivering_stripe(tmp_path, *webhooks) as stripe_base,
    ):
        overrides = {"erasure.run_due": {"cron": "*/2 * * * * *"}}
        env = db.env(
            smtp_url,
            STRIPE_API_BASE=stripe_base,
            STRIPE_WEBHOOK_SECRET=SECRET,
            ERASURE_GRACE="0s",
            BREACH_MESSAGES_PER_SECOND="60",
            SCHEDULER_OVERRIDES=json.dumps(overrides),
        )
        token = run_bindery("token", "create", f"life-{tag}", "--scope", "*", env=env).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        web = f"http://127.0.0.1:{web_port}"
        worker_args = ("worker", "--processes", "1", "--threads", "4")
        client, http = client_for(stripe_base)
        try:
            with (
                bindery("web", "--port", str(web_port), log=tmp_path / "web.log", env=env),
                bindery("scheduler", log=tmp_path / "scheduler.log", env=env),
            ):
                wait_until(lambda: answers(f"{web}/healthz"), 30, "bindery web")
                with bindery(*worker_args, log=tmp_path / "worker-1.log", env=env) as worker:

                    def job(name: str, arguments: dict[str, Any]) -> Any:
                        status, _, body = call("POST", f"{web}/jobs/{name}", body=arguments, headers=headers)
                        assert status == 202, body
                        return finished_job(web, body["job_id"], headers, 60, name)

                    # Sign up; a bystander who pays too.
                    account_id = await _sign_up(pool, email, tag)
                    other_id = await _sign_up(pool, f"other.{tag}@exemple.org", "x" + tag)
                    instance_id, instance_url = await _instance(pool, base_url, account_id, tag)
                    other_instance, other_url = await _instance(pool, base_url, other_id, "x" + tag)
                    created_urls += [instance_url, other_url]
                    for one in (account_id, other_id):
                        assert job("billing.push_account", {"account_id": one})["status"] == "done"
                    customer_id = await _value(
                        pool, "SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id
                    )
                    other_customer = await _value(
                        pool, "SELECT stripe_customer_id FROM accounts WHERE id = $1", other_id
                    )
                    card_id, sub_id = await subscribe_by_card(client, customer_id)
                    await subscribe_by_card(client, other_customer)
                    intent = await sepa_set_up(client, customer_id)
                    sepa_id, mandate_id = intent["payment_method"], intent["mandate"]
                    await eventually(
                        lambda: _value(
                            pool,
                            "SELECT count(*) FROM paid_accounts WHERE account_id = ANY($1)",
                            [account_id, other_id],
                        ),
                        60,
                        "both accounts paid, from Stripe's webhooks",
                    )
                    await eventually(
                        lambda: _value(pool, "SELECT count(*) FROM mandates WHERE id = $1", mandate_id),
                        60,
                        "the SEPA mandate, from the setup intent's webhook",
                    )
                    await client.v1.payment_methods.detach_async(card_id)
                    await eventually(
                        lambda: _value(
                            pool, "SELECT count(*) = 0 FROM payment_methods WHERE id = $1", card_id
                        ),
                        60,
                        "the detached card gone",
                    )

                    # Two nightly backups of every paid instance.
                    for day in ("2026-11-30", "2026-12-01"):
                        ran = run_bindery("backup", "run", "--day", day, env=env, timeout=120)
                        assert ran.returncode == 0, ran.stderr
                    assert await objects_under(worker_resources, instance_id) >= 2
                    assert await objects_under(worker_resources, other_instance) >= 2

                    # A breach campaign running; a dump of the database as it is now.
                    campaign_id = create_campaign(env)
                    assert run_bindery("breach", "start", str(campaign_id), env=env).returncode == 0
                    dump = tmp_path / "before.dump"
                    subprocess.run(["pg_dump", "-Fc", "-f", str(dump), "--dbname", db.url], check=True)

                    # The erasure; the worker dies inside `rows` (a row held locked keeps it there).
                    holder = await connect(db.url)
                    await holder.execute("BEGIN")
                    await holder.execute("SELECT 1 FROM subscriptions WHERE id = $1 FOR UPDATE", sub_id)
                    asked = job("erasure.request", {"account_id": account_id})
                    assert asked["status"] == "done", asked
                    request_id = asked["result"]["request_id"]
                    await eventually(
                        lambda: _value(
                            pool,
                            """SELECT count(*) FROM pg_stat_activity
                                                 WHERE wait_event_type = 'Lock'
                                                   AND application_name = 'bindery-worker'""",
                        ),
                        60,
                        "the worker inside `rows`",
                    )
                    assert await recipient_counts(pool, campaign_id)  # the campaign is under way
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait(10)
                await holder.close()
                # Stripe's after-deletion events arrive meanwhile, late, some twice.
                await eventually(
                    lambda: _value(
                        pool,
                        """SELECT count(*) FROM stripe_events
                              WHERE type IN ('customer.deleted', 'customer.subscription.deleted')
                                               AND state = 'ignored'""",
                    ),
                    60,
                    "Stripe's after-deletion webhooks",
                )
                # The dead worker's lease runs out (moved, not waited for); the scheduler resends it.
                await pool.execute(
                    "UPDATE erasure_requests SET lease_until = now() - interval '1 second' WHERE id = $1",
                    request_id,
                )
                with bindery(*worker_args, log=tmp_path / "worker-2.log", env=env):
                    await eventually(
                        lambda: _value(
                            pool, "SELECT state = 'done' FROM erasure_requests WHERE id = $1", request_id
                        ),
                        120,
                        "the erasure to finish",
                    )
                    await eventually(lambda: deliveries(stripe_base)["pending"] == 0, 60, "every webhook in")
                    await eventually(
                        lambda: _value(
                            pool,
                            """SELECT count(*) = 0 FROM stripe_events
                                WHERE state IN ('received', 'processing')""",
                        ),
                        60,
                        "the inbox drained",
                    )
            # Then: nothing of the customer anywhere.
            steps = {
                row["step"]: row["counts"]
                for row in await pool.fetch(
                    "SELECT step, counts FROM erasure_steps WHERE request_id = $1", request_id
                )
            }
            assert steps["completion_email"] == {"emails": 0, "refused": 550}
            needles = [
                email,
                f"Lemaire{tag}",
                f"Atelier {tag}",
                customer_id,
                sub_id,
                card_id,
                sepa_id,
                mandate_id,
            ]
            assert await _mentions(pool, needles) == {}
            assert await _value(pool, "SELECT count(*) FROM accounts WHERE id = $1", account_id) == 0
            assert not await database_exists(pool, instance_url)
            assert await objects_under(worker_resources, instance_id) == 0
            assert await _deleted_at_stripe(client, customer_id)
            sent = deliveries(stripe_base)
            assert sent["duplicated"] >= 1 and sent["given_up"] == 0
            # The bystander is untouched.
            assert await _value(pool, "SELECT status FROM accounts WHERE id = $1", other_id) == "active"
            assert (
                await _value(pool, "SELECT count(*) FROM paid_accounts WHERE account_id = $1", other_id) == 1
            )
            assert await database_exists(pool, other_url)
            assert await objects_under(worker_resources, other_instance) >= 2

            # The same person signs up again; a dump from before the erasure is restored.
            again = await _sign_up(pool, email, tag)
            await ensure_database(scratch)
            subprocess.run(["pg_restore", "--no-owner", "--dbname", scratch, str(dump)], check=True)
            restored = run_bindery("erasure", "reapply", "--target", scratch, env=env, timeout=120)
            assert restored.returncode == 0, restored.stderr
            assert json.loads(restored.stdout)["erased_again"] == [account_id]
            live = run_bindery("erasure", "reapply", env=env, timeout=120)
            assert live.returncode == 0 and json.loads(live.stdout)["erased_again"] == [], live.stderr
            copy = await asyncpg.connect(scratch)
            try:
                assert await copy.fetchval("SELECT count(*) FROM accounts WHERE id = $1", account_id) == 0
                assert await copy.fetchval("SELECT count(*) FROM accounts WHERE id = $1", other_id) == 1
            finally:
                await copy.close()
            assert await _value(pool, "SELECT status FROM accounts WHERE id = $1", again) == "active"
            assert mail.exists()
        finally:
            await http.close_async()
            await drop_database(scratch)
            for url in created_urls:
                await drop_database(url)
