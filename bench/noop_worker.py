"""The baseline for end-to-end job throughput: a no-op Dramatiq actor on the same Redis,
run by Dramatiq's own CLI with the same processes and threads as `bindery worker`."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

# Not made Dramatiq's global broker: the benchmark process declares bindery's actors too.
broker = RedisBroker(url=os.environ["BROKER_URL"], namespace="bench-noop")


@dramatiq.actor(actor_name="bench.noop", queue_name="default", broker=broker)
def noop(job_id: str) -> None:
    """Does nothing: what remains is Dramatiq's and Redis's own cost per message."""
