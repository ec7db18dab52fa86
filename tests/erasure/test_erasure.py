"""Account erasure against real Postgres, SeaweedFS, localstripe and the SMTP sink."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import redis
import stripe

from tasks.erasure.actors import send_request_notice
from tasks.erasure.context import Erasure
from tasks.erasure.requests import (
    NotCancellable,
    UnknownAccount,
    cancel_erasure,
    request_erasure,
)
from tasks.erasure.saga import run_request
from tasks.erasure.steps import STAGES, STEPS, Step
from tasks.erasure.verify import find_leftovers
from tests.erasure_scenario import (
    database_exists,
    erase_now,
    erasure_of,
    mails_to,
    make_customer,
    objects_under,
    remove_databases,
)
from tests.http import call, finished_job, web_and_worker
from tests.processes import bindery_env, eventually, run_bindery, wait_until
from workers.db import connect, drop_database, ensure_database
from workers.resources import Resources
from workers.stripe_client import make_stripe_client


@pytest.fixture
def resources(worker_resources: Resources) -> Resources:
    return worker_resources


async def test_unknown_account_is_a_clear_error_and_changes_nothing(pool: asyncpg.Pool) -> None:
    before = await pool.fetchval("SELECT count(*) FROM erasure_requests")
    async with pool.acquire() as conn:
        with pytest.raises(UnknownAccount, match="unknown account 987654321"):
            await request_erasure(conn, 987_654_321, grace=timedelta(hours=24), requested_by="test")
    assert await pool.fetchval("SELECT count(*) FROM erasure_requests") == before


async def test_a_second_request_is_the_first_and_cancel_within_grace_restores_the_account(
    resources: Resources, smtp_sink: Path
) -> None:
    pool = resources.pool
    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ('Ana.Grace@example.fr', 'x') RETURNING id"
    )
    async with pool.acquire() as conn:
        first, created = await request_erasure(
            conn, account_id, grace=timedelta(hours=24), requested_by="test"
        )
        second, created_again = await request_erasure(
            conn, account_id, grace=timedelta(hours=24), requested_by="t"
        )
    assert created and not created_again and first["id"] == second["id"]
    assert await pool.fetchval("SELECT status FROM accounts WHERE id = $1", account_id) == "disabled"
    assert await send_request_notice(resources, first["id"]) == "sent"
    assert await send_request_notice(resources, first["id"]) is None  # sent once
    [notice] = mails_to(smtp_sink, "Ana.Grace@example.fr")
    body = notice.get_content()
    assert f"n° {first['id']}" in body and "privacy@" in body and notice["Auto-Submitted"] == "auto-generated"

    # Its time has not come: nothing runs.
    assert await run_request(resources, first["id"]) == "skipped"
    async with pool.acquire() as conn:
        cancelled = await cancel_erasure(conn, account_id, cancelled_by="test")
        with pytest.raises(NotCancellable):
            await cancel_erasure(conn, account_id, cancelled_by="test")
    assert cancelled["state"] == "cancelled"
    assert await pool.fetchval("SELECT status FROM accounts WHERE id = $1", account_id) == "active"
    assert await run_request(resources, first["id"]) == "skipped"


@pytest.mark.parametrize("crash_before", [name for name, _ in STEPS])
async def test_a_run_killed_before_any_step_is_finished_by_the_next(
    resources: Resources, database_url: str, crash_before: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = resources.pool
    customer = await make_customer(resources, database_url, instances=1)
    try:
        request_id = await erase_now(resources, customer.account_id)

        class Killed(BaseException):
            """What a SIGKILL looks like from inside: nothing after it runs, not even except blocks."""

        async def killed(_: Erasure) -> dict[str, int]:
            raise Killed

        crashing = [
            [(name, killed if name == crash_before else step) for name, step in stage] for stage in STAGES
        ]
        monkeypatch.setattr("tasks.erasure.saga.STAGES", crashing)
        with pytest.raises(Killed):
            await run_request(resources, request_id)
        assert await run_request(resources, request_id) == "skipped"  # its lease still runs
        monkeypatch.setattr("tasks.erasure.saga.STAGES", STAGES)
        await pool.execute(
            "UPDATE erasure_requests SET lease_until = now() - interval '1 second' WHERE id = $1", request_id
        )
        assert await run_request(resources, request_id) == "done"
        assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = $1", customer.account_id) == 0
        steps = await pool.fetch("SELECT step, attempts FROM erasure_steps WHERE request_id = $1", request_id)
        assert {row["step"]: row["attempts"] for row in steps}[crash_before] == 2
    finally:
        await remove_databases(customer)


async def test_the_steps_of_a_stage_run_at_once_and_a_failing_one_leaves_its_siblings_finished(
    resources: Resources, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = resources.pool
    [stage] = [stage for stage in STAGES if len(stage) > 1]
    customer = await make_customer(resources, database_url, instances=1)
    try:
        request_id = await erase_now(resources, customer.account_id)
        started = {name: asyncio.Event() for name, _ in stage}
        leased_meanwhile: list[bool] = []

        async def failed_step_recorded() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT error IS NOT NULL FROM erasure_steps WHERE request_id = $1 AND step = $2",
                    request_id,
                    "instance_databases",
                )
            )

        async def lease_held() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT lease_until IS NOT NULL FROM erasure_requests WHERE id = $1", request_id
                )
            )

        def together(name: str, step: Step) -> Step:
            """The step, once every step of its stage has started: run one after another,
            the first would wait for the others in vain."""

            async def run(erasure: Erasure) -> dict[str, int]:
                started[name].set()
                await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started.values())), 10)
                if name == "instance_databases":
                    raise RuntimeError("database server gone")
                if name == "backup_objects":  # still at work after its sibling failed
                    await eventually(failed_step_recorded, 10, "the failure recorded")
                    leased_meanwhile.append(await lease_held())
                return await step(erasure)

            return run

        patched = [[(name, together(name, step)) for name, step in s] if s is stage else s for s in STAGES]
        monkeypatch.setattr("tasks.erasure.saga.STAGES", patched)
        with pytest.raises(RuntimeError, match="database server gone"):
            await run_request(resources, request_id)
        rows = await pool.fetch(
            "SELECT step, finished_at IS NOT NULL AS finished, error FROM erasure_steps"
            " WHERE request_id = $1",
            request_id,
        )
        steps = {row["step"]: (row["finished"], row["error"]) for row in rows}
        assert steps["stripe_customer"] == (True, None) and steps["backup_objects"] == (True, None)
        assert steps["instance_databases"] == (False, "RuntimeError") and "rows" not in steps
        # No other run could start while a sibling was at work; once all are done, one may.
        assert leased_meanwhile == [True] and not await lease_held()
        assert await objects_under(resources, customer.instance_ids[0]) == 0
        assert await database_exists(pool, customer.database_urls[0])

        monkeypatch.setattr("tasks.erasure.saga.STAGES", STAGES)
        assert await run_request(resources, request_id) == "done"
        rows = await pool.fetch("SELECT step, attempts FROM erasure_steps WHERE request_id = $1", request_id)
        attempts = {row["step"]: row["attempts"] for row in rows}
        assert attempts["instance_databases"] == 2 and attempts["stripe_customer"] == 1
        assert not await database_exists(pool, customer.database_urls[0])
    finally:
        await remove_databases(customer)


async def test_a_failing_step_shows_its_error_and_never_reaches_done(
    resources: Resources, database_url: str
) -> None:
    pool = resources.pool
    customer = await make_customer(resources, database_url, instances=1)
    try:
        request_id = await erase_now(resources, customer.account_id)
        # Stripe unreachable: the client retries, then the step fails.
        settings = resources.settings.model_copy(update={"stripe_api_base": "http://127.0.0.1:9"})
        client, http = make_stripe_client(settings)
        down = Resources(settings=settings, pool=pool, stripe=client, stripe_http=http)
        with pytest.raises(stripe.APIConnectionError):
            await run_request(down, request_id)
        await http.close_async()
        request = await pool.fetchrow(
            "SELECT state, last_error FROM erasure_requests WHERE id = $1", request_id
        )
        assert (
            request["state"] == "running" and request["last_error"] == "stripe_customer: APIConnectionError"
        )
        assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = $1", customer.account_id) == 1
        assert await run_request(resources, request_id) == "done"  # once Stripe answers
    finally:
        await remove_databases(customer)


async def test_verification_names_where_something_is_left(resources: Resources, database_url: str) -> None:
    customer = await make_customer(resources, database_url, instances=1)
    try:
        erasure = await erasure_of(resources, customer.account_id, customer.instance_ids)
        found = await find_leftovers(erasure)
        assert found["payment_methods.account_id"] == 2 and found["stripe:customer"] == 1, found
        assert found["stripe_events.payload"] >= 1 and found[f"s3:instances/{customer.instance_ids[0]}/"] == 4
        assert not any(customer.email.lower() in place.lower() for place in found)
    finally:
        await remove_databases(customer)


async def test_erasures_verifying_together_share_one_scan_and_each_is_told_its_own_leftovers(
    resources: Resources,
) -> None:
    """Three verifications at once go through one scan; each gets only what is its own:
    a clean account nothing, one mentioned in another table that mention, and each
    account's own row is never counted for another in the batch."""
    pool = resources.pool
    assert resources.stripe is not None
    accounts = []
    for name in ("Clean", "Mentioned", "Neighbour"):
        tag = name.lower() + uuid.uuid4().hex[:8]
        account_id = await pool.fetchval(
            "INSERT INTO accounts (email, password_hash, last_name) VALUES ($1, 'x', $2) RETURNING id",
            f"{tag}@example.fr",
            f"{name}{tag}",
        )
        accounts.append((account_id, f"{tag}@example.fr"))
    mentioned_email = accounts[1][1]
    # The second account's address, left in a job's result, and in the third account's row.
    await pool.execute(
        "INSERT INTO jobs (id, name, arguments, status, result) VALUES ($1, 'system.ping', '{}', 'done', $2)",
        uuid.uuid4(),
        {"note": mentioned_email.upper()},
    )
    await pool.execute("UPDATE accounts SET address = $1 WHERE id = $2", mentioned_email, accounts[2][0])
    erasures = [await erasure_of(resources, account_id) for account_id, _ in accounts]
    clean, mentioned, neighbour = await asyncio.gather(*(find_leftovers(e) for e in erasures))
    assert clean == {} and neighbour == {}
    assert mentioned == {"jobs.result": 1, "accounts.address": 1}


