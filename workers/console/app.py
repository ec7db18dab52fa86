"""The operator console, under /console/ on the web process: server-rendered pages
(aiohttp-jinja2, autoescaped) behind a login, every state-changing request a POST with
the session's CSRF token.

The frame is here: login and logout, sessions, CSRF, the security headers every console
response carries, and the overview, whose lines each domain contributes (`status` in
its `console` module). Customer values reach a page only through the templates'
autoescaping; no script runs inline (the Content-Security-Policy forbids it).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from workers.audit_log import AuditRecord, write_audit
from workers.broker import queue_depths
from workers.console import jobs_page
from workers.console.login_limits import record_failure, too_many_failures
from workers.console.operators import check_password
from workers.console.pages import NAVIGATION, SESSION, SETTINGS, NotAllowed, render, see_other
from workers.console.sessions import COOKIE, close_session, find_session, open_session
from workers.console.status import Status, queues_status
from workers.domains import domain_console
from workers.settings import Settings
from workers.web.state import STATE

HERE = Path(__file__).parent
STATUS_LINES = web.AppKey("console_status_lines", list)  # each domain's `status(pool)`
LOGIN_CSRF = "bindery_console_login"  # the login form's own token, before any session
MAX_FORM = 16 * 1024
OPEN_PATHS = frozenset({"/console/login"})
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)  # a page may be stricter, or framed by its own
    return response


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A page needs a session; a POST needs the session's CSRF token too (the login form,
    its own). Anything else is sent to the login page, or refused with 403."""
    if request.path.startswith("/console/static/"):
        return await handler(request)
    if request.method == "POST" and request.content_length is not None and request.content_length > MAX_FORM:
        return _plain(413, "form too large")
    if request.path in OPEN_PATHS:
        return await handler(request)
    session = await find_session(request.config_dict[STATE].pool, request.cookies.get(COOKIE, ""))
    if session is None:
        if request.method == "POST":
            return _plain(403, "not signed in")
        return see_other("/console/login")
    if request.method == "POST" and not _same(await _field(request, "csrf_token"), session.csrf_token):
        return _plain(403, "the form's CSRF token is missing or wrong: reload the page")
    request[SESSION] = session
    try:
        return await handler(request)
    except NotAllowed as refused:
        return _plain(403, str(refused))


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def _field(request: web.Request, name: str) -> str | None:
    form = await request.post()
    value = form.get(name)
    return value if isinstance(value, str) else None


def _client_ip(request: web.Request) -> str | None:
    """The address failures are counted against: the peer's, or behind a trusted proxy the
    last address it added to X-Forwarded-For."""
    settings = request.app[SETTINGS]
    peer = request.remote
    if settings.trust_proxy and peer is not None:
        forwarded = [v.strip() for h in request.headers.getall("X-Forwarded-For", []) for v in h.split(",")]
        if forwarded:
            peer = forwarded[-1]
    try:
        return str(ipaddress.ip_address(peer or ""))
    except ValueError:
        return None


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/console/",
        httponly=True,
        samesite="Strict",
        secure=request.app[SETTINGS].is_production,
    )


async def login_page(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(LOGIN_CSRF) or secrets.token_urlsafe(32)
    response = aiohttp_jinja2.render_template("login.html", request, {"csrf_token": token, "error": None})
    _set_cookie(request, response, LOGIN_CSRF, token)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    pool = request.config_dict[STATE].pool
    token = request.cookies.get(LOGIN_CSRF, "")
    if not token or not _same(await _field(request, "csrf_token"), token):
        return _plain(403, "the form's CSRF token is missing or wrong: reload the page")
    name = (await _field(request, "username") or "").strip().lower()
    password = await _field(request, "password") or ""
    client_ip = _client_ip(request)
    if await too_many_failures(pool, name, client_ip):
        return _login_failed(request, token, 429, "Too many failed attempts: wait 15 minutes.")
    operator = await check_password(pool, name, password)
    if operator is None:
        await record_failure(pool, name, client_ip)
        return _login_failed(request, token, 401, "Wrong name or password.")
    session_token = await open_session(pool, operator)
    await write_audit(
        pool, AuditRecord(f"operator:{operator.name}", "console.login", "operator", str(operator.id))
    )
    response = see_other("/console/")
    _set_cookie(request, response, COOKIE, session_token)
    response.del_cookie(LOGIN_CSRF, path="/console/")
    return response


def _login_failed(request: web.Request, token: str, status: int, error: str) -> web.StreamResponse:
    return aiohttp_jinja2.render_template(
        "login.html", request, {"csrf_token": token, "error": error}, status=status
    )


async def logout(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    await close_session(request.config_dict[STATE].pool, request.cookies.get(COOKIE, ""))
    await write_audit(
        request.config_dict[STATE].pool,
        AuditRecord(
            f"operator:{session.operator.name}", "console.logout", "operator", str(session.operator.id)
        ),
    )
    response = see_other("/console/login")
    response.del_cookie(COOKIE, path="/console/")
    return response


async def overview(request: web.Request) -> web.StreamResponse:
    pool = request.config_dict[STATE].pool
    lines: list[Status] = []
    for status in request.app[STATUS_LINES]:
        lines.extend(await status(pool))
    lines.extend(await queues_status(pool, await _depths(request)))
    return render(request, "overview.html", lines=lines)


async def _depths(request: web.Request) -> dict[str, int] | None:
    state = request.config_dict[STATE]
    try:
        return await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(state.executor, queue_depths, state.broker), 2.0
        )
    except Exception:  # the overview says the broker did not answer; /readyz says more
        return None


def console_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[security_headers, signed_in], client_max_size=MAX_FORM)
    app[SETTINGS] = settings
    domains = domain_console()  # looked up once: every page view would look again
    app[STATUS_LINES] = [module.status for module in domains]
    pages = [*(module for module in domains if hasattr(module, "routes")), jobs_page]
    app[NAVIGATION] = [("Overview", "/console/"), *(module.NAV for module in pages if hasattr(module, "NAV"))]
    # The frame's folder first; the jobs page is the frame's own, its templates there too.
    folders = list(
        dict.fromkeys([HERE / "templates", *(Path(str(m.__file__)).parent / "templates" for m in pages)])
    )
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(folders),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", overview)
    for module in pages:
        module.routes(app.router)
    app.router.add_static("/static/", HERE / "static")
    return app
