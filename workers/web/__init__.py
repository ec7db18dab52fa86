"""The HTTP receiver: health, metrics, the job API (and, with billing, Stripe webhooks)."""
