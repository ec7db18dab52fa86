"""The access export against real Postgres, SeaweedFS, localstripe and the SMTP sink: an
account with data in every category gets an archive that holds each value, behind a link
that works and then, a week later, does not; nothing of a neighbour is in it; an account
being erased is refused, a disabled one is not; an erasure deletes the archive."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import secrets
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import asyncpg
import botocore.auth
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from tasks.erasure.requests import cancel_erasure, request_erasure
from tasks.erasure.saga import run_request
from tasks.privacy.archive import ExportFailed
from tasks.privacy.export import Exporting, ExportRefused, export_account, write_archive
from tasks.privacy.register import log_request, open_request
from tests.erasure_scenario import Customer, erase_now, mails_to, make_customer, remove_databases
from tests.http import call, finished_job, web_and_worker
from tests.processes import bindery_env, run_bindery, wait_until
from workers.jobs import run_job
from workers.resources import Resources
from workers.s3 import count_prefix, export_prefix, export_s3_client
from workers.stripe_calls import RateLimitedStripe


@pytest.fixture
def clients(worker_resources: Resources) -> Exporting:
    assert worker_resources.stripe is not None
    return Exporting(
        worker_resources.settings, worker_resources.pool, worker_resources.stripe, RateLimitedStripe(None)
    )


async def fill_every_category(pool: asyncpg.Pool, customer: Customer) -> dict[str, Any]:
    """What make_customer leaves out: a backup in the catalogue, a breach notice sent, an
    erasure asked for and cancelled, a request logged by hand. The values to look for."""
    backup_id = await pool.fetchval(
        """INSERT INTO backups (id, instance_id, day, state, object_key, manifest_key, dump_bytes,
                                object_bytes, finished_at)
           VALUES (gen_random_uuid(), $1, '2026-11-25', 'verified', 'k', 'm', 123456, 65432, now())
           RETURNING id""",
        customer.instance_ids[0],
    )
    campaign_id = await pool.fetchval(
        """INSERT INTO breach_campaigns (subject_fr, subject_en, body_fr, body_en, state, created_by)
           VALUES ('Incident de sécurité', 'Security incident', 'Texte FR', 'Text EN', 'done', 'test')
           RETURNING id"""
    )
    await pool.execute(
        """INSERT INTO breach_recipients (campaign_id, account_id, email, state, sent_at)
           VALUES ($1, $2, $3, 'sent', now())""",
        campaign_id,
        customer.account_id,
        customer.email,
    )
    async with pool.acquire() as conn:
        erasure, _ = await request_erasure(
            conn, customer.account_id, grace=timedelta(hours=24), requested_by="test"
        )
        await cancel_erasure(conn, customer.account_id, cancelled_by="test")
    await log_request(pool, "rectification", customer.account_id, "asked to correct the postal code", "test")
    return {"backup_id": str(backup_id), "campaign_id": campaign_id, "erasure_request_id": erasure["id"]}


def archive_of(body: bytes) -> dict[str, Any]:
    """Every file of the archive: JSON parsed, CSV as rows, text as text."""
    files: dict[str, Any] = {}
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        for name in archive.namelist():
            data = archive.read(name)
            if name.endswith(".json"):
                files[name] = json.loads(data)
            elif name.endswith(".csv"):
                files[name] = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
            else:
                files[name] = data.decode()
    return files


def link_in(message: Any) -> str:
    [link] = set(re.findall(r"^(https?://\S+)\r?$", message.get_content(), re.MULTILINE))
    return str(link)


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


async def export_now(clients: Exporting, account_id: int, *, with_instances: bool = False) -> dict[str, Any]:
    async with clients.pool.acquire() as conn:
        request_id = await open_request(conn, "export", account_id, received_by="test")
    return await export_account(clients, account_id, request_id, with_instances=with_instances)


async def test_an_export_holds_every_category_behind_a_link_that_expires_and_an_erasure_deletes_it(
    worker_resources: Resources, clients: Exporting, database_url: str, smtp_sink: Path, monkeypatch: Any
) -> None:
    pool = worker_resources.pool
    customer = await make_customer(worker_resources, database_url, instances=1)
    try:
        expected = await fill_every_category(pool, customer)
        result = await export_now(clients, customer.account_id, with_instances=True)
        assert result["mail"] == "sent"
        [notice] = mails_to(smtp_sink, customer.email)
        body = notice.get_content()
        assert body.index("Bonjour") < body.index("Hello")  # French, then English
        status, archive_bytes = await fetch(link_in(notice))
        assert status == 200 and len(archive_bytes) == result["archive_bytes"]
        files = archive_of(archive_bytes)

        [account] = files["account.json"]
        assert account["email"] == customer.email and account["address"] == "1 rue de la Paix"
        assert "password_hash" not in account  # a credential, not data about the customer
        assert files["account.csv"][0]["vat_number"] == "FR12345678901"
        assert [i["id"] for i in files["instances.json"]] == customer.instance_ids
        assert "database_url" not in files["instances.json"][0]
        assert {m["last4"] for m in files["payment_methods.json"]} == {"4242", "3000"}
        assert {m["card_brand"] for m in files["payment_methods.json"]} == {"visa", None}
        assert files["mandates.json"][0]["reference"].startswith("REF")
        assert files["subscriptions.json"][0]["id"] == customer.object_ids["subscription"]
        [invoice] = files["invoices.json"]
        assert invoice["id"] == customer.object_ids["invoice"] and "hosted_invoice_url" in invoice
        assert files["stripe_customer.json"]["id"] == customer.customer_id
        assert files["stripe_customer.json"]["email"] == customer.email
        assert {e["type"] for e in files["stripe_events.json"]} >= {"invoice.paid", "mandate.updated"}
        assert [b["id"] for b in files["backups.json"]] == [expected["backup_id"]]
        assert files["backups.json"][0]["dump_bytes"] == 123456
        [breach] = files["breach_notices.json"]
        assert (breach["campaign_id"], breach["subject_fr"], breach["email"]) == (
            expected["campaign_id"],
            "Incident de sécurité",
            customer.email,
        )
        assert [e["id"] for e in files["erasure_requests.json"]] == [expected["erasure_request_id"]]
        kinds = {(r["kind"], r["note"]) for r in files["privacy_requests.json"]}
        assert ("rectification", "asked to correct the postal code") in kinds and ("export", None) in kinds
        assert {"erasure.requested", "erasure.cancelled", "privacy.opened"} <= {
            a["action"] for a in files["audit_records.json"]
        }
        assert {j["name"] for j in files["jobs.json"]} == {"billing.push_account"}
        assert "a customer note" in files[f"instances/instance-{customer.instance_ids[0]}.sql"]
        readme = files["README.txt"]
        assert readme.index("Français") < readme.index("English")
        assert all(name in readme for name in files if name != "README.txt")
        assert set(result["files"]) >= {"account.json", "stripe_customer.json"}

        # The register: answered, with when the link stops working.
        outcome = await pool.fetchval(
            "SELECT outcome FROM privacy_requests WHERE id = $1 AND state = 'closed'", result["request_id"]
        )
        assert outcome.startswith("archive sent by email, link valid until")

        # A week and a minute later the link no longer opens: the link's signer's clock is
        # moved back a week and a minute (the upload's is not: S3 refuses skewed requests).
        signed_at = (datetime.now(UTC) - timedelta(days=7, minutes=1)).replace(tzinfo=None)
        presign = botocore.auth.SigV4QueryAuth.add_auth

        def presigned_a_week_ago(signer: Any, request: Any) -> Any:
            with monkeypatch.context() as clock:
                clock.setattr(botocore.auth, "get_current_datetime", lambda: signed_at)
                return presign(signer, request)

        with monkeypatch.context() as moved:
            moved.setattr(botocore.auth.SigV4QueryAuth, "add_auth", presigned_a_week_ago)
            later = await export_now(clients, customer.account_id)
        [old_notice] = [
            m for m in mails_to(smtp_sink, customer.email) if f"n° {later['request_id']}" in m.get_content()
        ]
        status, _ = await fetch(link_in(old_notice))
        assert status == 403

        # The erasure of the account deletes its archives.
        prefix = export_prefix(customer.account_id)
        async with export_s3_client(worker_resources.settings) as client:
            assert await count_prefix(client, worker_resources.settings.export_s3_bucket, prefix) == 2
            assert (
                await run_request(worker_resources, await erase_now(worker_resources, customer.account_id))
                == "done"
            )
            assert await count_prefix(client, worker_resources.settings.export_s3_bucket, prefix) == 0
    finally:
        await remove_databases(customer)


async def test_an_account_being_erased_is_refused_and_a_disabled_one_is_exported(
    worker_resources: Resources, clients: Exporting, smtp_sink: Path
) -> None:
    pool = worker_resources.pool
    email = f"disabled.{secrets.token_hex(4)}@example.fr"
    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash, status) VALUES ($1, 'x', 'disabled') RETURNING id", email
    )
    result = await export_now(clients, account_id)
    assert result["mail"] == "sent" and mails_to(smtp_sink, email)

    async with pool.acquire() as conn:
        erasure, _ = await request_erasure(conn, account_id, grace=timedelta(hours=24), requested_by="test")
    archives_before = await _archives(worker_resources, account_id)
    with pytest.raises(ExportRefused, match=f"is being erased \\(erasure request {erasure['id']}\\)"):
        await export_now(clients, account_id)
    assert await _archives(worker_resources, account_id) == archives_before
    # The refused request is in the register, closed with its reason.
    assert (
        await pool.fetchval(
            """SELECT outcome FROM privacy_requests WHERE account_id = $1 AND kind = 'export'
            ORDER BY id DESC LIMIT 1""",
            account_id,
        )
        == f"refused: account {account_id} is being erased (erasure request {erasure['id']}): its data is"
        " not copied anywhere now; cancel the erasure within its grace period to export it"
    )

    cli = run_bindery("privacy", "export", str(account_id))
    assert cli.returncode == 1 and "is being erased" in cli.stderr and cli.stdout == ""
    unknown = run_bindery("privacy", "export", "987654321")
    assert unknown.returncode == 1 and "unknown account 987654321" in unknown.stderr


async def _archives(resources: Resources, account_id: int) -> int:
    async with export_s3_client(resources.settings) as client:
        return await count_prefix(client, resources.settings.export_s3_bucket, export_prefix(account_id))


def test_the_job_api_exports_and_answers_409_for_an_account_being_erased(
    database_url: str,
    redis_client: redis.Redis,
    smtp_sink: Path,
    s3_server: str,
    stripe_fake: str,
    tmp_path: Path,
) -> None:
    env = bindery_env(STRIPE_API_BASE=stripe_fake)
    token = run_bindery(
        "token", "create", f"privacy-{tmp_path.name[-12:]}".lower(), "--scope", "privacy"
    ).stdout
    headers = {"Authorization": f"Bearer {token.strip()}"}
    email = f"api.export.{secrets.token_hex(4)}@example.fr"
    account_id, erased_id = asyncio.run(_accounts_for_api(database_url, email))
    with web_and_worker(tmp_path, env) as base:
        status, _, body = call(
            "POST", f"{base}/jobs/privacy.export", body={"account_id": erased_id}, headers=headers
        )
        assert (status, body["error"]) == (409, "conflict") and "is being erased" in body["detail"]
        status, _, body = call(
            "POST",
            f"{base}/jobs/privacy.export",
            body={"account_id": account_id, "with_instances": "yes"},
            headers=headers,
        )
        assert status == 422
        status, _, body = call(
            "POST", f"{base}/jobs/privacy.export", body={"account_id": account_id}, headers=headers
        )
        assert status == 202, body
        job = finished_job(base, body["job_id"], headers, 60, "the export job")
    assert job["status"] == "done", (tmp_path / "worker.log").read_text()
    assert job["result"]["mail"] == "sent"
    wait_until(lambda: mails_to(smtp_sink, email), 10, "the export email")
    received_by = asyncio.run(_received_by(database_url, job["result"]["request_id"]))
    assert received_by.startswith("token:")


async def _accounts_for_api(database_url: str, email: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        account_id = await conn.fetchval(
            "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id", email
        )
        erased_id = await conn.fetchval(
            "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id", "being." + email
        )
        await conn.execute(
            "INSERT INTO erasure_requests (account_id, requested_by, run_after) VALUES ($1, 'test', now())",
            erased_id,
        )
        return account_id, erased_id
    finally:
        await conn.close()


async def _received_by(database_url: str, request_id: int) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return str(await conn.fetchval("SELECT received_by FROM privacy_requests WHERE id = $1", request_id))
    finally:
        await conn.close()


# Neighbours built to be confused with the subject: the same names, an address that
# contains the subject's, ids whose digits contain the subject's id, jobs and audit
# records naming them, their own requests and notices.
neighbour = st.fixed_dictionaries(
    {
        "same_names": st.booleans(),
        "email_contains_subjects": st.booleans(),
        "jobs": st.integers(0, 2),
        "invoices": st.integers(0, 2),
        "notice": st.booleans(),
        "request": st.booleans(),
    }
)


async def _add_account(pool: asyncpg.Pool, marker: str, email: str, names: tuple[str, str]) -> int:
    account_id: int = await pool.fetchval(
        """INSERT INTO accounts (email, password_hash, first_name, last_name, business_name)
           VALUES ($1, 'x', $2, $3, $4) RETURNING id""",
        email,
        names[0],
        names[1],
        f"Maison {marker}",
    )
    await pool.execute(
        "INSERT INTO instances (account_id, name, database_url) VALUES ($1, $2, 'postgresql://absent/x')",
        account_id,
        f"shop-{marker}",
    )
    return account_id


async def _give(
    pool: asyncpg.Pool, account_id: int, marker: str, shape: dict[str, Any], campaign: int
) -> None:
    for n in range(shape["jobs"]):
        await pool.execute(
            "INSERT INTO jobs (id, name, arguments, status) VALUES (gen_random_uuid(), $1, $2, 'done')",
            f"billing.push_account_{marker}_{n}",
            {"account_id": account_id},
        )
    for n in range(shape["invoices"]):
        await pool.execute(
            """INSERT INTO invoices (id, account_id, number, currency, total, amount_due, amount_paid, status,
                                   created)
               VALUES ($1, $2, $3, 'eur', 100, 100, 100, 'paid', now())""",
            f"in_{marker}{n}",
            account_id,
            f"INV-{marker}-{n}",
        )
    if shape["notice"]:
        await pool.execute(
            """INSERT INTO breach_recipients (campaign_id, account_id, email, state)
               VALUES ($1, $2, $3, 'sent')""",
            campaign,
            account_id,
            f"notice.{marker}@example.org",
        )
    if shape["request"]:
        await log_request(pool, "objection", account_id, f"note {marker}", "test")
    await pool.execute(
        "INSERT INTO audit_log (actor, action, details) VALUES ('test', $1, $2)",
        f"test.{marker}",
        {"account_id": account_id},
    )


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(neighbours=st.lists(neighbour, min_size=1, max_size=4), subject_shape=neighbour)
async def test_nothing_of_any_neighbour_is_in_an_accounts_archive(
    clients: Exporting, neighbours: list[dict[str, Any]], subject_shape: dict[str, Any]
) -> None:
    pool = clients.pool
    campaign = await pool.fetchval(
        """INSERT INTO breach_campaigns (subject_fr, subject_en, body_fr, body_en, state, created_by)
           VALUES ('s', 's', 'b', 'b', 'done', 'test') RETURNING id"""
    )
    tag = secrets.token_hex(4)
    subject_email = f"ana.{tag}@example.org"
    subject_id = await _add_account(pool, f"s{tag}", subject_email, ("Ana", "Martin"))
    await _give(pool, subject_id, f"s{tag}", subject_shape, campaign)
    markers = []
    for n, shape in enumerate(neighbours):
        marker = f"n{n}{tag}"
        email = f"x{n}{subject_email}" if shape["email_contains_subjects"] else f"{marker}@example.org"
        names = ("Ana", "Martin") if shape["same_names"] else (f"P{marker}", f"N{marker}")
        neighbour_id = await _add_account(pool, marker, email, names)
        await _give(pool, neighbour_id, marker, shape, campaign)
        # Records of an account whose id's digits hold the subject's (123 holds 12).
        await pool.execute(
            "INSERT INTO jobs (id, name, arguments, status) VALUES (gen_random_uuid(), $1, $2, 'done')",
            f"job.{marker}d",
            {"account_id": subject_id * 10 + n},
        )
        await pool.execute(
            "INSERT INTO audit_log (actor, action, details) VALUES ('test', $1, $2)",
            f"test.{marker}d",
            {"account_id": subject_id * 10 + n},
        )
        markers.append(marker)
    file = io.BytesIO()
    _, written = await write_archive(clients, file, subject_id, with_instances=False)
    with zipfile.ZipFile(io.BytesIO(file.getvalue())) as archive:
        text = "\n".join(archive.read(name).decode("utf-8-sig") for name in archive.namelist())
    assert f"s{tag}" in text  # the subject's own data is there
    for marker in markers:
        assert marker not in text
    assert written["account.json"] == 1 and written["instances.json"] == 1


async def test_an_export_job_that_dies_before_its_email_is_answered_once_by_its_retry(
    worker_resources: Resources, smtp_sink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.privacy import export
    from tasks.privacy.actors import ExportArguments, export_job

    pool = worker_resources.pool
    email = f"retried.{secrets.token_hex(4)}@example.fr"
    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id", email
    )
    job_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO jobs (id, name, arguments) VALUES ($1, 'privacy.export', $2)",
        job_id,
        {"account_id": account_id},
    )
    from workers.mail import send_message as send

    dropped: list[str] = []

    async def connection_lost_once(settings: Any, message: Any) -> None:
        if not dropped:
            dropped.append(message["To"])
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        await send(settings, message)

    monkeypatch.setattr(export, "send_message", connection_lost_once)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await run_job(worker_resources, job_id, export_job, ExportArguments, max_retries=3)
    assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "queued"
    await run_job(worker_resources, job_id, export_job, ExportArguments, max_retries=3)  # the broker's retry

    assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "done"
    entries = await pool.fetch("SELECT state FROM privacy_requests WHERE export_job_id = $1", job_id)
    assert [entry["state"] for entry in entries] == ["closed"]  # one request, answered
    assert len(mails_to(smtp_sink, email)) == 1 and dropped == [email]
    assert await _archives(worker_resources, account_id) == 1  # the retry's archive replaced the first


async def test_values_with_newlines_quotes_backslashes_and_control_characters_come_back_exactly(
    clients: Exporting,
) -> None:
    awkward = 'a\nb\r\nc\\d"e\x01f\x02g\th\u2028i,j;k é ✓'
    account_id = await clients.pool.fetchval(
        """INSERT INTO accounts (email, password_hash, business_name, address)
           VALUES ($1, 'x', $2, $3) RETURNING id""",
        f"awkward.{secrets.token_hex(4)}@example.fr",
        awkward,
        "\\.",  # what ends a COPY text stream on a line of its own
    )
    for n in range(3):  # several rows: the separators between them
        await clients.pool.execute(
            "INSERT INTO instances (account_id, name, database_url) VALUES ($1, $2, 'postgresql://absent/x')",
            account_id,
            f"{awkward}{n}",
        )
    file = io.BytesIO()
    await write_archive(clients, file, account_id, with_instances=False)
    files = archive_of(file.getvalue())
    [account] = files["account.json"]
    assert (account["business_name"], account["address"]) == (awkward, "\\.")
    assert files["account.csv"][0]["business_name"] == awkward
    assert [i["name"] for i in files["instances.json"]] == [f"{awkward}{n}" for n in range(3)]
    assert [i["name"] for i in files["instances.csv"]] == [f"{awkward}{n}" for n in range(3)]
    assert files["subscriptions.json"] == [] and files["subscriptions.csv"] == []


async def test_a_failed_export_says_why_leaves_no_archive_and_keeps_its_request_open(
    clients: Exporting, worker_resources: Resources
) -> None:
    pool = clients.pool
    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id",
        f"failing.{secrets.token_hex(4)}@example.fr",
    )
    instance_id = await pool.fetchval(
        "INSERT INTO instances (account_id, name, database_url) VALUES ($1, 'gone', $2) RETURNING id",
        account_id,
        "postgresql://postgres@127.0.0.1:5432/bindery_no_such_instance",
    )
    # pg_dump fails half-way through the archive: the upload begun is aborted.
    with pytest.raises(
        ExportFailed, match=f"pg_dump of instances/instance-{instance_id}.sql exited with status 1"
    ):
        await export_now(clients, account_id, with_instances=True)
    assert await _archives(worker_resources, account_id) == 0  # objects and unfinished uploads
    # S3 refuses the upload (SeaweedFS creates a missing bucket on a write, so a refusal
    # stands in for it): said as S3 says it, nothing else.
    refused = Exporting(
        clients.settings.model_copy(update={"export_aws_secret_access_key": SecretStr("not-the-key")}),
        pool,
        clients.stripe,
        clients.gate,
    )
    with pytest.raises(
        ExportFailed,
        match=r"^the archive could not be stored: S3 CreateMultipartUpload: SignatureDoesNotMatch$",
    ):
        await export_now(refused, account_id)
    states = await pool.fetch(
        "SELECT state FROM privacy_requests WHERE account_id = $1 AND kind = 'export'", account_id
    )
    assert [row["state"] for row in states] == ["open", "open"]  # still to answer: the job is retried
