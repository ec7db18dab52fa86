"""Copies of one SIGTERM make one graceful stop (workers/stop_signal.py)."""

from __future__ import annotations

import pytest

from workers import stop_signal


def test_copies_of_one_stop_reach_the_handler_once(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("workers.stop_signal.time.monotonic", lambda: now[0])
    calls: list[int] = []
    handle = stop_signal.coalescing(lambda signum, frame: calls.append(signum))

    handle(15, None)
    now[0] += 0.01
    handle(15, None)  # the copy passed on by Dramatiq's main process
    assert calls == [15]

    now[0] += stop_signal.SAME_STOP_SECONDS
    handle(15, None)  # an operator's deliberate second signal
    assert calls == [15, 15]
