"""Billing sync with Stripe: the signed-webhook inbox, ordered processing, outbound
customer sync, backfill and reconciliation."""
