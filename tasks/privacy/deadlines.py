"""The hourly check of the register's deadlines: open requests due within DUE_SOON, and
those overdue, are told to the operators three ways: an error log line, a metric, and an
email to PRIVACY_CONTACT. Request ids, kinds and dates only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from prometheus_client import Gauge

from tasks.privacy.legal_clock import PARIS
from workers.logs import get_logger
from workers.mail import operator_alert, send_message
from workers.settings import Settings

log = get_logger(__name__)
DUE_SOON = timedelta(days=5)
PENDING = Gauge(
    "bindery_privacy_requests_at_risk",
    "Open data-subject requests due within 5 days, or overdue.",
    ["when"],
    multiprocess_mode="livemax",
)


async def requests_at_risk(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT id, kind, deadline, deadline <= now() AS overdue
             FROM privacy_requests
            WHERE state = 'open' AND deadline <= now() + $1::interval
            ORDER BY deadline, id""",
        DUE_SOON,
    )
    return [dict(row) for row in rows]


async def check_deadlines(pool: asyncpg.Pool, settings: Settings) -> list[dict[str, Any]]:
    at_risk = await requests_at_risk(pool)
    overdue = [r for r in at_risk if r["overdue"]]
    PENDING.labels(when="overdue").set(len(overdue))
    PENDING.labels(when="due_soon").set(len(at_risk) - len(overdue))
    if not at_risk:
        return at_risk
    log.error(
        "privacy requests overdue or due within 5 days",
        overdue=[r["id"] for r in overdue],
        due_soon=[r["id"] for r in at_risk if not r["overdue"]],
    )
    lines = [
        f"  request {r['id']} ({r['kind']}): {'OVERDUE since' if r['overdue'] else 'due'} "
        f"{(r['deadline'] - timedelta(seconds=1)).astimezone(PARIS):%d/%m/%Y} (end of day, Paris)"
        for r in at_risk
    ]
    body = (
        "These data-subject requests must be answered (GDPR Art. 12(3)):\n\n"
        + "\n".join(lines)
        + "\n\nSee `bindery privacy requests --open`; `bindery privacy extend ID --until DATE --reason …`"
        " gives up to two more months, with a reason told to the customer.\n"
    )
    subject = f"{len(overdue)} privacy request(s) overdue, {len(at_risk) - len(overdue)} due within 5 days"
    await send_message(settings, operator_alert(settings, settings.privacy_contact, subject, body))
    return at_risk
