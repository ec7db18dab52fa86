"""Several row ids in one broker message, and how an actor runs them.

Dramatiq's own cost per message (the worker thread's hand-off to the event loop and
back, the acknowledgement) is most of what a short piece of work costs: a no-op message
costs about a third of an end-to-end `system.ping`. Ids that are
sent together (a flush of the HTTP receiver, a reconciler's re-send, a burst) therefore
share a message, up to their queue's `ids_per_message` (workers/queues.py), and pay it
once. A lone id still goes at once, in a message of its own: nothing waits to be grouped.

A job actor runs a message's ids side by side (`run_each`; the billing actor applies a
message's events in one transaction instead, see tasks/billing/processing.py). One that
must be tried again fails the message once the others have finished: Dramatiq retries
the message after its backoff, and the retry finds the finished ones finished (every
actor skips a row that is done), so only what is left runs again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

import dramatiq

from workers.enqueue import Call
from workers.queues import policy


def shared_calls(actor: dramatiq.Actor[Any, Any], ids: Sequence[str]) -> list[Call]:
    """The actor's calls for `ids`, at most `ids_per_message` each, split evenly (20 ids
    at 16 a message make two of 10, not 16 and 4, so that two worker threads share them)."""
    count = -(-len(ids) // policy(actor.queue_name).ids_per_message)  # messages, rounded up
    return [(actor, tuple(ids[i::count])) for i in range(count)]


async def run_each(runs: Iterable[Awaitable[None]]) -> None:
    """Await every run side by side, then raise the first error among them, if any."""
    pending = list(runs)
    if len(pending) == 1:  # a message of one id, as before: no task to create
        await pending[0]
        return
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if errors:
        raise errors[0]
