"""The breach domain's periodic jobs, collected by the scheduler (workers/domains.py).
The actors they name are in tasks/breach/actors.py."""

from scheduler.jobs import ScheduledJob

SCHEDULES: list[ScheduledJob] = [
    # Breach mail: rows a dead worker left `sending`, lanes of campaigns gone quiet.
    ScheduledJob("breach.recover_lanes", "* * * * *", actor="breach.recover_lanes"),
    # Addresses of campaigns ended BREACH_RECIPIENT_RETENTION ago.
    ScheduledJob("breach.scrub", "50 3 * * *", actor="breach.scrub", timezone="Europe/Paris"),
]
