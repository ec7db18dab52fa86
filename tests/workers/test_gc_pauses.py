"""Objects frozen at startup are left out of the collector's full passes."""

from __future__ import annotations

import gc

from workers.gc_pauses import freeze_startup_objects


def test_frozen_objects_are_not_walked_by_a_full_collection() -> None:
    kept = [{"n": i} for i in range(10_000)]  # what a process keeps for its lifetime
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() >= len(kept)
        walked = {id(o) for o in gc.get_objects()}
        assert not any(id(o) in walked for o in kept)
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
