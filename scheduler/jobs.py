"""The periodic jobs: what one is, and the schedule bindery runs (its own jobs and each domain's).

Each job names an actor and its arguments, a cron expression read in the job's time
zone, and what to do about slots missed while no scheduler ran: `latest` fires only
the most recent one, `all` fires each of them, oldest first; neither reaches back
further than `catchup_window`. Settings may disable, enable or re-time a job
(`SCHEDULER_OVERRIDES`), without touching this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduler.slots import is_valid_cron
from workers.logs import get_logger

log = get_logger(__name__)


class ScheduleError(ValueError):
    """A job declaration or override is invalid; the message names the job."""


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    cron: str  # 5 fields, or 6 with seconds first
    actor: str
    timezone: str = "UTC"
    args: tuple[Any, ...] = field(default=())
    catchup: Literal["latest", "all"] = "latest"
    catchup_window: timedelta = timedelta(days=1)
    enabled: bool = True
    # Send the slot (ISO 8601, UTC) as the actor's `slot` keyword argument.
    pass_slot: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def check(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"scheduled job {self.name}: unknown time zone {self.timezone!r}") from None
        if not is_valid_cron(self.cron):
            raise ScheduleError(f"scheduled job {self.name}: invalid cron expression {self.cron!r}")
        if self.catchup not in ("latest", "all"):
            raise ScheduleError(f"scheduled job {self.name}: catchup must be 'latest' or 'all'")
        if self.catchup_window <= timedelta(0):
            raise ScheduleError(f"scheduled job {self.name}: catchup_window must be positive")


# bindery's own housekeeping, run by the actors of tasks/system.py. Each domain declares
# its own beside its actors (tasks/<domain>/schedules.py).
SYSTEM_SCHEDULES: list[ScheduledJob] = [
    # Job requests whose broker message was lost (Redis keeps nothing on disk).
    ScheduledJob("system.resend_lost_jobs", "* * * * *", actor="system.resend_lost_jobs"),
    # Old schedule_runs and finished job requests.
    ScheduledJob("system.prune", "17 3 * * *", actor="system.prune", timezone="Europe/Paris"),
    # Proof of life, off unless enabled in SCHEDULER_OVERRIDES (the tests fire it every second).
    ScheduledJob(
        "system.scheduled_ping", "*/5 * * * *", actor="system.scheduled_ping", enabled=False, pass_slot=True
    ),
]


def declared_schedule() -> list[ScheduledJob]:
    """Every periodic job: bindery's own, then each domain's."""
    from workers.domains import domain_schedules  # the one loader of what the domains declare

    return [*SYSTEM_SCHEDULES, *domain_schedules()]


_OVERRIDABLE = {"cron", "timezone", "enabled", "catchup", "catchup_window_seconds"}

# Earlier names of jobs now named for their actors: an override under an earlier name
# still applies, with a warning, so that a deployment's settings keep working.
EARLIER_NAMES = {
    "jobs.reconcile": "system.resend_lost_jobs",
    "scheduler.prune": "system.prune",
    "system.ping": "system.scheduled_ping",
    "backups.nightly": "backups.run_nightly",
    "billing.reconcile_inbox": "billing.resend_stale_events",
    "billing.reconcile_stripe": "billing.catch_up_with_stripe",
    "breach.reconcile": "breach.recover_lanes",
}


def effective_schedule(
    declared: list[ScheduledJob], overrides: dict[str, dict[str, Any]]
) -> list[ScheduledJob]:
    """The declared jobs with the settings' overrides applied, all checked."""
    by_name = {job.name: job for job in declared}
    if len(by_name) != len(declared):
        raise ScheduleError("two scheduled jobs share a name")
    for given, changes in overrides.items():
        name = given
        if given not in by_name and given in EARLIER_NAMES:
            name = EARLIER_NAMES[given]
            log.warning("SCHEDULER_OVERRIDES uses an earlier job name", given=given, now=name)
        if name not in by_name:
            raise ScheduleError(f"SCHEDULER_OVERRIDES names unknown scheduled job {name!r}")
        unknown = set(changes) - _OVERRIDABLE
        if unknown:
            raise ScheduleError(f"scheduled job {name}: cannot override {', '.join(sorted(unknown))}")
        values = dict(changes)
        if "catchup_window_seconds" in values:
            values["catchup_window"] = timedelta(seconds=float(values.pop("catchup_window_seconds")))
        by_name[name] = replace(by_name[name], **values)
    jobs = list(by_name.values())
    for job in jobs:
        job.check()
    return jobs
