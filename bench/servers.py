"""Run the same load against the bare aiohttp baseline and against `bindery web`."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.common import BINDERY, process, wait_until
from bench.load import Load, PreparedRequests, post_load
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


@dataclass(frozen=True)
class Rounds:
    """Each server's loads, one per round, in the order they ran."""

    bare: list[Load]
    bindery: list[Load]
    seconds: int

    @property
    def bindery_errors(self) -> int:
        return sum(load.errors for load in self.bindery)

    def medians(self) -> tuple[Load, Load]:
        """(bare, bindery): each side's round of median rate (its latencies come with it)."""
        return _median(self.bare), _median(self.bindery)

    def describe(self) -> str:
        ratios = ", ".join(
            f"{ours.requests_per_second / bare.requests_per_second:.2f}"
            for bare, ours in zip(self.bare, self.bindery, strict=True)
        )
        p99s = ", ".join(f"{load.p99_ms:.1f}" for load in self.bindery)
        return (
            f"median of {len(self.bare)} alternating {self.seconds}s rounds (ratios {ratios}; "
            f"bindery's p99 {p99s} ms)"
        )


def _median(loads: list[Load]) -> Load:
    return sorted(loads, key=lambda load: load.requests_per_second)[len(loads) // 2]


def bare_and_bindery(
    env: dict[str, str],
    path: str,
    requests: PreparedRequests,
    *,
    connections: int,
    seconds: int,
    rounds: int = 3,
    sync_first: bool = True,
) -> Rounds:
    """Loads of `requests` on `path`, the bare server and bindery taking turns, `rounds`
    times each: the machine's speed drifts by tens of percent within a minute here, and
    alternating short runs spreads that drift over both sides. When there are several
    requests, each round gets its own share of them (a webhook is not sent twice)."""
    if len(requests) == 1:
        shares = [requests] * rounds
    else:
        size = len(requests) // rounds
        shares = [requests[turn * size : (turn + 1) * size] for turn in range(rounds)]
    loads: dict[str, list[Load]] = {name: [] for name in SERVERS}
    for these in shares:
        for name in SERVERS:
            # Dirty pages other processes left (an install, the previous round's table
            # files) are written back within 30 s, and while they are, every fsync waits
            # behind them: 1.5 GB written just before a run put one round's p99 at 258 ms
            # against 10 ms. Write them out now, before the clock starts.
            if sync_first:
                os.sync()
            with serving(name, env, f"{name}.log") as (base, _):
                load = post_load(f"{base}{path}", these, connections=connections, seconds=seconds)
            loads[name].append(load)
    return Rounds(loads["bare"], loads["bindery"], seconds)
