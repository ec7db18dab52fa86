"""The baseline: bare aiohttp handlers that parse the JSON body and answer (202 for a job,
200 for a webhook), and one that asks Postgres `SELECT 1` and answers a small HTML page
(the console's baseline), served the way `bindery web` is (one process, web.run_app, no
access log)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

POOL = web.AppKey("pool", asyncpg.Pool)


async def accept(request: web.Request) -> web.Response:
    await request.json()
    return web.json_response({"job_id": str(uuid.uuid4()), "status": "queued"}, status=202)


async def accept_event(request: web.Request) -> web.Response:
    await request.json()
    return web.json_response({"received": True, "duplicate": False})


async def select_one(request: web.Request) -> web.Response:
    value = await request.app[POOL].fetchval("SELECT 1")
    return web.Response(text=f"<!doctype html><p>{value}</p>", content_type="text/html")


async def database(app: web.Application) -> AsyncIterator[None]:
    app[POOL] = await asyncpg.create_pool(os.environ["BENCH_SELECT_ONE_URL"], min_size=1, max_size=10)
    yield
    await app[POOL].close()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/jobs/{name}", accept)
    app.router.add_post("/webhooks/stripe", accept_event)
    app.router.add_get("/healthz", healthz)
    if "BENCH_SELECT_ONE_URL" in os.environ:  # the console benchmark's baseline only
        app.cleanup_ctx.append(database)
        app.router.add_get("/select1", select_one)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
