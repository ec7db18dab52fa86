"""Keep the garbage collector's full passes short in long-running processes.

A full collection walks every object the collector tracks, and most of those in a
bindery process are what importing aiohttp, dramatiq, stripe, pydantic and boto
created: they live as long as the process. In the web process under the webhook
benchmark's load that walk paused the event loop for tens of milliseconds, several times
a minute, with every in-flight request waiting on it. Frozen, those objects are no longer
walked, and the same pass is short.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Call once a process has imported and built what it keeps for its lifetime."""
    gc.collect()  # what is already garbage goes now, rather than being frozen forever
    gc.freeze()
