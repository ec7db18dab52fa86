"""Run `bindery` itself in subprocesses, as production does, and wait on conditions."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workers.devstack.servers import stop

BINDERY = str(Path(sys.executable).parent / "bindery")


class _Deadline:
    """Polls a condition until it is truthy; the test fails once `timeout` has passed."""

    def __init__(self, condition: Callable[[], Any], timeout: float, what: str) -> None:
        self.condition, self.timeout, self.what = condition, timeout, what
        self.deadline = time.monotonic() + timeout

    def poll(self) -> Any:
        return self.check(self.condition())

    def check(self, value: Any) -> Any:
        if not value and time.monotonic() > self.deadline:
            raise AssertionError(f"timed out after {self.timeout}s waiting for {self.what}")
        return value


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = _Deadline(condition, timeout, what)
    while not (value := deadline.poll()):
        time.sleep(interval)
    return value


async def equals(value: Awaitable[Any], expected: Any) -> bool:
    """For `eventually`: whether an awaited value (a state read from the database) is `expected`."""
    return bool(await value == expected)


async def eventually(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """`wait_until` for async tests: sleeps without blocking the event loop under test.
    `condition` may be a coroutine function."""
    deadline = _Deadline(condition, timeout, what)
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if deadline.check(value):
            return value
        await asyncio.sleep(interval)


def bindery_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.update(overrides)
    return env


@contextmanager
def bindery(*args: str, log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`bindery ARGS…` in its own process group, stopped with SIGTERM (then SIGKILL) at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [BINDERY, *args],
            env=env or bindery_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process, timeout=15)


def run_bindery(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BINDERY, *args], env=env or bindery_env(), capture_output=True, text=True, timeout=timeout
    )
