"""Billing sync with Stripe: the signed-webhook inbox, ordered processing, outbound
customer sync, backfill and reconciliation.

What other domains may ask of billing: `bury` (an erasure's Stripe ids: every later event
about them is stored without its payload, ignored) and `owned_objects` (the Stripe
objects of an account)."""

from tasks.billing.owned_objects import owned_objects
from tasks.billing.tombstones import bury

__all__ = ["bury", "owned_objects"]
