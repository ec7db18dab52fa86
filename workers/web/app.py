"""The aiohttp application factory and the process's probes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dramatiq
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from dramatiq.brokers.redis import RedisBroker
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from workers import broker as broker_module
from workers.batching import PooledBatcher
from workers.console.app import console_app
from workers.db import create_pool
from workers.domains import declare_actors, domain_routes
from workers.enqueue import AsyncRedisEnqueuer
from workers.gc_pauses import freeze_startup_objects
from workers.jobs import JOB_NAME
from workers.settings import Settings
from workers.tokens import TokenVerifier
from workers.web import https
from workers.web.after_commit import outbox
from workers.web.errors import error_response
from workers.web.job_api import flush_submissions, job_status, submit_job
from workers.web.openapi import openapi_document
from workers.web.state import STATE, WebState

MAX_BODY = 1024 * 1024  # the Stripe webhook contract's 1 MiB; job arguments are far smaller
PROBE_TIMEOUT = 2.0

REQUESTS = Counter("bindery_http_requests_total", "HTTP requests.", ["route", "method", "status"])
LATENCY = Histogram(
    "bindery_http_request_seconds",
    "HTTP request latency.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes JSON, and every response is counted and timed (one middleware:
    each layer costs a few percent of the request rate)."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except Exception as error:
        response = error_response(request, error)
    # The route template, never the raw path: labels stay few and carry no ids.
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    method = request.method if request.method in _METHODS else "other"  # clients cannot invent labels
    requests, latency = _metrics(route, method, response.status)
    requests.inc()
    latency.observe(time.perf_counter() - started)
    return response


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.cache
def _metrics(route: str, method: str, status: int) -> tuple[Any, Any]:
    """The labelled series of one kind of request, looked up once (`labels()` validates
    and locks on every call). Every argument comes from a small set, so the cache stays small."""
    return REQUESTS.labels(route=route, method=method, status=str(status)), LATENCY.labels(route=route)


async def to_console(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/console/"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state: WebState = request.app[STATE]
    checks = {
        "database": _probe(state.pool.fetchval("SELECT 1")),
        "broker": _probe(
            asyncio.get_running_loop().run_in_executor(
                state.executor, functools.partial(broker_module.ping, state.broker)
            )
        ),
    }
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    if all(ok for ok in results.values()):
        return web.json_response({"status": "ready", "database": "ok", "broker": "ok"})
    failed = [name for name, ok in results.items() if not ok]
    return web.json_response(
        {"error": "not_ready", "detail": {name: "unreachable" for name in failed}}, status=503
    )


async def _probe(awaitable: Awaitable[object]) -> bool:
    try:
        await asyncio.wait_for(awaitable, PROBE_TIMEOUT)
    except Exception:
        return False
    return True


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(settings: Settings, broker: dramatiq.Broker | None = None) -> web.Application:
    declare_actors()  # the job registry the API serves
    middlewares: list[Middleware] = [observe]
    forwarded = https.forwarded_https_only(settings)
    if forwarded is not None:
        middlewares.insert(0, forwarded)
    app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)

    async def open_state(app: web.Application) -> AsyncIterator[None]:
        # min_size=0: the process starts, and answers 503, while the database is down.
        pool = await create_pool(
            settings.database_url, min_size=0, max_size=10, application_name="bindery-web"
        )
        the_broker = broker or broker_module.broker
        state = WebState(
            settings=settings,
            pool=pool,
            broker=the_broker,
            verifier=TokenVerifier(pool, cache_seconds=settings.api_token_cache_seconds),
            submissions=PooledBatcher(pool, lambda conn, batch: flush_submissions(state, conn, batch)),
            executor=ThreadPoolExecutor(max_workers=4, thread_name_prefix="broker"),
            enqueuer=AsyncRedisEnqueuer(the_broker) if isinstance(the_broker, RedisBroker) else None,
        )
        state.outbox = outbox(state)
        app[STATE] = state
        yield
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.outbox.idle(), 5)
        state.executor.shutdown(wait=False)
        if state.enqueuer is not None:
            await state.enqueuer.close()
        await pool.close()

    app.cleanup_ctx.append(open_state)
    if settings.is_production:
        app.on_response_prepare.append(https.add_hsts)
    app.add_subapp("/console/", console_app(settings))
    app.router.add_get("/console", to_console)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    # Job names hold a dot and ids never do: each URL matches one route, so a 405's
    # Allow header names exactly the methods of that resource.
    app.router.add_post("/jobs/{name:" + JOB_NAME + "}", submit_job)
    app.router.add_get(r"/jobs/{job_id:[^/.]+}", job_status)
    for routes in domain_routes():
        routes.register(app)  # after open_state: a domain's context may use the state
    return app


def serve(settings: Settings, host: str, port: int) -> None:
    app = create_app(settings)
    freeze_startup_objects()
    web.run_app(
        app,
        host=host,
        port=port,
        ssl_context=https.ssl_context(settings),
        access_log=None,
        shutdown_timeout=5,
        print=None,
    )
