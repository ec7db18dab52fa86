"""Promise: what we collect stays in the database it was collected for. No email, name,
address, VAT number, password hash or secret appears in any log line or metric.

A full scenario through real processes (`bindery web`, `worker`, `scheduler` and the
operator's CLI) touches every domain with customers whose every personal field is
known: a signed Stripe event full of the customer's details, a job through the API,
an erasure, a backup, a breach campaign. Then everything those processes wrote (log
lines, CLI output, the three /metrics pages) is scanned for each of those values and
for every secret the processes were given.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis
import stripe

from tests.billing_events import new_id
from tests.databases import new_bindery_database
from tests.http import answers, call
from tests.processes import bindery, bindery_env, eventually, run_bindery
from workers.db import create_pool, drop_database, ensure_database
from workers.devstack.servers import free_port
from workers.settings import load_settings

INCIDENT = Path(__file__).parents[1] / "data" / "incident.toml"


@pytest.fixture
async def own_database(database_url: str) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A database of the scenario's own: the breach campaign mails exactly its accounts."""
    url = database_url.rsplit("/", 1)[0] + f"/privacy_{secrets.token_hex(4)}"
    await new_bindery_database(url)
    pool = await create_pool(url, max_size=4)
    yield url, pool
    await pool.close()
    await drop_database(url)


def customer(tag: str) -> dict[str, str]:
    """Every personal field of an account, each value unique to this run."""
    return {
        "email": f"Camille.{tag}@Exemple.fr",
        "password_hash": f"$2y$10${tag}{secrets.token_hex(12)}",
        "business_name": f"Fromagerie {tag}",
        "first_name": f"Camille{tag}",
        "last_name": f"Lefebvre{tag}",
        "address": f"{tag} avenue des Ternes",
        "postal_code": "75017",
        "country": "FR",
        "vat_number": f"FR{int(tag, 16) % 10**11:011d}",
    }


async def add_account(pool: asyncpg.Pool, fields: dict[str, str]) -> int:
    columns = list(fields)
    account_id: int = await pool.fetchval(
        "INSERT INTO accounts ("
        + ", ".join(columns)
        + ") VALUES ("
        + ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        + ") RETURNING id",
        *fields.values(),
    )
    return account_id


def page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
    return text


def leaks(text: str, needles: dict[str, str]) -> list[str]:
    """Which needles (by what they are, never their value) appear in `text`."""
    lowered = text.lower()
    return sorted(what for what, value in needles.items() if value.lower() in lowered)


