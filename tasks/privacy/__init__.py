"""Privacy requests: the register of what customers ask of their data, with its legal clock.

What other domains may ask of it: `open_request` and `close_request` (erasure records its
requests in the register through them)."""

from tasks.privacy.register import close_request, open_request

__all__ = ["close_request", "open_request"]
