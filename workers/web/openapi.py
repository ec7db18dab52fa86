"""The OpenAPI description of the HTTP API, built from the job registry and the domains'
routes so it cannot drift."""

from __future__ import annotations

import functools
from typing import Any

from workers.domains import declare_actors, domain_routes
from workers.jobs import JOBS, JobSpec
from workers.web.job_api import IDEMPOTENCY_KEY

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "detail": {}},
}


def error_responses(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


@functools.cache  # the registry is fixed once the process has imported its tasks
def openapi_document() -> dict[str, Any]:
    declare_actors()  # every job is documented
    paths = {**_probe_paths(), **_job_status_path()}
    schemas = {"Error": _ERROR, **_job_schemas()}
    for routes in domain_routes():
        paths.update(routes.openapi_paths())
        schemas.update(routes.openapi_schemas())
    paths.update({f"/jobs/{name}": _job_path(name, spec) for name, spec in sorted(JOBS.items())})
    return {
        "openapi": "3.1.0",
        "info": {"title": "bindery", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    }


def _probe_paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": {"summary": "Liveness", "responses": {"200": json_response({"type": "object"}, "alive")}}
        },
        "/readyz": {
            "get": {
                "summary": "Database and broker reachable",
                "responses": {"200": json_response({"type": "object"}, "ready"), **error_responses(503)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition", "content": {"text/plain": {}}}},
            }
        },
    }


def _job_status_path() -> dict[str, Any]:
    job_id = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    return {
        "/jobs/{job_id}": {
            "get": {
                "summary": "A job's status",
                "security": [{"bearer": []}],
                "parameters": [job_id],
                "responses": {
                    "200": json_response({"$ref": "#/components/schemas/Job"}, "the job"),
                    # 405: the path is a job's name (POST only), not an id.
                    **error_responses(401, 403, 404, 405, 503),
                },
            }
        }
    }


def _job_path(name: str, spec: JobSpec) -> dict[str, Any]:
    arguments = spec.arguments.model_json_schema()
    key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": "^" + IDEMPOTENCY_KEY + "$"},
    }
    return {
        "post": {
            "summary": spec.description.splitlines()[0] if spec.description else name,
            "security": [{"bearer": []}],
            "parameters": [key],
            "requestBody": {
                # An empty body means {}: it is enough for a job without required arguments.
                "required": bool(arguments.get("required")),
                "content": {"application/json": {"schema": arguments}},
            },
            "responses": {
                "202": json_response({"$ref": "#/components/schemas/Accepted"}, "queued"),
                # 404: what the arguments name does not exist (an unknown account…); 409: an
                # idempotency key reused with other arguments, or a job that cannot be done now
                # (an export of an account being erased).
                **error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
            },
        }
    }


def _job_schemas() -> dict[str, Any]:
    uuid = {"type": "string", "format": "uuid"}
    moment = {"type": ["string", "null"]}
    return {
        "Accepted": {
            "type": "object",
            "required": ["job_id", "status"],
            "properties": {"job_id": uuid, "status": {"type": "string"}},
        },
        "Job": {
            "type": "object",
            "required": ["job_id", "name", "status"],
            "properties": {
                "job_id": uuid,
                "name": {"type": "string"},
                "status": {"enum": ["queued", "running", "done", "failed"]},
                "attempts": {"type": "integer"},
                "result": {},
                "error": {"type": ["string", "null"]},
                "created_at": moment,
                "started_at": moment,
                "finished_at": moment,
            },
        },
    }
