"""Nightly encrypted backups of paid customers' instances (the policy's daily backup, 30 days).

What other domains may ask of backups: `backups_being_written`."""

from tasks.backups.catalog import backups_being_written

__all__ = ["backups_being_written"]
