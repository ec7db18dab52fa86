"""What each `bindery worker` process imports: the broker, then every actor."""

import tasks  # noqa: F401  (declares the actors on the broker)
from workers.broker import broker

__all__ = ["broker"]
