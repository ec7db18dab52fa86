"""Nightly encrypted backups of paid customers' instances (the policy's daily backup, 30 days)."""
