"""A terminal progress bar for long manual commands (e.g. `bindery backup run`)."""

from __future__ import annotations

import threading
import time
from typing import TextIO

WIDTH = 30


class ProgressBar:
    """Called with (done, total) from any thread; redraws at most five times a second.
    `total` is an estimate (a database's size, not its dump's), so the bar is capped
    below full until `close`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.drawn_at = 0.0
        self.last = ""

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        with self.lock:
            if now - self.drawn_at < 0.2:
                return
            self.drawn_at = now
            self.last = render(done, total)
            self.stream.write("\r" + self.last)
            self.stream.flush()

    def close(self) -> None:
        with self.lock:
            if self.last:
                self.stream.write("\n")
                self.stream.flush()


def _draw(fraction: float) -> str:
    filled = int(fraction * WIDTH)
    return "[" + "#" * filled + " " * (WIDTH - filled) + "]"


def bar(done: int, total: int) -> str:
    """An exact bar: done of total."""
    fraction = min(done / total, 1.0) if total > 0 else 1.0
    return f"{_draw(fraction)} {fraction:4.0%}"


def render(done: int, total: int) -> str:
    """An estimated bar: `total` only approximates where `done` will end."""
    fraction = min(done / total, 0.99) if total > 0 else 0.0
    return f"{_draw(fraction)} ~{fraction:4.0%}  {done / 1e6:,.1f} of ~{total / 1e6:,.1f} MB"
