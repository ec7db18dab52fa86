"""Promise: "In case of suspicion of a theft of the data we have collected …, customers
will be informed by email, at email corresponding to their customer account."

A campaign reaches every account that exists when it starts (disabled ones included)
exactly once, through a pause and through a worker killed mid-send; duplicates after
a crash are bounded by what was in flight."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

from tasks.breach.recipient_rows import recover
from tests.breach_setup import (
    BATCH,
    LANES,
    campaign_state,
    create_campaign,
    expected_ids,
    message_ids,
    none_sending,
    recipient_counts,
    recipients,
    sent_at_least,
    sink,
    worker,
)
from tests.processes import equals, eventually, run_bindery


async def test_every_account_is_mailed_exactly_once_through_a_pause(accounts_db: Any, tmp_path: Path) -> None:
    db = await accounts_db(10_000)
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
            await eventually(lambda: sent_at_least(pool, campaign_id, 2000), 60, "2,000 sent")
            assert run_bindery("breach", "pause", str(campaign_id), env=env).returncode == 0
            await eventually(lambda: none_sending(pool, campaign_id), 30, "the lanes to stop")
            paused_sent = (await recipient_counts(pool, campaign_id))["sent"]
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
    accounts_db: Any, tmp_path: Path
) -> None:
    db = await accounts_db(3_000)
    pool = db.pool
    with sink(tmp_path) as (smtp_url, mail):
        env = db.env(smtp_url, BREACH_MESSAGES_PER_SECOND="300")
        campaign_id = create_campaign(env)
        assert run_bindery("breach", "start", str(campaign_id), env=env).returncode == 0
        with worker(tmp_path / "worker-1.log", env) as first:
            await eventually(lambda: sent_at_least(pool, campaign_id, 1000), 60, "1,000 sent")
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
        outcome = await recover(pool, quiet=timedelta(minutes=2))
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