def test_the_job_api_asks_for_an_erasure_and_refuses_an_unknown_account(
    database_url: str, redis_client: redis.Redis, smtp_sink: Path, s3_server: str, tmp_path: Path
) -> None:
    env = bindery_env()
    token = run_bindery(
        "token", "create", f"erasure-{tmp_path.name[-12:]}".lower(), "--scope", "erasure"
    ).stdout
    headers = {"Authorization": f"Bearer {token.strip()}"}
    account_id = asyncio.run(_new_account(database_url, "Api.Asked@example.fr"))
    with web_and_worker(tmp_path, env) as base:
        status, _, body = call(
            "POST", f"{base}/jobs/erasure.request", body={"account_id": 987654321}, headers=headers
        )
        assert (status, body["error"]) == (404, "not_found")
        status, _, body = call(
            "POST", f"{base}/jobs/erasure.request", body={"account_id": account_id}, headers=headers
        )
        assert status == 202, body

        job = finished_job(base, body["job_id"], headers, 30, "the erasure request job")
    assert job["status"] == "done", (tmp_path / "worker.log").read_text()
    assert job["result"]["state"] == "pending" and job["result"]["created"] is True
    requested_by = asyncio.run(_requested_by(database_url, job["result"]["request_id"]))
    assert requested_by.startswith("token:")
    wait_until(lambda: mails_to(smtp_sink, "Api.Asked@example.fr"), 10, "the notice email")


