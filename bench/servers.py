"""Run the same load against the bare aiohttp baseline and against `bindery web`."""

from __future__ import annotations

import sys
import urllib.request

from bench.common import BINDERY, process, wait_until
from bench.load import Load, Prepared, post_load
from workers.devstack.servers import free_port

SERVERS = {
    "bare": [sys.executable, "-m", "bench.bare_server"],
    "bindery": [BINDERY, "web", "--port"],
}


def up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def bare_and_bindery(
    env: dict[str, str], path: str, requests: Prepared, *, connections: int, seconds: int
) -> tuple[Load, Load]:
    """(bare, bindery) loads of `requests` on `path`, one server after the other."""
    loads = {}
    for name, argv in SERVERS.items():
        port = free_port()
        with process([*argv, str(port)], env, f"{name}.log"):
            wait_until(lambda: up(f"http://127.0.0.1:{port}/healthz"), 20, name)  # noqa: B023
            loads[name] = post_load(
                f"http://127.0.0.1:{port}{path}", requests, connections=connections, seconds=seconds
            )
    return loads["bare"], loads["bindery"]
