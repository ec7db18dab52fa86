"""What each `bindery worker` process imports: the broker, then every actor."""

from workers.broker import broker
from workers.domains import declare_actors

declare_actors()

__all__ = ["broker"]
