"""The periodic jobs. Domains add a line here as they land; nothing else changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    cron: str  # 5 fields, or 6 with seconds
    actor: str
    timezone: str = "UTC"
    args: tuple[Any, ...] = field(default=())
    enabled: bool = True

    def check(self) -> None:
        """Raise ValueError naming the job when its cron expression or time zone is invalid."""
        try:
            ZoneInfo(self.timezone)
        except Exception:
            raise ValueError(f"scheduled job {self.name}: unknown time zone {self.timezone!r}") from None
        if not croniter.is_valid(self.cron) or len(self.cron.split()) not in (5, 6):
            raise ValueError(f"scheduled job {self.name}: invalid cron expression {self.cron!r}")


SCHEDULE: list[ScheduledJob] = [
    # Job requests whose broker message was lost (Redis keeps nothing on disk).
    ScheduledJob("jobs-reconciler", "* * * * *", actor="system.reconcile_jobs"),
]
