"""The actors, one module per domain. Importing this package declares them all."""

import tasks.backups.actors
import tasks.billing.actors
import tasks.breach.actors
import tasks.erasure.actors
import tasks.system  # noqa: F401
