"""A breach campaign at a provider's slow rate, and a customer who changes address during
it: lanes in this process (tasks/breach/lanes.py), the real SMTP sink, the rate limiter
in Redis, the reconciler running all along."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from pydantic import SecretStr

from tasks.breach import campaigns, recipient_rows
from tasks.breach import lanes as sending_lanes
from tasks.breach.lanes import CampaignSender, send_batch
from tasks.breach.notice import from_incident
from tasks.breach.recipient_rows import recover
from tests.breach_setup import DATA, sink
from tests.conftest import REDIS_URL
from workers.rate_limit import RateLimiter
from workers.settings import load_settings
from workers.smtp_pool import SmtpPool


def _recipients(mail: Path) -> Counter[str]:
    parser = BytesHeaderParser()
    return Counter(str(parser.parsebytes(path.read_bytes())["To"]) for path in mail.glob("*.eml"))


async def _campaign(pool: Any) -> int:
    campaign_id = await campaigns.create(pool, from_incident(DATA / "incident.toml"), "test")
    await campaigns.start(pool, campaign_id, "test")
    return campaign_id


async def _lane_until_done(lane: CampaignSender, campaign_id: int) -> None:
    while (await campaigns.status(lane.pool, campaign_id))["state"] != "done":
        outcome = await send_batch(lane, campaign_id)
        if not outcome["claimed"]:
            await asyncio.sleep(0.2)


async def _two_lanes_with_the_reconciler(
    pool: Any, settings: Any, limiter: RateLimiter | None, campaign_id: int, timeout: float
) -> None:
    """Two lanes, each with an SMTP connection of its own, until the campaign is done,
    while the reconciler runs all along (as `breach.recover_lanes` does every minute; here
    every 0.3 s, with a lease of seconds)."""

    async def reconciling() -> None:
        while True:
            await recover(pool, timedelta(hours=1))
            await asyncio.sleep(0.3)

    smtps = [SmtpPool(settings, 1) for _ in range(2)]
    lanes = [CampaignSender(pool, settings, smtp, limiter) for smtp in smtps]
    reconciler = asyncio.create_task(reconciling())
    try:
        await asyncio.wait_for(
            asyncio.gather(*(_lane_until_done(lane, campaign_id) for lane in lanes)), timeout
        )
    finally:
        reconciler.cancel()
        for smtp in smtps:
            await smtp.close()


async def test_at_one_message_a_second_no_row_is_handed_to_a_second_lane(
    accounts_db: Any, tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lease of 5 s stands for the 5 minutes: a 12-row batch at 1 message/s outlives it twice.
    monkeypatch.setattr(recipient_rows, "LEASE", timedelta(seconds=5))
    monkeypatch.setattr(sending_lanes, "RENEW_EVERY", timedelta(seconds=1))
    db = await accounts_db(12)
    pool = db.pool
    await pool.execute("UPDATE accounts SET email = 'c' || id || '@exemple.fr'")  # no faulty addresses
    campaign_id = await _campaign(pool)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    with sink(tmp_path) as (smtp_url, mail):
        settings = load_settings().model_copy(
            update={
                "smtp_url": SecretStr(smtp_url),
                "breach_messages_per_second": 1.0,
                "breach_batch_size": 12,
            }
        )
        limiter = RateLimiter(client, "breach-slow-test", rate=1.0, burst=1)
        try:
            await _two_lanes_with_the_reconciler(pool, settings, limiter, campaign_id, 90)
        finally:
            await client.aclose()
        received = _recipients(mail)
    assert len(received) == 12 and set(received.values()) == {1}, received
    assert (await campaigns.status(pool, campaign_id))["sent"] == 12


async def test_a_customer_who_changed_address_is_written_to_at_the_new_one_once(
    accounts_db: Any, tmp_path: Path
) -> None:
    db = await accounts_db(3)
    pool = db.pool
    await pool.execute("UPDATE accounts SET email = 'c' || id || '@exemple.fr'")
    campaign_id = await _campaign(pool)
    moved = await pool.fetchval("SELECT min(id) FROM accounts")
    await pool.execute("UPDATE accounts SET email = 'moved@exemple.org' WHERE id = $1", moved)
    with sink(tmp_path) as (smtp_url, mail):
        settings = load_settings().model_copy(update={"smtp_url": SecretStr(smtp_url)})
        smtp = SmtpPool(settings, 1)
        await _lane_until_done(CampaignSender(pool, settings, smtp, None), campaign_id)
        await send_batch(
            CampaignSender(pool, settings, smtp, None), campaign_id
        )  # a late lane sends nothing more
        await smtp.close()
        received = _recipients(mail)
    assert received["moved@exemple.org"] == 1 and f"c{moved}@exemple.fr" not in received
    assert sum(received.values()) == 3


async def test_a_send_that_hangs_past_the_lease_keeps_the_lane_s_rows(
    accounts_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider holds one message's DATA for longer than the lease: the lane renews in
    the background meanwhile, so the reconciler hands none of its rows to the other lane."""
    monkeypatch.setattr(recipient_rows, "LEASE", timedelta(seconds=2))
    monkeypatch.setattr(sending_lanes, "RENEW_EVERY", timedelta(seconds=0.5))
    db = await accounts_db(4)
    pool = db.pool
    await pool.execute("UPDATE accounts SET email = 'c' || id || '@exemple.fr'")
    campaign_id = await _campaign(pool)
    first = await pool.fetchval("SELECT min(id) FROM accounts")
    with sink(tmp_path, "--stall-data-once", f"c{first}@exemple.fr:5") as (smtp_url, mail):
        settings = load_settings().model_copy(
            update={"smtp_url": SecretStr(smtp_url), "breach_batch_size": 4}
        )
        await _two_lanes_with_the_reconciler(pool, settings, None, campaign_id, 60)
        received = _recipients(mail)
    assert len(received) == 4 and set(received.values()) == {1}, received
