"""Billing sync with Stripe: the signed-webhook inbox, ordered processing, outbound
customer sync, backfill and reconciliation.

What other domains may ask of billing: `bury` (an erasure's Stripe ids: every later event
about them is stored without its payload, ignored) and `owned_objects` / `stripe_ids`
(the Stripe objects of an account, with its customer for the latter)."""

from tasks.billing.owned_objects import owned_objects, stripe_ids
from tasks.billing.tombstones import bury

__all__ = ["bury", "owned_objects", "stripe_ids"]
