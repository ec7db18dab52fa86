"""The baseline: bare aiohttp handlers that parse the JSON body and answer (202 for a job,
200 for a webhook), served the way `bindery web` is (one process, web.run_app, no access log)."""

from __future__ import annotations

import sys
import uuid

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.json()
    return web.json_response({"job_id": str(uuid.uuid4()), "status": "queued"}, status=202)


async def accept_event(request: web.Request) -> web.Response:
    await request.json()
    return web.json_response({"received": True, "duplicate": False})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/jobs/{name}", accept)
    app.router.add_post("/webhooks/stripe", accept_event)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
