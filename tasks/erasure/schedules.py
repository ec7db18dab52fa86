"""The erasure domain's periodic jobs, collected by the scheduler (workers/domains.py).
The actors they name are in tasks/erasure/actors.py."""

from scheduler.jobs import ScheduledJob

SCHEDULES: list[ScheduledJob] = [
    # Erasures whose grace period has ended (and any whose worker died) run within a minute.
    ScheduledJob("erasure.run_due", "* * * * *", actor="erasure.run_due"),
]
