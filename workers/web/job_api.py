"""`POST /jobs/{name}` and `GET /jobs/{id}`: other services ask bindery for work."""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from uuid import UUID

from aiohttp import web
from prometheus_client import Counter
from pydantic import ValidationError

from workers.card_numbers import holds_card_number, may_hold_card_number
from workers.db import Connection
from workers.job_requests import (
    Accepted,
    IdempotencyConflict,
    Submission,
    fetch_job,
    insert_submissions,
    job_messages,
)
from workers.jobs import JOBS, Conflict
from workers.logs import get_logger
from workers.tokens import TokenIdentity, TokenVerifier
from workers.web.after_commit import send_after_commit
from workers.web.errors import json_error
from workers.web.state import STATE, WebState

log = get_logger(__name__)
JOBS_ACCEPTED = Counter("bindery_jobs_accepted_total", "Job requests accepted.", ["job", "replay"])
# Printable ASCII without space: also the OpenAPI document's pattern (workers/web/openapi.py).
IDEMPOTENCY_KEY = r"[\x21-\x7e]{1,255}"


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _authenticate(request: web.Request, verifier: TokenVerifier) -> TokenIdentity:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    identity = await verifier.verify(token.strip()) if scheme.lower() == "bearer" else None
    if identity is None:
        raise _Refused(
            json_error(
                401,
                "unauthorized",
                "send Authorization: Bearer <token> (bindery token create)",
                headers={"WWW-Authenticate": 'Bearer realm="bindery"'},
            )
        )
    return identity


MAX_NESTING = 32


def _nesting(value: Any) -> int:
    """How deep arrays and objects nest in a decoded JSON value (without recursing)."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            pending += [(child, depth) for child in (item.values() if isinstance(item, dict) else item)]
    return deepest


def _too_deep() -> _Refused:
    # No job takes arguments nested this deep; decoding, validating or storing them recurses.
    # Built only when needed: a response is not free, and most requests never need it.
    return _Refused(json_error(400, "too_deeply_nested", f"arguments nest at most {MAX_NESTING} levels deep"))


async def _read_arguments(request: web.Request) -> dict[str, Any]:
    body = await request.read()  # raises 413 past the app's client_max_size
    if not body.strip():
        return {}
    if request.content_type != "application/json":
        raise _Refused(json_error(415, "unsupported_media_type", "send application/json"))
    try:
        arguments = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Refused(json_error(400, "malformed_json", "the body is not valid JSON")) from None
    except RecursionError:
        raise _too_deep() from None
    if _nesting(arguments) > MAX_NESTING:
        raise _too_deep()
    if not isinstance(arguments, dict):
        raise _Refused(json_error(422, "invalid_arguments", "the body must be a JSON object"))
    return arguments


_CARD_NUMBER = {"loc": [], "msg": "an argument holds what looks like a card number", "type": "card_number"}


async def submit_job(request: web.Request) -> web.Response:
    state: WebState = request.app[STATE]
    name = request.match_info["name"]
    try:
        identity = await _authenticate(request, state.verifier)
        spec = JOBS.get(name)
        if spec is None:
            return json_error(404, "unknown_job", {"known": sorted(JOBS)})
        if not identity.allows(spec.scope):
            return json_error(403, "forbidden", f"this token lacks the {spec.scope!r} scope")
        key = request.headers.get("Idempotency-Key")
        if key is not None and not re.fullmatch(IDEMPOTENCY_KEY, key):
            return json_error(400, "bad_idempotency_key", "1-255 printable ASCII characters")
        raw = await _read_arguments(request)
    except _Refused as refused:
        return refused.response
    try:
        arguments = spec.arguments.model_validate(raw)
    except ValidationError as error:
        # Field errors without the input values: those may be personal data.
        fields = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in error.errors(include_input=False, include_url=False)
        ]
        return json_error(422, "invalid_arguments", fields)
    if spec.precheck is not None and (refusal := await spec.precheck(state.pool, arguments)):
        if isinstance(refusal, Conflict):
            return json_error(409, "conflict", refusal.message)
        return json_error(404, "not_found", refusal)
    stored = arguments.model_dump(mode="json")
    # What the arguments hold is stored in the job's row: never a card number, even as an id.
    if may_hold_card_number(await request.read()) and holds_card_number(stored):
        return json_error(422, "invalid_arguments", [_CARD_NUMBER])

    outcome = await state.submissions.submit(Submission(name, stored, identity.token_id, key))
    if isinstance(outcome, IdempotencyConflict):
        return json_error(409, "idempotency_conflict", str(outcome))
    _accepted(name, outcome.created).inc()
    return web.json_response(
        {"job_id": str(outcome.job_id), "status": outcome.status},
        status=202,
        headers={"Location": f"/jobs/{outcome.job_id}"},
    )


@functools.cache
def _accepted(name: str, created: bool) -> Any:
    """The counter of one job and outcome, looked up once (`labels()` validates and locks
    on every call). Names come from the job registry, so the cache stays small."""
    return JOBS_ACCEPTED.labels(job=name, replay=str(not created).lower())


async def job_status(request: web.Request) -> web.Response:
    state: WebState = request.app[STATE]
    try:
        identity = await _authenticate(request, state.verifier)
    except _Refused as refused:
        return refused.response
    try:
        job_id = UUID(request.match_info["job_id"])
    except ValueError:
        return json_error(404, "unknown_job_id")
    row = await fetch_job(state.pool, job_id)
    if row is None or row["name"] not in JOBS:
        return json_error(404, "unknown_job_id")
    if not identity.allows(JOBS[row["name"]].scope):
        return json_error(403, "forbidden", "this token lacks the job's scope")
    return web.json_response(
        {
            "job_id": str(row["id"]),
            "name": row["name"],
            "status": row["status"],
            "attempts": row["attempts"],
            "result": row["result"],
            "error": row["error"],
            **{
                field: row[field].isoformat() if row[field] else None
                for field in ("created_at", "started_at", "finished_at")
            },
        }
    )


async def flush_submissions(
    state: WebState, conn: Connection, batch: list[Submission]
) -> list[Accepted | IdempotencyConflict]:
    """One INSERT for the batch; then, after commit, send the new jobs' messages."""
    results = await insert_submissions(conn, batch)
    created = [
        (submission.name, result.job_id)
        for submission, result in zip(batch, results, strict=True)
        if isinstance(result, Accepted) and result.created
    ]
    if created:
        send_after_commit(state, job_messages(created))
    return results
