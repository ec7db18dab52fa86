"""The actors, one module per domain. Importing this package declares them all."""

from tasks import system

__all__ = ["system"]
