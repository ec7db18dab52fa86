"""The command lines of the local stand-ins, shared by `bindery dev`, the tests and the benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path


def smtp_sink(port: int, directory: Path, *faults: str) -> list[str]:
    """The SMTP sink; `faults` are its misbehaviour options (see workers/devstack/smtp_sink.py)."""
    return [
        sys.executable,
        "-m",
        "workers.devstack.smtp_sink",
        "--port",
        str(port),
        "--dir",
        str(directory),
        *faults,
    ]


def localstripe(port: int) -> list[str]:
    """localstripe, in memory only (workers/devstack/localstripe_in_memory.py)."""
    module = "workers.devstack.localstripe_in_memory"
    return [sys.executable, "-m", module, "--port", str(port), "--from-scratch"]


def stripe_extras(port: int, localstripe_port: int, *webhooks: str) -> list[str]:
    """What localstripe lacks, served in front of it (workers/devstack/stripe_extras.py);
    `webhooks` are its `--webhook-*` options (where and how it delivers events)."""
    upstream = f"http://127.0.0.1:{localstripe_port}"
    return [
        sys.executable,
        "-m",
        "workers.devstack.stripe_extras",
        "--port",
        str(port),
        "--upstream",
        upstream,
        *webhooks,
    ]


def stripe_webhooks(web_port: int, secret: str, delay: str = "1:5", duplicates: float = 0.1) -> list[str]:
    """The Stripe fake's options to deliver webhooks to `bindery web` as Stripe does."""
    return [
        "--webhook-url",
        f"http://127.0.0.1:{web_port}/webhooks/stripe",
        "--webhook-secret",
        secret,
        "--webhook-delay",
        delay,
        "--webhook-duplicates",
        str(duplicates),
    ]
