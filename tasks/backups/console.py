"""Backups on the console: the overview's lines (last night's, paid instances without
one, the restore test) and the backups page (a 30-day grid per paid instance, an
instance's backups with a chart of their size and duration, "back up now", a backup's
catalog row and "verify")."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from tasks.backups.actors import local_day, run, verify
from tasks.backups.freshness import stale_instances
from workers.console.pages import Paging, audit, form_id, pool_of, render, require, see_other
from workers.console.status import Level, Status


async def status(pool: asyncpg.Pool) -> list[Status]:
    night = await pool.fetchrow(
        """SELECT max(day) AS day,
                  count(*) FILTER (WHERE state = 'verified') AS verified,
                  count(*) FILTER (WHERE state = 'complete') AS complete,
                  count(*) FILTER (WHERE state = 'running') AS running,
                  count(*) FILTER (WHERE state = 'failed') AS failed
             FROM backups WHERE day = (SELECT max(day) FROM backups)"""
    )
    assert night is not None  # an aggregate always has its row
    stale = await stale_instances(pool)
    restore = await pool.fetchval("SELECT max(restore_tested_at) FROM backups")
    level: Level = (
        "bad" if stale or night["failed"] else "warn" if night["running"] or night["complete"] else "ok"
    )
    if night["day"] is None:
        reason = "no backup yet"
    else:
        reason = (
            f"{night['day']}: {night['verified']} verified, {night['complete']} complete, "
            f"{night['running']} running, {night['failed']} failed"
        )
    reason += f"; {len(stale)} paid instance(s) without a verified backup in 26 h"
    restored = f"last restore test {restore:%Y-%m-%d %H:%M} UTC" if restore else "no restore test yet"
    return [
        Status("paid instances are backed up daily, 30 days kept", level, reason),
        Status("backups restore", "ok" if restore else "warn", restored),
    ]


# The backups page: a 30-day grid per paid instance, and an instance's backups.
NAV = ("Backups", "/console/backups")
DAYS = 30
# A day's best outcome, when it had several backups (a forced one, a retry).
RANK = {"verified": 4, "complete": 3, "running": 2, "failed": 1}


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/backups", grid)
    router.add_get("/backups/instances/{instance_id:[0-9]{1,18}}", instance_page)
    router.add_post("/backups/run", run_now)
    router.add_get("/backups/{backup_id:[0-9a-f-]{36}}", backup_page)
    router.add_post("/backups/verify", verify_now)


def _days(today: date) -> list[date]:
    return [today - timedelta(days=back) for back in range(DAYS - 1, -1, -1)]


async def grid(request: web.Request) -> web.Response:
    """Paid instances, by id, a page at a time; those whose id or name holds `q` if asked."""
    paging = Paging.of(request)
    pool = pool_of(request)
    wanted = request.query.get("q", "")[:100]
    today = local_day(await pool.fetchval("SELECT now()"))
    rows = await pool.fetch(
        """WITH page AS (
               SELECT i.id, i.name FROM instances i JOIN paid_accounts p ON p.account_id = i.account_id
                WHERE $5 = '' OR i.id::text = $5 OR strpos(lower(i.name), lower($5)) > 0
                ORDER BY i.id LIMIT $1 OFFSET $2)
           SELECT page.id, page.name, b.day, max(CASE b.state WHEN 'verified' THEN 4 WHEN 'complete' THEN 3
                                                WHEN 'running' THEN 2 WHEN 'failed' THEN 1 END) AS best
             FROM page LEFT JOIN backups b ON b.instance_id = page.id AND b.day > $3::date - $4::int
            GROUP BY page.id, page.name, b.day""",
        paging.limit,
        paging.offset,
        today,
        DAYS,
        wanted,
    )
    names = {row["id"]: row["name"] for row in rows}
    best = {(row["id"], row["day"]): row["best"] for row in rows if row["day"] is not None}
    states = {rank: state for state, rank in RANK.items()}
    instances = [
        {
            "id": instance_id,
            "name": names[instance_id],
            "cells": [(day, states.get(best.get((instance_id, day), 0), "missing")) for day in _days(today)],
        }
        for instance_id in sorted(names)
    ]
    return render(request, "backups.html", **paging.shown(instances, "instances"), wanted=wanted)


async def instance_page(request: web.Request) -> web.Response:
    pool = pool_of(request)
    instance_id = int(request.match_info["instance_id"])
    instance = await pool.fetchrow("SELECT id, name FROM instances WHERE id = $1", instance_id)
    if instance is None:
        return render(
            request, "refused.html", status=404, reason=f"no instance {instance_id}", back="/console/backups"
        )
    backups = await pool.fetch(
        """SELECT id, day, generation, state, dump_bytes, object_bytes, parts, pg_version, table_counts,
                  started_at, finished_at, restore_tested_at, error,
                  extract(epoch FROM finished_at - started_at) AS seconds
             FROM backups WHERE instance_id = $1 AND day > now()::date - $2::int
            ORDER BY day DESC, generation DESC""",
        instance_id,
        DAYS + 5,
    )
    return render(request, "backup_instance.html", instance=instance, backups=backups, chart=chart(backups))


def chart(backups: list[Any]) -> dict[str, Any]:
    """The dump size and duration of each day's backup, as SVG polylines (oldest left)."""
    points = [b for b in reversed(backups) if b["dump_bytes"] is not None and b["seconds"] is not None]
    width, height = 600, 120
    if len(points) < 2:
        return {"width": width, "height": height, "size": "", "seconds": "", "count": len(points)}
    top_size = max(b["dump_bytes"] for b in points) or 1
    top_seconds = max(float(b["seconds"]) for b in points) or 1.0
    step = width / (len(points) - 1)

    def line(values: list[float], top: float) -> str:
        return " ".join(
            f"{i * step:.1f},{height - 4 - (v / top) * (height - 8):.1f}" for i, v in enumerate(values)
        )

    return {
        "width": width,
        "height": height,
        "size": line([float(b["dump_bytes"]) for b in points], float(top_size)),
        "seconds": line([float(b["seconds"]) for b in points], top_seconds),
        "count": len(points),
        "top_mb": top_size / 2**20,
        "top_seconds": top_seconds,
    }


