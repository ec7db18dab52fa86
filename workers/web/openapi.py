"""The OpenAPI description of the HTTP API, built from the job registry so it cannot drift."""

from __future__ import annotations

import functools
from typing import Any

from tasks.billing.inbox import EVENT_ID, MAX_CREATED
from workers.domains import declare_actors
from workers.jobs import JOBS
from workers.web.job_api import IDEMPOTENCY_KEY

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "detail": {}},
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


@functools.cache  # the registry is fixed once the process has imported its tasks
def openapi_document() -> dict[str, Any]:
    declare_actors()  # every job is documented
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"}, "alive")}}
        },
        "/readyz": {
            "get": {
                "summary": "Database and broker reachable",
                "responses": {"200": _json({"type": "object"}, "ready"), **_errors(503)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition", "content": {"text/plain": {}}}},
            }
        },
        "/webhooks/stripe": {
            "post": {
                "summary": "A Stripe event, signed (Stripe-Signature); stored before the 200",
                "parameters": [
                    {
                        "name": "Stripe-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StripeEvent"}}},
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["received", "duplicate"],
                            "properties": {"received": {"type": "boolean"}, "duplicate": {"type": "boolean"}},
                        },
                        "stored (or already known)",
                    ),
                    **_errors(400, 413, 503),
                },
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "summary": "A job's status",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "job_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    }
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Job"}, "the job"),
                    # 405: the path is a job's name (POST only), not an id.
                    **_errors(401, 403, 404, 405, 503),
                },
            }
        },
    }
    for name, spec in sorted(JOBS.items()):
        arguments = spec.arguments.model_json_schema()
        paths[f"/jobs/{name}"] = {
            "post": {
                "summary": spec.description.splitlines()[0] if spec.description else name,
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^" + IDEMPOTENCY_KEY + "$"},
                    }
                ],
                "requestBody": {
                    # An empty body means {}: it is enough for a job without required arguments.
                    "required": bool(arguments.get("required")),
                    "content": {"application/json": {"schema": arguments}},
                },
                "responses": {
                    "202": _json({"$ref": "#/components/schemas/Accepted"}, "queued"),
                    # 404: what the arguments name does not exist (an unknown account…).
                    **_errors(400, 401, 403, 404, 409, 413, 415, 422, 503),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "bindery", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _ERROR,
                # What the receiver checks of an event before storing it (tasks/billing/inbox.py).
                "StripeEvent": {
                    "type": "object",
                    "required": ["id", "object", "type", "created", "data"],
                    "properties": {
                        "id": {"type": "string", "pattern": "^" + EVENT_ID + "$"},
                        "object": {"const": "event"},
                        "type": {"type": "string", "minLength": 1, "maxLength": 255},
                        "created": {"type": "integer", "minimum": 0, "maximum": MAX_CREATED},
                        "livemode": {"type": "boolean"},
                        "data": {
                            "type": "object",
                            "required": ["object"],
                            "properties": {"object": {"type": "object"}},
                        },
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["job_id", "status"],
                    "properties": {
                        "job_id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string"},
                    },
                },
                "Job": {
                    "type": "object",
                    "required": ["job_id", "name", "status"],
                    "properties": {
                        "job_id": {"type": "string", "format": "uuid"},
                        "name": {"type": "string"},
                        "status": {"enum": ["queued", "running", "done", "failed"]},
                        "attempts": {"type": "integer"},
                        "result": {},
                        "error": {"type": ["string", "null"]},
                        "created_at": {"type": ["string", "null"]},
                        "started_at": {"type": ["string", "null"]},
                        "finished_at": {"type": ["string", "null"]},
                    },
                },
            },
        },
    }
