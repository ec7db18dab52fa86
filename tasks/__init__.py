"""The actors, one module per domain. Importing this package declares them all."""

import tasks.billing.actors
import tasks.erasure.actors
import tasks.system  # noqa: F401
