"""A real `bindery web` with the console, and operators made through the CLI."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.http import answers
from tests.processes import BINDERY, bindery, bindery_env, wait_until
from workers.devstack.servers import free_port

PASSWORD = "correct horse battery staple"


def make_operator(
    name: str, role: str, password: str = PASSWORD, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BINDERY, "operator", "create", name, "--role", role, "--password-stdin"],
        input=password + "\n",
        env=env or bindery_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def console_web(logs: Path) -> Iterator[str]:
    """`bindery web`; its base URL once it answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with bindery("web", "--port", str(port), log=logs / "web.log", env=bindery_env()):
        wait_until(lambda: answers(f"{base}/healthz"), 20, "bindery web")
        yield base


def hidden_csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "no CSRF field in the page"
    return match.group(1)
