"""What a domain's console pages use: the signed-in operator, rendering with the frame's
layout, a role check for actions, the audit record of an action, paging.

A domain with pages has, in its `console` module, `NAV` (its menu entry: label, path)
and `routes(router)`, which adds its handlers under /console/; its templates live in
its own `templates/` folder and extend the frame's `base.html`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
import asyncpg
from aiohttp import web
from pydantic import ValidationError

from workers.audit_log import AuditRecord, write_audit
from workers.console.operators import Operator
from workers.console.sessions import Session
from workers.job_requests import Accepted, Submission, insert_submissions, send_jobs_in_thread
from workers.jobs import JOBS, Conflict
from workers.settings import Settings
from workers.web.state import STATE

SESSION = web.RequestKey("console_session", Session)
SETTINGS = web.AppKey("console_settings", Settings)
NAVIGATION = web.AppKey("console_navigation", list)
PAGE_SIZE = 50


def pool_of(request: web.Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.config_dict[STATE].pool
    return pool


def settings_of(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def operator_of(request: web.Request) -> Operator:
    return request[SESSION].operator


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    """A signed-in page: the template gets the operator, the CSRF token for its forms and
    the menu, with `values`."""
    session = request[SESSION]
    context = {
        "operator": session.operator,
        "csrf_token": session.csrf_token,
        "navigation": request.app[NAVIGATION],
        **values,
    }
    return aiohttp_jinja2.render_template(template, request, context, status=status)


class NotAllowed(Exception):
    """The operator's role does not allow the action."""


def require(request: web.Request, role: str) -> Operator:
    operator = operator_of(request)
    if not operator.may(role):
        raise NotAllowed(f"a {operator.role} cannot do this: it needs the {role} role")
    return operator


async def audit(
    request: web.Request, action: str, subject_type: str, subject_id: str, **details: Any
) -> None:
    operator = operator_of(request)
    record = AuditRecord(f"operator:{operator.name}", action, subject_type, subject_id, details or None)
    await write_audit(pool_of(request), record)


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


MAX_ID = 2**63 - 1  # Postgres's bigint
DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() takes "²", which int() refuses


async def form_id(request: web.Request, name: str) -> int | None:
    """The positive row id the posted form gives as `name`, or None."""
    raw = (await request.post()).get(name)
    if isinstance(raw, str) and DIGITS.fullmatch(raw) and 0 < int(raw) <= MAX_ID:
        return int(raw)
    return None


@dataclass(frozen=True)
class Paging:
    page: int  # from 1
    size: int = PAGE_SIZE

    @classmethod
    def of(cls, request: web.Request) -> Paging:
        raw = request.query.get("page", "1")
        return cls(int(raw) if DIGITS.fullmatch(raw) and 0 < int(raw) < 100_000 else 1)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def limit(self) -> int:
        """Rows to ask for: a page and one more, which says whether there is a next."""
        return self.size + 1

    def shown(self, rows: list[Any], name: str) -> dict[str, Any]:
        """What a page's template gets of a list: its rows as `name`, the page, whether more."""
        return {name: rows[: self.size], "page": self.page, "more": len(rows) > self.size}


async def ask_job(request: web.Request, name: str, arguments: dict[str, Any]) -> str | None:
    """Ask for a job as the job API does (the same validation and precheck, a job row, its
    message), audited as the operator's; why not, or None once it is queued."""
    spec = JOBS[name]
    try:
        checked = spec.arguments.model_validate(arguments)
    except ValidationError as error:
        return "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False)
        )
    if spec.precheck is not None and (refusal := await spec.precheck(pool_of(request), checked)):
        return refusal.message if isinstance(refusal, Conflict) else refusal
    [accepted] = await insert_submissions(
        pool_of(request), [Submission(name, checked.model_dump(mode="json"), None, None)]
    )
    assert isinstance(accepted, Accepted)  # no idempotency key: no conflict
    await send_jobs_in_thread([(name, accepted.job_id)])
    await audit(request, "console.job", "job", str(accepted.job_id), name=name)
    return None
