"""Privacy actors: thin wrappers over tasks.privacy.deadlines."""

from __future__ import annotations

import dramatiq

import workers.broker  # noqa: F401  (Dramatiq's global broker must exist before actors are declared)
from tasks.privacy.deadlines import check_deadlines
from workers.queues import policy
from workers.resources import current_resources


@dramatiq.actor(actor_name="privacy.check_deadlines", **policy("default").actor_options())
async def check_deadlines_now() -> None:
    """Alert on open requests overdue or due within 5 days. Repeating it repeats the alert,
    which is the point while a request waits."""
    resources = current_resources()
    await check_deadlines(resources.pool, resources.settings)
