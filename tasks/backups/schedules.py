"""The backups domain's periodic jobs, collected by the scheduler (workers/domains.py).
The actors they name are in tasks/backups/actors.py."""

from scheduler.jobs import ScheduledJob

SCHEDULES: list[ScheduledJob] = [
    # The policy's daily backup of every paid customer's instances.
    ScheduledJob(
        "backups.run_nightly",
        "0 2 * * *",
        actor="backups.run_nightly",
        timezone="Europe/Paris",
        pass_slot=True,
    ),
    # Proof that backups restore: a recent one (instances in turn), into a scratch database, compared.
    ScheduledJob(
        "backups.restore_test",
        "0 5 * * *",
        actor="backups.restore_test",
        timezone="Europe/Paris",
        pass_slot=True,
    ),
    # Every paid instance has a verified backup of the last 26 hours, or operators hear of it.
    ScheduledJob("backups.freshness", "23 * * * *", actor="backups.freshness"),
    # Objects the catalog does not know, and uploads a dead worker left open.
    ScheduledJob("backups.sweep", "45 3 * * *", actor="backups.sweep", timezone="Europe/Paris"),
    # Only the last 30 days are kept (BACKUP_RETENTION_DAYS).
    ScheduledJob(
        "backups.expire", "30 3 * * *", actor="backups.expire", timezone="Europe/Paris", pass_slot=True
    ),
]
