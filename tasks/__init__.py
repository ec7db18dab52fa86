"""The actors, one module per domain. Importing this package declares them all."""

from tasks import system
from tasks.billing import actors as billing

__all__ = ["billing", "system"]