async def test_no_personal_data_or_secret_in_any_log_line_or_metric(
    own_database: tuple[str, asyncpg.Pool],
    stripe_client: stripe.StripeClient,
    stripe_fake: str,
    s3_server: str,
    smtp_sink: Path,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    url, pool = own_database
    webhook_secret = f"whsec_{secrets.token_hex(16)}"
    web_port, worker_metrics, scheduler_metrics = free_port(), free_port(), free_port()
    env = bindery_env(
        DATABASE_URL=url,
        STRIPE_API_BASE=stripe_fake,
        STRIPE_WEBHOOK_SECRET=webhook_secret,
        WORKER_METRICS_PORT=str(worker_metrics),
        SCHEDULER_METRICS_PORT=str(scheduler_metrics),
        BREACH_MESSAGES_PER_SECOND="1000",
    )
    settings = load_settings()

    people = {name: customer(secrets.token_hex(5)) for name in ("paying", "leaving", "other")}
    ids = {name: await add_account(pool, fields) for name, fields in people.items()}
    paying = people["paying"]
    stripe_customer = await stripe_client.v1.customers.create_async(
        params={"email": paying["email"], "name": f"{paying['first_name']} {paying['last_name']}"}
    )
    await pool.execute(
        "UPDATE accounts SET stripe_customer_id = $1 WHERE id = $2", stripe_customer.id, ids["paying"]
    )
    instance_url = url + "_instance"
    await ensure_database(instance_url)
    instance_id = await pool.fetchval(
        "INSERT INTO instances (account_id, name, database_url) VALUES ($1, 'shop', $2) RETURNING id",
        ids["paying"],
        instance_url,
    )

    outputs: list[str] = []  # everything the CLI printed, token creation aside

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = run_bindery(*args, env=env)
        assert done.returncode == 0, (args, done.stderr)
        outputs.extend((done.stdout, done.stderr))
        return done

    created_token = run_bindery("token", "create", "privacy-scenario", "--scope", "*", env=env)
    assert created_token.returncode == 0, created_token.stderr
    token = created_token.stdout.strip()
    base = f"http://127.0.0.1:{web_port}"
    logs = {role: tmp_path / f"{role}.log" for role in ("web", "worker", "scheduler")}
    try:
        with (
            bindery("web", "--port", str(web_port), log=logs["web"], env=env),
            bindery("worker", "--processes", "1", "--threads", "4", log=logs["worker"], env=env),
            bindery("scheduler", log=logs["scheduler"], env=env),
        ):
            await eventually(lambda: answers(f"{base}/healthz"), 30, "bindery web")

            # Billing: Stripe's events carry the customer's name, email and address.
            subscription_id = f"sub_{secrets.token_hex(6)}"
            for event_type, obj in (
                (
                    "customer.updated",
                    {
                        "id": stripe_customer.id,
                        "object": "customer",
                        "email": paying["email"],
                        "name": f"{paying['first_name']} {paying['last_name']}",
                        "address": {"line1": paying["address"], "postal_code": paying["postal_code"]},
                        "metadata": {"vat": paying["vat_number"]},
                    },
                ),
                (
                    "customer.subscription.created",
                    {
                        "id": subscription_id,
                        "object": "subscription",
                        "customer": stripe_customer.id,
                        "status": "active",
                    },
                ),
            ):
                event = {
                    "id": new_id("evt"),
                    "object": "event",
                    "type": event_type,
                    "created": 1_790_000_000,
                    "data": {"object": obj},
                }
                body = json.dumps(event)
                signature = stripe.WebhookSignature.generate_signature_header(body, webhook_secret)
                status, _, _ = call(
                    "POST", f"{base}/webhooks/stripe", body=event, headers={"Stripe-Signature": signature}
                )
                assert status == 200
            await eventually(
                lambda: pool.fetchval(
                    "SELECT count(*) = 0 FROM stripe_events WHERE state NOT IN ('done', 'ignored')"
                ),
                30,
                "the Stripe events processed",
            )
            assert await pool.fetchval("SELECT account_id FROM paid_accounts") == ids["paying"]

            # A job through the API.
            headers = {"Authorization": f"Bearer {token}"}
            status, _, job = call("POST", f"{base}/jobs/system.ping", body={}, headers=headers)
            assert status == 202

            async def ping_done() -> bool:
                return bool(
                    call("GET", f"{base}/jobs/{job['job_id']}", headers=headers)[2]["status"] == "done"
                )

            await eventually(ping_done, 30, "the ping job")

            # A backup of the paying customer's instance, then an erasure of another account.
            cli("backup", "run", "--instance", str(instance_id))
            cli("erasure", "request", str(ids["leaving"]), "--now")
            await eventually(
                lambda: pool.fetchval(
                    "SELECT state = 'done' FROM erasure_requests WHERE account_id = $1", ids["leaving"]
                ),
                60,
                "the erasure",
            )

            # A breach campaign to everyone left.
            created = cli("breach", "create", "--incident", str(INCIDENT))
            campaign_id = created.stdout.split()[1]
            cli("breach", "start", campaign_id)
            await eventually(
                lambda: pool.fetchval(
                    "SELECT state = 'done' FROM breach_campaigns WHERE id = $1", int(campaign_id)
                ),
                60,
                "the breach campaign",
            )
            cli("breach", "status", campaign_id)

            metrics = [
                page(f"{base}/metrics"),
                page(f"http://127.0.0.1:{worker_metrics}/metrics"),
                page(f"http://127.0.0.1:{scheduler_metrics}/metrics"),
            ]
    finally:
        await drop_database(instance_url)

    assert all("bindery" in page or "dramatiq" in page for page in metrics), "a /metrics page was empty"
    needles: dict[str, str] = {
        f"{name}.{field}": value
        for name, fields in people.items()
        for field, value in fields.items()
        if field not in ("postal_code", "country")  # not personal alone, and too short to search
    }
    needles.update(
        {
            "webhook secret": webhook_secret,
            "API token": token.split("_", 2)[2],
            "S3 secret key": settings.aws_secret_access_key.get_secret_value(),
            "Stripe API key": settings.stripe_api_key.get_secret_value(),
            "erasure ledger key": settings.erasure_ledger_key.get_secret_value(),
        }
    )
    written = {role: path.read_text(errors="replace") for role, path in logs.items()}
    # The scan is only worth something if the lines were written: the worker's are.
    assert "erasure run" in written["worker"] and "breach batch" in written["worker"], written["worker"]
    found = {
        **{f"{role} log": leaks(text, needles) for role, text in written.items()},
        "CLI output": leaks("\n".join(outputs), needles),
        "metrics": leaks("\n".join(metrics), needles),
    }
    assert found == {place: [] for place in found}
