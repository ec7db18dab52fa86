"""Turn the failures an operator can fix into one line instead of a traceback."""

from __future__ import annotations

import asyncio

import asyncpg

from schema.runner import MigrationError


class JobError(Exception):
    """An expected failure whose message is safe to store and show (ids only, no PII)."""


class Refused(JobError):
    """A job that must not run as asked (an export of an account being erased): it fails
    at once, without the retries that could only refuse again."""


def describe_startup_error(error: BaseException) -> str | None:
    if isinstance(error, MigrationError):
        return f"migration refused: {error}"
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return "the database in DATABASE_URL does not exist: run `bindery migrate --create-database`"
    if isinstance(error, OSError | asyncio.TimeoutError | asyncpg.CannotConnectNowError):
        return (
            f"cannot reach PostgreSQL at DATABASE_URL ({type(error).__name__}); "
            "is it running? (the README's two commands say how to start it)"
        )
    return None
