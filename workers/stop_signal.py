"""One SIGTERM, one graceful stop, however many copies of it a worker process receives.

Dramatiq's worker process takes its first SIGTERM as "finish what you hold, then exit"
and a second as "exit now". A supervisor that signals the whole process group (systemd's
default `KillMode=control-group`, honcho, `make run`'s Ctrl-C) reaches each worker
process directly and again through Dramatiq's main process, which passes the signal on:
two copies of one stop, a few milliseconds apart. Taken as two, the jobs in flight were
abandoned, and the process hung until the supervisor's SIGKILL (the asyncio loop's
thread is not a daemon, so "exit now" waited for it forever).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import dramatiq

Handler = Callable[[int, FrameType | None], Any]

# Copies of one stop arrive within milliseconds; an operator's deliberate second
# SIGTERM ("now, please") comes later than this.
SAME_STOP_SECONDS = 1.0


class OneStopPerSignal(dramatiq.Middleware):
    """In each worker process, drops a SIGTERM that comes less than `SAME_STOP_SECONDS`
    after the last one let through; any later one still reaches Dramatiq's handler."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Dramatiq installs its handler before this hook, in the process's main thread.
        if threading.current_thread() is not threading.main_thread():
            return
        dramatiq_handler = signal.getsignal(signal.SIGTERM)
        if callable(dramatiq_handler):
            signal.signal(signal.SIGTERM, coalescing(dramatiq_handler))


def coalescing(handler: Handler) -> Handler:
    """`handler`, skipped for a signal less than `SAME_STOP_SECONDS` after the last it ran for."""
    last: float | None = None

    def handle(signum: int, frame: FrameType | None) -> Any:
        nonlocal last
        now = time.monotonic()
        if last is not None and now - last < SAME_STOP_SECONDS:
            return None
        last = now
        return handler(signum, frame)

    return handle
