"""The hourly freshness check: every paid instance has a verified backup of the last 26
hours (a day and a margin for the nightly run), or the operators hear of it three ways:
an error log line, a metric, and an email to OPS_EMAIL. Instance ids only."""

from __future__ import annotations

import asyncpg
from prometheus_client import Gauge

from workers.logs import get_logger
from workers.mail import operator_alert, send_message
from workers.settings import Settings

log = get_logger(__name__)
STALE = Gauge(
    "bindery_backups_stale_instances",
    "Paid instances without a verified backup in the last 26 hours.",
    multiprocess_mode="livemax",
)


async def stale_instances(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        """
        SELECT i.id FROM instances i JOIN paid_accounts p ON p.account_id = i.account_id
         WHERE NOT EXISTS (SELECT 1 FROM backups b WHERE b.instance_id = i.id AND b.state = 'verified'
                              AND b.finished_at > now() - interval '26 hours')
         ORDER BY i.id
        """
    )
    return [row["id"] for row in rows]


async def check_freshness(pool: asyncpg.Pool, settings: Settings) -> list[int]:
    stale = await stale_instances(pool)
    STALE.set(len(stale))
    if stale:
        log.error(
            "paid instances without a verified backup in 26 hours", count=len(stale), instance_ids=stale
        )
        body = (
            "These instances of paid accounts have no verified backup finished in the last 26 hours:\n\n"
            + "\n".join(f"  instance {instance_id}" for instance_id in stale)
            + "\n\nSee `bindery backup run --instance ID` and the worker logs of the `backups` queue.\n"
        )
        subject = f"{len(stale)} paid instance(s) without a verified backup in 26 hours"
        await send_message(settings, operator_alert(settings, settings.ops_email, subject, body))
    return stale
