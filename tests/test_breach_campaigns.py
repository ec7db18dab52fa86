"""Breach campaigns end to end: `bindery breach` commands, real `bindery worker`
processes, a real SMTP sink that keeps every message (and so every Message-ID)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from subprocess import Popen
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from tasks.breach.sending import Lane, reconcile, send_batch
from tests.processes import bindery, bindery_env, equals, eventually, run_bindery
from workers.db import create_pool, drop_database, migrate_database
from workers.devstack import commands
from workers.devstack.servers import free_port, running
from workers.settings import load_settings
from workers.smtp_pool import SmtpPool

LANES, BATCH = 4, 100
DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Bindery:
    """A database of the test's own, so that a campaign's snapshot holds exactly its
    accounts, and the environment that points `bindery` processes at it."""

    url: str
    pool: asyncpg.Pool

    def env(self, smtp_url: str, **overrides: str) -> dict[str, str]:
        defaults = {
            "BREACH_MESSAGES_PER_SECOND": "5000",
            "BREACH_LANES": str(LANES),
            "BREACH_BATCH_SIZE": str(BATCH),
        }
        return bindery_env(DATABASE_URL=self.url, SMTP_URL=smtp_url, **{**defaults, **overrides})


@pytest.fixture
async def own(database_url: str) -> AsyncIterator[Any]:
    """`await own(n)`: a fresh database with n accounts; one in 100 gets a 451 once from a
    faulty sink, one in 250 a 550, one in 10 is disabled."""
    created: list[Bindery] = []

    async def make(count: int) -> Bindery:
        url = database_url.rsplit("/", 1)[0] + f"/breach_{secrets.token_hex(4)}"
        await migrate_database(url, create=True)
        pool = await create_pool(url, max_size=4)
        await pool.execute(
            """INSERT INTO accounts (email, password_hash, first_name, status)
               SELECT 'c' || g || CASE WHEN g % 250 = 0 THEN '+reject' WHEN g % 100 = 0 THEN '+tempfail'
                                       ELSE '' END || '@exemple.fr',
                      'x', 'Client ' || g, CASE WHEN g % 10 = 0 THEN 'disabled' ELSE 'active' END
                 FROM generate_series(1, $1::int) g""",
            count,
        )
        created.append(Bindery(url, pool))
        return created[-1]

    yield make
    for one in created:
        await one.pool.close()
        await drop_database(one.url)


@contextmanager
def sink(root: Path, *faults: str, port: int | None = None) -> Iterator[tuple[str, Path]]:
    port = port or free_port()
    directory = root / f"mail-{port}"
    with running("smtp sink", commands.smtp_sink(port, directory, *faults), port, root / f"sink-{port}.log"):
        yield f"smtp://127.0.0.1:{port}", directory


def message_ids(directory: Path) -> Counter[str]:
    parser = BytesHeaderParser()
    return Counter(
        str(parser.parsebytes(path.read_bytes())["Message-ID"]) for path in directory.glob("*.eml")
    )


def worker(log: Path, env: dict[str, str]) -> AbstractContextManager[Popen[bytes]]:
    return bindery(
        "worker", "--queues", "mail", "--processes", "1", "--threads", str(LANES), log=log, env=env
    )


def create_campaign(env: dict[str, str]) -> int:
    created = run_bindery("breach", "create", "--incident", str(DATA / "incident.toml"), env=env)
    assert created.returncode == 0, created.stderr
    return int(created.stdout.split()[1])


async def campaign_state(pool: asyncpg.Pool, campaign_id: int) -> str:
    return str(await pool.fetchval("SELECT state FROM breach_campaigns WHERE id = $1", campaign_id))


async def recipients(pool: asyncpg.Pool, campaign_id: int) -> dict[int, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM breach_recipients WHERE campaign_id = $1", campaign_id)
    return {row["account_id"]: row for row in rows}


def expected_ids(campaign_id: int, account_ids: Iterable[int]) -> set[str]:
    sender_domain = load_settings().mail_from.rpartition("@")[2].rstrip(">")
    return {f"<breach.{campaign_id}.{account_id}@{sender_domain}>" for account_id in account_ids}


async def test_every_account_is_mailed_exactly_once_through_a_pause(own: Any, tmp_path: Path) -> None:
    db = await own(10_000)
    pool = db.pool
    with sink(tmp_path) as (smtp_url, mail):
        env = db.env(smtp_url)
        campaign_id = create_campaign(env)
        preview = run_bindery("breach", "preview", str(campaign_id), env=env)
        assert preview.returncode == 0 and "Bonjour Jeanne Dupont," in preview.stdout
        started = run_bindery("breach", "start", str(campaign_id), env=env)
        assert started.returncode == 0, started.stderr
        total = json.loads(started.stdout)["recipients"]
        assert total == 10_000  # every account, disabled ones included
        with worker(tmp_path / "worker.log", env):
            await eventually(lambda: _sent_at_least(pool, campaign_id, 2000), 60, "2,000 sent")
            assert run_bindery("breach", "pause", str(campaign_id), env=env).returncode == 0
            await eventually(lambda: _none_sending(pool, campaign_id), 30, "the lanes to stop")
            paused_sent = (await _counts(pool, campaign_id))["sent"]
            assert paused_sent < total and sum(message_ids(mail).values()) == paused_sent
            assert run_bindery("breach", "resume", str(campaign_id), env=env).returncode == 0
            await eventually(lambda: equals(campaign_state(pool, campaign_id), "done"), 120, "the campaign")
        rows = await recipients(pool, campaign_id)
        assert {row["state"] for row in rows.values()} == {"sent"} and len(rows) == total
        seen = message_ids(mail)
        assert set(seen) == expected_ids(campaign_id, rows) and set(seen.values()) == {1}

    status = run_bindery("breach", "status", str(campaign_id), "--json", env=env)
    report = json.loads(status.stdout)
    assert (report["state"], report["sent"], report["failed"], report["pending"]) == ("done", total, 0, 0)
    assert report["reply_codes"] == {"250": total} and report["started_by"] == "cli"
    actions = await pool.fetch(
        "SELECT action FROM audit_log WHERE subject_type = 'breach_campaign' AND subject_id = $1 ORDER BY id",
        str(campaign_id),
    )
    assert [row["action"] for row in actions] == [
        "breach.create",
        "breach.start",
        "breach.pause",
        "breach.resume",
        "breach.done",
    ]
    text = run_bindery("breach", "status", str(campaign_id), env=env).stdout
    assert f"campaign {campaign_id} done: [" in text and f"{total} sent" in text


async def test_a_worker_killed_mid_campaign_loses_no_one_and_duplicates_at_most_its_batches(
    own: Any, tmp_path: Path
) -> None:
    db = await own(3_000)
    pool = db.pool
    with sink(tmp_path) as (smtp_url, mail):
        env = db.env(smtp_url, BREACH_MESSAGES_PER_SECOND="300")
        campaign_id = create_campaign(env)
        assert run_bindery("breach", "start", str(campaign_id), env=env).returncode == 0
        with worker(tmp_path / "worker-1.log", env) as first:
            await eventually(lambda: _sent_at_least(pool, campaign_id, 1000), 60, "1,000 sent")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        # Five minutes later the dead worker's leases have run out (moved, not waited for).
        await pool.execute(
            """UPDATE breach_recipients SET lease_until = now() - interval '1 second'
                WHERE campaign_id = $1 AND state = 'sending'""",
            campaign_id,
        )
        await pool.execute(
            "UPDATE breach_campaigns SET active_at = now() - interval '1 hour' WHERE id = $1", campaign_id
        )
        outcome = await reconcile(pool, quiet=timedelta(minutes=2))
        assert campaign_id in outcome["restart"]
        from tasks.breach.actors import start_lanes

        with worker(tmp_path / "worker-2.log", env):
            await asyncio.to_thread(start_lanes, campaign_id, LANES)
            await eventually(lambda: equals(campaign_state(pool, campaign_id), "done"), 120, "the campaign")
        rows = await recipients(pool, campaign_id)
        assert {row["state"] for row in rows.values()} == {"sent"}
        seen = message_ids(mail)
        assert set(seen) == expected_ids(campaign_id, rows)  # nobody missed
        duplicates = sum(count - 1 for count in seen.values())
        assert duplicates <= LANES * BATCH, duplicates  # at most what was in flight


async def test_451_is_retried_and_delivered_550_fails_and_is_reported(own: Any, tmp_path: Path) -> None:
    db = await own(1_000)
    pool = db.pool
    with sink(tmp_path, "--tempfail-once", "+tempfail", "--reject", "+reject") as (smtp_url, mail):
        env = db.env(smtp_url)
        campaign_id = create_campaign(env)
        assert run_bindery("breach", "start", str(campaign_id), env=env).returncode == 0
        with worker(tmp_path / "worker.log", env):
            await eventually(lambda: equals(campaign_state(pool, campaign_id), "done"), 180, "the campaign")
        rows = await recipients(pool, campaign_id)
        seen = message_ids(mail)
    rejected = {a for a, row in rows.items() if "+reject" in row["email"]}
    retried = {a for a, row in rows.items() if "+tempfail" in row["email"]}
    assert (len(rejected), len(retried)) == (4, 8)
    for account_id in rejected:
        assert (rows[account_id]["state"], rows[account_id]["reply_code"]) == ("failed", 550)
    for account_id in retried:
        assert (rows[account_id]["state"], rows[account_id]["attempts"]) == ("sent", 2)
    assert set(seen) == expected_ids(campaign_id, set(rows) - rejected) and set(seen.values()) == {1}
    report = json.loads(run_bindery("breach", "status", str(campaign_id), "--json", env=env).stdout)
    assert report["failed"] == len(rejected) and report["reply_codes"]["550"] == len(rejected)


async def test_failures_past_the_threshold_pause_the_campaign_and_say_why(own: Any, tmp_path: Path) -> None:
    db = await own(1_000)
    pool = db.pool
    with sink(tmp_path, "--reject", "@") as (smtp_url, _):
        env = db.env(smtp_url)
        campaign_id = create_campaign(env)
        assert run_bindery("breach", "start", str(campaign_id), env=env).returncode == 0
        with worker(tmp_path / "worker.log", env):
            await eventually(lambda: equals(campaign_state(pool, campaign_id), "paused"), 60, "the pause")
            await eventually(lambda: _none_sending(pool, campaign_id), 30, "the lanes to stop")
        reason = await pool.fetchval("SELECT pause_reason FROM breach_campaigns WHERE id = $1", campaign_id)
        assert "messages failed" in reason and "550" in reason
        counts = await _counts(pool, campaign_id)
        assert counts["failed"] < LANES * BATCH + 20 and counts["pending"] > 0  # stopped early
        cancelled = run_bindery("breach", "cancel", str(campaign_id), env=env)
        assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["state"] == "cancelled"
        again = run_bindery("breach", "resume", str(campaign_id), env=env)
        assert again.returncode == 1 and "is cancelled; cannot resume it" in again.stderr


async def test_the_sink_down_for_30_seconds_is_waited_for(own: Any, tmp_path: Path) -> None:
    db = await own(500)
    pool = db.pool
    port = free_port()
    smtp_url = f"smtp://127.0.0.1:{port}"
    env = db.env(smtp_url)
    campaign_id = create_campaign(env)
    assert run_bindery("breach", "start", str(campaign_id), env=env).returncode == 0
    with worker(tmp_path / "worker.log", env):
        loop = asyncio.get_running_loop()
        down_until = loop.time() + 30
        await eventually(lambda: loop.time() > down_until, 40, "30 s of outage")  # the scenario itself
        counts = await _counts(pool, campaign_id)
        assert (
            counts["sent"] == 0
            and counts["failed"] == 0
            and await campaign_state(pool, campaign_id) == "sending"
        )
        attempts = await pool.fetchval(
            "SELECT max(attempts) FROM breach_recipients WHERE campaign_id = $1", campaign_id
        )
        assert attempts <= 4  # the lanes waited; they did not spend every row's tries
        with sink(tmp_path, port=port) as (_, mail):
            await eventually(lambda: equals(campaign_state(pool, campaign_id), "done"), 120, "the campaign")
            seen = message_ids(mail)
    rows = await recipients(pool, campaign_id)
    assert {row["state"] for row in rows.values()} == {"sent"}
    assert set(seen) == expected_ids(campaign_id, rows) and set(seen.values()) == {1}


async def test_an_internationalised_address_uses_smtputf8_or_fails_clearly(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from tasks.breach import campaigns
    from tasks.breach.notice import from_incident

    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id",
        f"josé.{secrets.token_hex(3)}@exemple.fr",
    )
    for faults, expected in (((), ("sent", 250, None)), (("--no-smtputf8",), ("failed", None, "SMTPUTF8"))):
        campaign_id = await campaigns.create(pool, from_incident(DATA / "incident.toml"), "test")
        # A campaign of this one account: rows written as `start` would, without the others.
        await pool.execute(
            "UPDATE breach_campaigns SET state = 'sending', started_at = now() WHERE id = $1", campaign_id
        )
        await pool.execute(
            """INSERT INTO breach_recipients (campaign_id, account_id, email)
               SELECT $1, id, email FROM accounts WHERE id = $2""",
            campaign_id,
            account_id,
        )
        with sink(tmp_path, *faults) as (smtp_url, mail):
            settings = load_settings().model_copy(update={"smtp_url": SecretStr(smtp_url)})
            smtp = SmtpPool(settings, 1)
            await send_batch(Lane(pool, settings, smtp, None), campaign_id)
            await smtp.close()
            delivered = sum(message_ids(mail).values())
        row = (await recipients(pool, campaign_id))[account_id]
        state, code, reason = expected
        assert (row["state"], row["reply_code"]) == (state, code)
        assert (reason is None and row["error"] is None) or reason in row["error"]
        assert delivered == (1 if state == "sent" else 0)
        assert row["email"] not in (row["error"] or "")  # the reason never quotes the address


async def _counts(pool: asyncpg.Pool, campaign_id: int) -> Counter[str]:
    rows = await pool.fetch(
        "SELECT state, count(*) AS n FROM breach_recipients WHERE campaign_id = $1 GROUP BY state",
        campaign_id,
    )
    return Counter({row["state"]: row["n"] for row in rows})


async def _sent_at_least(pool: asyncpg.Pool, campaign_id: int, count: int) -> bool:
    return bool((await _counts(pool, campaign_id))["sent"] >= count)


async def _none_sending(pool: asyncpg.Pool, campaign_id: int) -> bool:
    return (await _counts(pool, campaign_id))["sending"] == 0


async def test_addresses_are_scrubbed_after_the_retention_counts_stay(own: Any, tmp_path: Path) -> None:
    from tasks.breach import campaigns
    from tasks.breach.notice import from_incident

    db = await own(30)
    pool = db.pool
    campaign_id = await campaigns.create(pool, from_incident(DATA / "incident.toml"), "test")
    assert await campaigns.start(pool, campaign_id, "test") == 30
    await pool.execute(
        "UPDATE breach_recipients SET state = 'sent', sent_at = now() WHERE campaign_id = $1", campaign_id
    )
    await pool.execute(
        "UPDATE breach_campaigns SET state = 'done', finished_at = now() WHERE id = $1", campaign_id
    )
    assert await campaigns.scrub_finished(pool, timedelta(days=90)) == 0  # ended today: kept
    await pool.execute(
        "UPDATE breach_campaigns SET finished_at = now() - interval '91 days' WHERE id = $1", campaign_id
    )
    assert await campaigns.scrub_finished(pool, timedelta(days=90)) == 1
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM breach_recipients WHERE campaign_id = $1 AND email IS NOT NULL", campaign_id
        )
        == 0
    )
    assert (await campaigns.status(pool, campaign_id))["sent"] == 30  # the counts stay
    assert await campaigns.scrub_finished(pool, timedelta(days=90)) == 0  # once


async def test_a_preview_goes_to_the_operator_only_and_bad_input_changes_nothing(
    own: Any, tmp_path: Path
) -> None:
    db = await own(5)
    with sink(tmp_path) as (smtp_url, mail):
        env = db.env(smtp_url)
        campaign_id = create_campaign(env)
        sent = run_bindery("breach", "preview", str(campaign_id), "--to", "ops@exemple.fr", env=env)
        assert sent.returncode == 0, sent.stderr
        assert list(message_ids(mail)) == [expected_ids(campaign_id, [0]).pop()]  # account 0: nobody's
        assert await db.pool.fetchval("SELECT count(*) FROM breach_recipients") == 0  # still a draft
        unknown = run_bindery("breach", "start", "999", env=env)
        assert unknown.returncode == 1 and "unknown campaign 999" in unknown.stderr
        twice = run_bindery("breach", "start", str(campaign_id), env=env)
        assert twice.returncode == 0
        again = run_bindery("breach", "start", str(campaign_id), env=env)
        assert again.returncode == 1 and "only a draft can be started" in again.stderr
        assert await db.pool.fetchval("SELECT count(*) FROM breach_recipients") == 5  # one snapshot
        assert run_bindery("breach", "cancel", str(campaign_id), env=env).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[fr]\n")
    refused = run_bindery("breach", "create", "--incident", str(bad), env=env)
    assert refused.returncode == 1 and "[fr] table lacks" in refused.stderr
    assert await db.pool.fetchval("SELECT count(*) FROM breach_campaigns") == 1
