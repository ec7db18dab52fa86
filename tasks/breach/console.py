"""Breach campaigns on the console: the overview's line (those under way, how far) and
their pages: the list, a campaign's preview in a sandboxed frame, its live progress, and
start (typed confirmation), pause, resume, cancel."""

from __future__ import annotations

import asyncio
import json
from email import message_from_bytes, policy
from email.message import EmailMessage

import asyncpg
from aiohttp import web

from tasks.breach import campaigns
from tasks.breach.actors import start_lanes
from tasks.breach.admin import SAMPLE
from tasks.breach.campaigns import CampaignError
from tasks.breach.message import CompiledMessage
from workers.console.pages import Paging, pool_of, render, require, see_other, settings_of
from workers.console.status import Level, Status


async def status(pool: asyncpg.Pool) -> list[Status]:
    rows = await pool.fetch(
        """SELECT c.id, c.state, c.sent_count, c.failed_count,
                  (SELECT count(*) FROM breach_recipients r WHERE r.campaign_id = c.id) AS recipients
             FROM breach_campaigns c WHERE c.state IN ('sending', 'paused') ORDER BY c.id"""
    )
    if not rows:
        return [
            Status("customers are emailed if their data may have been stolen", "ok", "no campaign under way")
        ]
    level: Level = "warn" if any(row["state"] == "paused" for row in rows) else "ok"
    reason = "; ".join(
        f"campaign {row['id']} {row['state']}: {row['sent_count']} of {row['recipients']} sent,"
        f" {row['failed_count']} failed"
        for row in rows
    )
    return [Status("customers are emailed if their data may have been stolen", level, reason)]


# The campaigns' pages: the list, a campaign with its preview, live progress and actions.
NAV = ("Campaigns", "/console/campaigns")
ACTIONS = {"pause": "operator", "resume": "operator", "cancel": "operator", "start": "admin"}
CAMPAIGN = "/campaigns/{campaign_id:[0-9]{1,18}}"
# The preview is framed by the campaign's page, sandboxed, and may hold no script.
PREVIEW_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox"
    ),
    "X-Frame-Options": "SAMEORIGIN",
}


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/campaigns", campaigns_page)
    router.add_get(CAMPAIGN, campaign_page)
    router.add_get(CAMPAIGN + "/progress", progress)
    router.add_get(CAMPAIGN + "/preview", preview)
    router.add_post(CAMPAIGN + "/action", act)


STATES = ("draft", "sending", "paused", "cancelled", "done")


async def campaigns_page(request: web.Request) -> web.Response:
    """Campaigns, newest first; of one state if asked."""
    paging = Paging.of(request)
    state = request.query.get("state", "")
    state = state if state in STATES else ""
    rows = await pool_of(request).fetch(
        """SELECT id, state, subject_fr, subject_en, created_by, created_at, started_at, finished_at,
                  sent_count, failed_count
             FROM breach_campaigns WHERE $3 = '' OR state = $3 ORDER BY id DESC LIMIT $1 OFFSET $2""",
        paging.limit,
        paging.offset,
        state,
    )
    return render(request, "campaigns.html", **paging.shown(rows, "campaigns"), chosen=state, states=STATES)


async def _campaign(request: web.Request) -> asyncpg.Record | None:
    campaign_id = int(request.match_info["campaign_id"])
    row: asyncpg.Record | None = await pool_of(request).fetchrow(
        "SELECT * FROM breach_campaigns WHERE id = $1", campaign_id
    )
    return row


async def campaign_page(request: web.Request) -> web.Response:
    campaign = await _campaign(request)
    if campaign is None:
        return render(
            request, "refused.html", status=404, reason="no such campaign", back="/console/campaigns"
        )
    standing = await campaigns.status(pool_of(request), campaign["id"])
    text = _sample(request, campaign).get_body(("plain",))
    assert text is not None
    return render(
        request, "campaign.html", campaign=campaign, standing=standing, preview_text=text.get_content()
    )


def _sample(request: web.Request, campaign: asyncpg.Record) -> EmailMessage:
    """The message as the sample customer would get it (tasks/breach/admin.py's SAMPLE)."""
    settings = settings_of(request)
    compiled = CompiledMessage(
        campaign["id"],
        campaigns.notice_of(campaign),
        sender=settings.mail_from,
        privacy_contact=settings.privacy_contact,
    )
    return message_from_bytes(compiled.message(SAMPLE), _class=EmailMessage, policy=policy.default)


async def preview(request: web.Request) -> web.Response:
    """The message's HTML part, as a mail reader would show it, for the page's frame."""
    campaign = await _campaign(request)
    if campaign is None:
        return web.Response(status=404, text="no such campaign\n")
    html = _sample(request, campaign).get_body(("html",))
    assert html is not None
    return web.Response(text=html.get_content(), content_type="text/html", headers=PREVIEW_HEADERS)


async def progress(request: web.Request) -> web.Response:
    """Where the campaign stands, for the page's live counts (static/progress.js)."""
    campaign_id = int(request.match_info["campaign_id"])
    try:
        standing = await campaigns.status(pool_of(request), campaign_id)
    except CampaignError:
        return web.json_response({"error": "no such campaign"}, status=404)
    return web.json_response(standing, dumps=lambda value: json.dumps(value, default=str))


async def act(request: web.Request) -> web.Response:
    """Start (with the campaign's number typed again), pause, resume or cancel."""
    campaign_id = int(request.match_info["campaign_id"])
    form = await request.post()
    action = form.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        return see_other(f"/console/campaigns/{campaign_id}")
    operator = require(request, ACTIONS[action])
    back = f"/console/campaigns/{campaign_id}"
    if action == "start" and form.get("confirm") != str(campaign_id):
        reason = (
            f"to start, type the campaign's number ({campaign_id}) in the box: every customer will be emailed"
        )
        return render(request, "refused.html", status=400, reason=reason, back=back)
    actor = f"operator:{operator.name}"
    pool, settings = pool_of(request), settings_of(request)
    try:
        if action == "start":
            await campaigns.start(pool, campaign_id, actor)
        else:
            await getattr(campaigns, action)(pool, campaign_id, actor)
    except CampaignError as refused:
        return render(request, "refused.html", status=409, reason=str(refused), back=back)
    if action in ("start", "resume"):
        await asyncio.to_thread(start_lanes, campaign_id, settings.breach_lanes)
    return see_other(back)