async def backup_page(request: web.Request) -> web.Response:
    """One backup: its catalog row, as kept (where its objects are, their checksum and
    parts, the dump's table counts), and when it was last restore-tested."""
    try:
        backup_id = uuid.UUID(request.match_info["backup_id"])
    except ValueError:
        backup_id = uuid.UUID(int=0)
    row = await pool_of(request).fetchrow(
        """SELECT b.*, i.name AS instance_name, extract(epoch FROM b.finished_at - b.started_at) AS seconds
             FROM backups b JOIN instances i ON i.id = b.instance_id WHERE b.id = $1""",
        backup_id,
    )
    if row is None:
        return render(request, "refused.html", status=404, reason="no such backup", back="/console/backups")
    return render(request, "backup.html", backup=row)


async def verify_now(request: web.Request) -> web.Response:
    """Read a backup back now, through the worker's `backups.verify`."""
    require(request, "operator")
    raw = (await request.post()).get("backup_id")
    try:
        backup_id = uuid.UUID(str(raw))
    except ValueError:
        return see_other("/console/backups")
    if not await pool_of(request).fetchval(
        "SELECT EXISTS (SELECT 1 FROM backups WHERE id = $1 AND state IN ('complete', 'verified'))", backup_id
    ):
        reason = "only a complete or verified backup can be read back"
        return render(
            request, "refused.html", status=409, reason=reason, back=f"/console/backups/{backup_id}"
        )
    await asyncio.to_thread(verify.send, str(backup_id))
    await audit(request, "console.backup_verify", "backup", str(backup_id))
    return see_other(f"/console/backups/{backup_id}")


async def run_now(request: web.Request) -> web.Response:
    """Back an instance up for today (Paris) now, through the worker's `backups.run`."""
    require(request, "operator")
    instance_id = await form_id(request, "instance_id")
    if instance_id is None:
        return see_other("/console/backups")
    pool = pool_of(request)
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1)", instance_id):
        return render(
            request, "refused.html", status=404, reason=f"no instance {instance_id}", back="/console/backups"
        )
    day = local_day(await pool.fetchval("SELECT now()"))
    await asyncio.to_thread(run.send, instance_id, day.isoformat())
    await audit(request, "console.backup_now", "instance", str(instance_id), day=day.isoformat())
    return see_other(f"/console/backups/instances/{instance_id}")
