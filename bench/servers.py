"""Run the same load against the bare aiohttp baseline and against `bindery web`."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from bench.common import BINDERY, process, wait_until
from bench.load import Load, Prepared, post_load
from workers.devstack.servers import free_port

SERVERS = {
    "bare": [sys.executable, "-m", "bench.bare_server"],
    "bindery": [BINDERY, "web", "--port"],
}


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def serving(name: str, env: dict[str, str], log_name: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The `name` server on a free port, once it answers; (its base URL, its process)."""
    port = free_port()
    with process([*SERVERS[name], str(port)], env, log_name) as server:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(f"{base}/healthz"), 20, name)
        yield base, server


def bare_and_bindery(
    env: dict[str, str], path: str, requests: Prepared, *, connections: int, seconds: int
) -> tuple[Load, Load]:
    """(bare, bindery) loads of `requests` on `path`, one server after the other."""
    loads = {}
    for name in SERVERS:
        with serving(name, env, f"{name}.log") as (base, _):
            loads[name] = post_load(f"{base}{path}", requests, connections=connections, seconds=seconds)
    return loads["bare"], loads["bindery"]
