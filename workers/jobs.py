"""Jobs other services may ask for through `POST /jobs/{name}`, and the actor that runs each.

A job is declared next to its domain with `@job(...)`: its name, the scope a token
needs, a pydantic model of its arguments, and its queue. The broker message carries
only job ids (several of the same job when they were sent together, see
workers/shared_messages.py); the actor loads each row, runs the plain async handler,
and records the outcome on the row, so `GET /jobs/{id}` can say where it stands.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from uuid import UUID

import asyncpg
import dramatiq
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

import workers.broker  # noqa: F401  (Dramatiq's global broker must exist before actors are declared)
from workers.audit_log import AuditRecord
from workers.db import quote_identifier
from workers.errors import JobError, Refused
from workers.logs import get_logger
from workers.queues import policy
from workers.resources import Resources, current_resources
from workers.shared_messages import run_each

log = get_logger(__name__)

Args = TypeVar("Args", bound=BaseModel)
Handler = Callable[[Resources, Any], Awaitable["dict[str, Any] | Done | None"]]
# Checked when the job is asked for: a message when what it names does not exist (→ 404),
# a `Conflict` when it cannot be done now (→ 409).
Precheck = Callable[[asyncpg.Pool, Any], Awaitable["str | Conflict | None"]]
SCOPES = ("system", "billing", "erasure", "backups", "privacy")
# "domain.action": the dot keeps a job's URL apart from a job id's (workers/web/app.py).
JOB_NAME = r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+"


def _integer(value: Any) -> Any:
    """JSON's integers, 7.0 included (JSON Schema counts it one); never true or "7"."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


# A row id as the API accepts it: an integer, positive, within Postgres's bigint.
RowId = Annotated[int, Field(gt=0, le=2**63 - 1), BeforeValidator(_integer)]


class JobArguments(BaseModel):
    """Base of every job's argument model: unknown fields are an error, not ignored, and
    values are taken as their JSON type says (`true` is no account id, "7" no number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


@dataclass(frozen=True)
class Conflict:
    """A precheck's answer when the job cannot be done in the state things are in."""

    message: str


@dataclass(frozen=True)
class Done:
    """What a handler may return instead of its bare result: the result, and audit records
    that commit with the job's "done" mark (one write instead of two, and the record
    exists exactly when the job is done)."""

    result: dict[str, Any]
    audit: tuple[AuditRecord, ...] = ()


@dataclass(frozen=True)
class JobSpec:
    name: str
    scope: str
    arguments: type[JobArguments]
    queue: str
    actor: dramatiq.Actor[Any, Any]
    description: str
    precheck: Precheck | None = None


JOBS: dict[str, JobSpec] = {}


def row_must_exist(table: str, field: str) -> Precheck:
    """A precheck: the row of `table` whose id is the argument `field` must exist, else the
    API answers 404 (`accounts`/`account_id`: "unknown account 7")."""
    # Both names are ours, from the job's declaration, never from a request.
    query = f"SELECT 1 FROM {quote_identifier(table)} WHERE id = $1"  # nosec B608
    what = table.removesuffix("s")

    async def precheck(pool: asyncpg.Pool, arguments: JobArguments) -> str | None:
        row_id = getattr(arguments, field)
        return None if await pool.fetchval(query, row_id) else f"unknown {what} {row_id}"

    return precheck


# Who asked for the job being run ('token:<id>'), for handlers that audit it, and its id.
_requester: ContextVar[str] = ContextVar("job_requester", default="api")
_job_id: ContextVar[UUID | None] = ContextVar("job_id", default=None)


def current_requester() -> str:
    return _requester.get()


def current_job_id() -> UUID | None:
    return _job_id.get()


def job(
    name: str,
    *,
    scope: str,
    arguments: type[JobArguments],
    queue: str = "default",
    precheck: Precheck | None = None,
) -> Callable[[Handler], Handler]:
    """Declare a job; the decorated `async def handler(resources, arguments)` stays plain."""
    if scope not in SCOPES:
        raise ValueError(f"job {name}: unknown scope {scope!r}")
    if not re.fullmatch(JOB_NAME, name):
        raise ValueError(f"job {name!r}: a name is lowercase words joined by dots, e.g. system.ping")
    queue_policy = policy(queue)

    def declare(handler: Handler) -> Handler:
        async def run(*job_ids: str) -> None:
            ids = [UUID(job_id) for job_id in job_ids]
            await run_jobs(current_resources(), ids, handler, arguments, queue_policy.max_retries)

        run.__name__ = name.replace(".", "_")
        actor = dramatiq.actor(actor_name=name, queue_name=queue, **queue_policy.actor_options())(run)
        description = (handler.__doc__ or "").strip()
        JOBS[name] = JobSpec(name, scope, arguments, queue, actor, description, precheck)
        return handler

    return declare


def describe_error(error: BaseException) -> str:
    """What may be stored about a failure: our own messages, else only the exception's type
    (a driver's message can quote the row it choked on)."""
    if isinstance(error, JobError):
        return str(error)
    return type(error).__name__


async def run_jobs(
    resources: Resources,
    job_ids: list[UUID],
    handler: Handler,
    arguments: type[BaseModel],
    max_retries: int,
) -> None:
    """Run the jobs of one message side by side (workers/shared_messages.py); a retry of the
    message runs only those not finished, and each job's attempts decide when it fails."""
    await run_each(run_job(resources, job_id, handler, arguments, max_retries) for job_id in job_ids)


async def run_job(
    resources: Resources,
    job_id: UUID,
    handler: Handler,
    arguments: type[BaseModel],
    max_retries: int,
) -> None:
    """Run one job. A job already done or failed is left alone, so a duplicate message is harmless."""
    row = await resources.job_rows.claim(job_id)
    if row is None:
        log.info("job already finished or unknown", job_id=str(job_id))
        return
    try:
        requester = f"token:{row.token_id}" if row.token_id is not None else "api"
        token, job_token = _requester.set(requester), _job_id.set(job_id)
        try:
            outcome = await handler(resources, arguments.model_validate(row.arguments))
        finally:
            _requester.reset(token)
            _job_id.reset(job_token)
    except Exception as error:
        final = isinstance(error, Refused) or row.attempts > max_retries
        await resources.pool.execute(
            """
            UPDATE jobs SET status = $2, error = $3, updated_at = now(),
                   finished_at = CASE WHEN $2 = 'failed' THEN now() END
             WHERE id = $1 AND status = 'running'
            """,
            job_id,
            "failed" if final else "queued",
            describe_error(error),
        )
        log.warning("job attempt failed", job_id=str(job_id), attempt=row.attempts, final=final)
        if final:
            return
        raise
    done = outcome if isinstance(outcome, Done) else Done(outcome or {})
    await resources.job_rows.finish(job_id, done.result, done.audit)
