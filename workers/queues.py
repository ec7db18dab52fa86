"""The queues and what each allows its actors: how long a message may run, how often it is retried.

Retries are the broker's job (Dramatiq's Retries middleware, exponential backoff);
an actor only raises. The time limits are generous ceilings, not targets.

`ids_per_message`: how many row ids sent together may share one message
(workers/shared_messages.py). Queues of long work keep one a message, so that a slow
one never holds the others' acknowledgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QueuePolicy:
    time_limit_s: int
    max_retries: int
    min_backoff_s: float
    max_backoff_s: float
    ids_per_message: int = 1

    def actor_options(self) -> dict[str, Any]:
        return {
            "time_limit": self.time_limit_s * 1000,
            "max_retries": self.max_retries,
            "min_backoff": int(self.min_backoff_s * 1000),
            "max_backoff": int(self.max_backoff_s * 1000),
        }


QUEUES: dict[str, QueuePolicy] = {
    "default": QueuePolicy(
        time_limit_s=60, max_retries=5, min_backoff_s=1, max_backoff_s=60, ids_per_message=16
    ),
    # Stripe answers in seconds; 429s are honoured inside the task, the rest retried here.
    "billing": QueuePolicy(
        time_limit_s=120, max_retries=10, min_backoff_s=1, max_backoff_s=300, ids_per_message=32
    ),
    # One erasure step at a time; a failing step is retried for hours, never given up quickly.
    "erasure": QueuePolicy(time_limit_s=900, max_retries=20, min_backoff_s=5, max_backoff_s=900),
    # A dump of a large instance takes long; a failed night is retried a few times.
    "backups": QueuePolicy(time_limit_s=6 * 3600, max_retries=3, min_backoff_s=60, max_backoff_s=3600),
    # An access export dumps the account's instances: minutes for a large one.
    "exports": QueuePolicy(time_limit_s=2 * 3600, max_retries=3, min_backoff_s=30, max_backoff_s=1800),
    "mail": QueuePolicy(time_limit_s=600, max_retries=10, min_backoff_s=5, max_backoff_s=600),
}


def policy(queue: str) -> QueuePolicy:
    try:
        return QUEUES[queue]
    except KeyError:
        raise ValueError(f"unknown queue {queue!r}; known: {', '.join(QUEUES)}") from None
