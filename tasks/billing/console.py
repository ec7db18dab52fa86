"""The Stripe inbox on the console: its overview line (what waits, what failed, how
late), and its page of failed and stuck events, with retry."""

from __future__ import annotations

import json
import re

import asyncpg
from aiohttp import web

from tasks.billing.actors import send_events
from tasks.billing.admin import reset_failed
from workers.console.pages import Paging, audit, pool_of, render, require, see_other
from workers.console.status import Level, Status


async def status(pool: asyncpg.Pool) -> list[Status]:
    # Each part read from its partial index (a filter over the three states reads the inbox).
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM stripe_events WHERE state IN ('received', 'processing')) AS waiting,
                  (SELECT count(*) FROM stripe_events WHERE state = 'failed') AS failed,
                  extract(epoch FROM now() - (SELECT min(received_at) FROM stripe_events
                                               WHERE state IN ('received', 'processing'))) AS lag"""
    )
    assert row is not None  # an aggregate always has its row
    lag = float(row["lag"] or 0)
    level: Level = "bad" if row["failed"] else "warn" if lag > 300 else "ok"
    reason = f"{row['waiting']} waiting (oldest {lag:.0f} s), {row['failed']} failed"
    return [Status("billing follows Stripe", level, reason)]


# The inbox's pages.
NAV = ("Stripe", "/console/stripe")
STUCK_AFTER = 300  # seconds an event may wait before it counts as stuck
EVENT_TYPE = re.compile(r"[a-z_.]{1,100}")


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/stripe", inbox)
    router.add_get("/stripe/events/{event_id}", event)
    router.add_post("/stripe/retry", retry)


async def inbox(request: web.Request) -> web.Response:
    """Failed and stuck events, newest first, a page at a time, of one type if asked."""
    paging = Paging.of(request)
    kind = request.query.get("type", "")
    kind = kind if EVENT_TYPE.fullmatch(kind) else ""
    # The failed and the stuck apart, each newest first from its partial index, then merged.
    rows = await pool_of(request).fetch(
        """SELECT * FROM (
               (SELECT id, type, object_id, state, attempts, last_error, received_at FROM stripe_events
                 WHERE state = 'failed' AND ($2 = '' OR type = $2)
                 ORDER BY received_at DESC, id LIMIT $3::int + $4::int)
               UNION ALL
               (SELECT id, type, object_id, state, attempts, last_error, received_at FROM stripe_events
                 WHERE state IN ('received', 'processing') AND received_at < now() - make_interval(secs => $1)
                   AND ($2 = '' OR type = $2)
                 ORDER BY received_at DESC, id LIMIT $3::int + $4::int)) events
            ORDER BY received_at DESC, id LIMIT $3 OFFSET $4""",
        STUCK_AFTER,
        kind,
        paging.limit,
        paging.offset,
    )
    return render(request, "stripe_inbox.html", **paging.shown(rows, "events"), kind=kind)


async def event(request: web.Request) -> web.Response:
    row = await pool_of(request).fetchrow(
        """SELECT id, type, object_id, state, attempts, last_error, created, received_at, processed_at,
                  payload
             FROM stripe_events WHERE id = $1""",
        request.match_info["event_id"][:255],
    )
    if row is None:
        return render(request, "stripe_event.html", status=404, event=None, payload=None)
    # As stored: card numbers were masked before the inbox kept the payload.
    payload = json.dumps(row["payload"], indent=2, ensure_ascii=False) if row["payload"] is not None else None
    return render(request, "stripe_event.html", event=row, payload=payload)


async def retry(request: web.Request) -> web.Response:
    """Process failed events again: one (`event_id`) or every one (`all`)."""
    require(request, "operator")
    form = await request.post()
    event_id = form.get("event_id")
    every = form.get("all") == "1"
    if not every and not isinstance(event_id, str):
        return see_other("/console/stripe")
    async with pool_of(request).acquire() as conn:
        retried = await reset_failed(conn, None if every else str(event_id))
    await send_events(retried)
    await audit(
        request, "console.stripe_retry", "stripe_event", "all" if every else str(event_id), count=len(retried)
    )
    return see_other("/console/stripe")
