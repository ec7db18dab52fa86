"""The Dramatiq broker every bindery process shares: Redis by default, RabbitMQ for `amqp://`.

Importing this module builds the broker from the settings and makes it Dramatiq's
global broker, so that `tasks/` can declare actors with `@dramatiq.actor` as usual.
The broker only carries "go and look at row X": every message names a row in
Postgres, which is the source of truth, so a broker that loses messages loses no work.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, default_middleware

from workers.prefetched import ReturnPrefetched
from workers.queues import QUEUES
from workers.resources import ResourcesMiddleware
from workers.safe_retries import without_data
from workers.scheduled_runs import ScheduledRunMiddleware
from workers.settings import Settings, load_settings
from workers.stop_signal import OneStopPerSignal


def build_broker(settings: Settings, *, with_metrics: bool = False) -> dramatiq.Broker:
    url = settings.broker_url
    broker: dramatiq.Broker
    middleware = without_data([make() for make in default_middleware])
    if url.startswith(("amqp://", "amqps://")):
        broker = RabbitmqBroker(url=url, confirm_delivery=True, middleware=middleware)
    else:
        # Redis keeps nothing on disk here; the reconcilers re-enqueue what it loses.
        broker = RedisBroker(url=url, namespace="bindery", middleware=middleware)  # type: ignore[no-untyped-call]
    broker.add_middleware(AsyncIO())
    broker.add_middleware(ResourcesMiddleware(settings))
    broker.add_middleware(ScheduledRunMiddleware())
    broker.add_middleware(OneStopPerSignal())
    broker.add_middleware(ReturnPrefetched())
    if with_metrics:
        # Imported late: it reads its port and directory from the environment at import.
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def ping(broker: dramatiq.Broker) -> None:
    """Raise if the broker cannot be reached (blocking: call it from a thread)."""
    if isinstance(broker, RedisBroker):
        broker.client.ping()
    elif isinstance(broker, RabbitmqBroker):
        broker.connection.process_data_events(time_limit=0)
    else:  # the stub broker of a unit test
        return


def queue_depths(broker: dramatiq.Broker) -> dict[str, int]:
    """Messages waiting in each queue (blocking: call it from a thread)."""
    if isinstance(broker, RedisBroker):
        pipe = broker.client.pipeline()
        for queue in QUEUES:
            pipe.llen(f"bindery:{queue}")
        return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))
    if isinstance(broker, RabbitmqBroker):
        return {queue: int(broker.get_queue_message_counts(queue)[0]) for queue in QUEUES}
    return {}


settings = load_settings()
broker = build_broker(settings, with_metrics=os.environ.get("BINDERY_WORKER_METRICS") == "1")
dramatiq.set_broker(broker)