async def _requested_by(database_url: str, request_id: int) -> str:
    conn = await connect(database_url)
    try:
        who: str = await conn.fetchval("SELECT requested_by FROM erasure_requests WHERE id = $1", request_id)
        return who
    finally:
        await conn.close()


async def _new_account(database_url: str, email: str) -> int:
    conn = await connect(database_url)
    try:
        account_id: int = await conn.fetchval(
            "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id", email
        )
        return account_id
    finally:
        await conn.close()


async def test_a_database_restored_from_before_an_erasure_is_erased_again_by_reapply(
    resources: Resources, database_url: str, tmp_path: Path, smtp_sink: Path
) -> None:
    from tasks.erasure.admin import reapply

    pool = resources.pool
    erased = await make_customer(resources, database_url, instances=1)
    kept = await make_customer(resources, database_url, instances=1)
    dump = tmp_path / "main.dump"
    restored_url = database_url.rsplit("/", 1)[0] + f"/restored_{tmp_path.name[-8:].replace('-', '_')}"
    try:
        subprocess.run(["pg_dump", "-Fc", "-f", str(dump), "--dbname", database_url], check=True)
        assert await run_request(resources, await erase_now(resources, erased.account_id)) == "done"

        await ensure_database(restored_url)
        subprocess.run(["pg_restore", "--no-owner", "--dbname", restored_url, str(dump)], check=True)
        restored = await connect(restored_url)
        try:
            assert (
                await restored.fetchval("SELECT count(*) FROM accounts WHERE id = $1", erased.account_id) == 1
            )
            mails_before = len(mails_to(smtp_sink, erased.email))
            assert await reapply(resources.settings, restored_url) == [erased.account_id]
            assert (
                await restored.fetchval("SELECT count(*) FROM accounts WHERE id = $1", erased.account_id) == 0
            )
            assert (
                await restored.fetchval("SELECT count(*) FROM accounts WHERE id = $1", kept.account_id) == 1
            )
            assert (
                await restored.fetchval(
                    "SELECT count(*) FROM payment_methods WHERE account_id = $1", erased.account_id
                )
                == 0
            )
            assert len(mails_to(smtp_sink, erased.email)) == mails_before  # told once, not again
            assert await reapply(resources.settings, restored_url) == []  # nothing left to do
        finally:
            await restored.close()
        assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = $1", kept.account_id) == 1
    finally:
        await drop_database(restored_url)
        await remove_databases(erased)
        await remove_databases(kept)


