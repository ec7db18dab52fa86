"""The baseline: a bare aiohttp handler that parses the JSON body and answers 202,
served the way `bindery web` is (one process, web.run_app, no access log)."""

from __future__ import annotations

import sys
import uuid

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.json()
    return web.json_response({"job_id": str(uuid.uuid4()), "status": "queued"}, status=202)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/jobs/{name}", accept)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
