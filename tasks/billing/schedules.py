"""The billing domain's periodic jobs, collected by the scheduler (workers/domains.py).
The actors they name are in tasks/billing/actors.py."""

from scheduler.jobs import ScheduledJob

SCHEDULES: list[ScheduledJob] = [
    # Stripe events whose processing message was lost, or whose worker died.
    ScheduledJob("billing.resend_stale_events", "* * * * *", actor="billing.resend_stale_events"),
    # Events Stripe has that the inbox lacks (hourly, through the Events API).
    ScheduledJob("billing.catch_up_with_stripe", "7 * * * *", actor="billing.catch_up_with_stripe"),
]
