"""Fault: the SMTP server down for 30 seconds in the middle of a breach campaign.

The lanes wait for it (probing every few seconds) instead of spending every recipient's
tries; once it answers, every recipient gets one message and nobody a second.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.breach_setup import (
    campaign_state,
    create_campaign,
    expected_ids,
    message_ids,
    recipient_counts,
    recipients,
    sink,
    worker,
)
from tests.processes import equals, eventually, run_bindery
from workers.devstack.servers import free_port


async def test_the_sink_down_for_30_seconds_is_waited_for(accounts_db: Any, tmp_path: Path) -> None:
    db = await accounts_db(500)
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
        counts = await recipient_counts(pool, campaign_id)
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