async def test_an_erasure_waits_for_a_backup_being_written_and_no_backup_starts_once_it_has_begun(
    resources: Resources, database_url: str
) -> None:
    from datetime import date

    from tasks.backups.catalog import ErasureRunning
    from tasks.backups.run import run_backup
    from tasks.erasure.steps import BackupBeingWritten
    from workers.s3 import s3_client

    pool = resources.pool
    customer = await make_customer(resources, database_url, instances=1)
    instance_id = customer.instance_ids[0]
    try:
        # A backup past its pg_dump, still uploading when the erasure runs.
        writing = await pool.fetchval(
            """INSERT INTO backups (id, instance_id, day, object_key, manifest_key, lease_until)
               VALUES (gen_random_uuid(), $1, '2026-11-20', $2, $3, now() + interval '1 minute')
               RETURNING id""",
            instance_id,
            f"instances/{instance_id}/2026-11-20/x.dump.zst.age",
            f"instances/{instance_id}/2026-11-20/x.manifest.json",
        )
        request_id = await erase_now(resources, customer.account_id)
        with pytest.raises(BackupBeingWritten):
            await run_request(resources, request_id)
        last_error = await pool.fetchval("SELECT last_error FROM erasure_requests WHERE id = $1", request_id)
        assert last_error.startswith("backup_objects: 1 backup(s)")

        # Meanwhile no new backup of the instance starts, and none is claimed.
        async with s3_client(resources.settings) as s3:
            with pytest.raises(ErasureRunning):
                await run_backup(pool, resources.settings, s3, instance_id, date(2026, 11, 21))
        assert await pool.fetchval("SELECT count(*) FROM backups WHERE instance_id = $1", instance_id) == 1

        # The writer ends (here: fails, as it does once its database is dropped); the erasure goes on.
        await pool.execute("UPDATE backups SET state = 'failed', lease_until = NULL WHERE id = $1", writing)
        assert await run_request(resources, request_id) == "done"
        assert await pool.fetchval("SELECT count(*) FROM backups WHERE instance_id = $1", instance_id) == 0
    finally:
        await remove_databases(customer)


