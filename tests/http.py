"""A tiny blocking HTTP client for tests that drive real `bindery web` processes."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.processes import bindery, wait_until
from workers.devstack.servers import free_port


def call(
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        return call("GET", url, context=context)[0] == 200
    except (OSError, ValueError):
        return False


def finished_job(base: str, job_id: str, headers: dict[str, str], timeout: float, what: str) -> Any:
    """Poll `GET /jobs/{job_id}` until the job is done or failed; its last status document."""

    def finished() -> Any:
        job = call("GET", f"{base}/jobs/{job_id}", headers=headers)[2]
        return job if job["status"] in ("done", "failed") else None

    return wait_until(finished, timeout, what, interval=0.2)


@contextmanager
def web_and_worker(logs: Path, env: dict[str, str]) -> Iterator[str]:
    """`bindery web` and a one-process `bindery worker` (logs in `logs`); the web's base
    URL, once it answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (
        bindery("web", "--port", str(port), log=logs / "web.log", env=env),
        bindery("worker", "--processes", "1", "--threads", "2", log=logs / "worker.log", env=env),
    ):
        wait_until(lambda: answers(f"{base}/healthz"), 20, "bindery web")
        yield base
