"""Dramatiq's Retries, without the personal data its stored tracebacks can carry.

On every failure Retries puts `traceback.format_exc()` into the message it sends again,
and the message keeps it in Redis or RabbitMQ, dead letters included (7 days). That text
quotes the exception's message: asyncpg's `DETAIL: Key (email)=(…) already exists`,
aiosmtplib's refusal naming the recipient. The log pipeline withholds such messages
(workers/logs.py); this middleware does the same for the broker, so what is stored is
the frames, the exception types and bindery's own messages only.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Retries

from workers.logs import safe_traceback


class StoredFailure(Exception):
    """What the broker keeps of a failure: its safe traceback, as the message."""


class RetriesWithoutData(Retries):
    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            super().after_process_message(broker, message, result=result, exception=exception)  # type: ignore[no-untyped-call]
            return
        # Retries formats the exception being handled, not its `exception` argument: inside
        # this block that is StoredFailure, holding the safe text and no context.
        try:
            raise StoredFailure(safe_traceback(exception)) from None
        except StoredFailure:
            super().after_process_message(broker, message, result=result, exception=exception)  # type: ignore[no-untyped-call]


def without_data(middleware: list[dramatiq.Middleware]) -> list[dramatiq.Middleware]:
    """Dramatiq's default middleware with Retries replaced by RetriesWithoutData."""
    return [RetriesWithoutData() if type(item) is Retries else item for item in middleware]