async def test_an_account_erased_during_a_breach_campaign_is_scrubbed_and_counted_as_skipped(
    resources: Resources, database_url: str
) -> None:
    from pathlib import Path

    from tasks.breach import campaigns
    from tasks.breach.notice import from_incident

    pool = resources.pool
    customer = await make_customer(resources, database_url, instances=1)
    notice = from_incident(Path(__file__).parent.parent / "data" / "incident.toml")
    campaign_id = await campaigns.create(pool, notice, "test")
    try:
        await campaigns.start(pool, campaign_id, "test")  # the snapshot holds the customer
        request_id = await erase_now(resources, customer.account_id)
        assert await run_request(resources, request_id) == "done"
        row = await pool.fetchrow(
            "SELECT state, email, error FROM breach_recipients WHERE campaign_id = $1 AND account_id = $2",
            campaign_id,
            customer.account_id,
        )
        assert (row["state"], row["email"], row["error"]) == ("skipped", None, "account erased")
        assert (await campaigns.status(pool, campaign_id))["skipped"] == 1
    finally:
        await campaigns.cancel(pool, campaign_id, "test")
        await remove_databases(customer)


async def test_verification_counts_mentions_across_pieces_and_never_across_values_or_rows(
    resources: Resources,
) -> None:
    from tasks.erasure.verify import _Matcher, _Probe, copy_escaped

    pool = resources.pool
    tag = uuid.uuid4().hex[:8]
    email = f"chunked.{tag}@example.fr"
    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id", email
    )
    # Two mentions (cased differently) megabytes apart in the COPY stream, among rows
    # mentioning nothing, some with characters COPY escapes and ones splitlines() splits on.
    await pool.execute(
        """INSERT INTO audit_log (actor, action, details)
           SELECT 'test', 'note', jsonb_build_object('note', CASE g WHEN 1 THEN upper($1)
                  WHEN 20000 THEN 'to ' || $1 ELSE $2 || g END)
             FROM generate_series(1, 20000) g""",
        email,
        "nothing \\ \t \n \x1c \u2028 ",
    )
    erasure = await erasure_of(resources, account_id)
    assert await find_leftovers(erasure) == {"audit_log.details": 2}

    # A needle split over two values, or two rows, is no mention; one inside a value is.
    probe = _Probe(pool, account_id, (email,))
    matcher = _Matcher("t", ["a", "b"], [probe])
    matcher.match(f"{email[:9]}\t{email[9:]}\n{email[:9]}\n{email[9:]}\tx\n")
    assert matcher.found == [{}]
    matcher.match(f"x\tabc{email}def\n")
    assert matcher.found == [{"t.b": 1}]
    assert copy_escaped("o\\brien\tltd") == "o\\\\brien\\tltd"  # as COPY writes it


async def test_verification_finds_names_with_quotes_and_backslashes_in_text_and_json(
    resources: Resources,
) -> None:
    pool = resources.pool
    tag = uuid.uuid4().hex[:8]
    account_id = await pool.fetchval(
        """INSERT INTO accounts (email, password_hash, first_name, last_name)
           VALUES ($1, 'x', 'Zoé', $2) RETURNING id""",
        f"quoted.{tag}@example.fr",
        f'O\\Neil "{tag}"',
    )
    name = f'zoé o\\neil "{tag}"'
    await pool.execute(
        "INSERT INTO audit_log (actor, action, details) VALUES ($1, 'note', $2)", name.upper(), {"who": name}
    )
    erasure = await erasure_of(resources, account_id)
    assert await find_leftovers(erasure) == {"audit_log.actor": 1, "audit_log.details": 1}
