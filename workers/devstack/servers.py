"""Start a stand-in server as a subprocess and wait until its port answers."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


class ServerError(Exception):
    """A stand-in did not start; the message says which and where its log is."""


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@contextmanager
def running(
    name: str, command: Sequence[str], port: int, log_file: Path, *, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends; its output goes to `log_file`."""
    if port_open("127.0.0.1", port):
        raise ServerError(f"{name}: port {port} is already in use")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("wb") as log:
        # bandit: argv built by workers/devstack/commands.py, no shell
        process = subprocess.Popen(  # nosec B603
            list(command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        if not wait_for_port("127.0.0.1", port, timeout, process):
            raise ServerError(f"{name} did not start on port {port}; see {log_file}")
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def free_port_block(offsets: Sequence[int]) -> int:
    """A base port whose base + each offset is free (SeaweedFS derives its ports from one)."""
    rng = secrets.SystemRandom()
    for _ in range(200):
        base = rng.randrange(20_000, 30_000)
        if not any(port_open("127.0.0.1", base + offset) for offset in offsets):
            return base
    raise ServerError("no free block of ports")
