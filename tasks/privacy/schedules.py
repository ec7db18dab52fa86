"""The privacy domain's periodic jobs, collected by the scheduler (workers/domains.py).
The actors they name are in tasks/privacy/actors.py."""

from scheduler.jobs import ScheduledJob

SCHEDULES: list[ScheduledJob] = [
    # Open requests overdue or due within 5 days: the operators hear of it every hour.
    ScheduledJob("privacy.check_deadlines", "41 * * * *", actor="privacy.check_deadlines"),
]
