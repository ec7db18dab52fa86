"""Billing sync with Stripe: the signed-webhook inbox (and, as they land, processing,
outbound customer sync, backfill and reconciliation)."""
