"""`bindery stripe …`: the Stripe event inbox and customer sync, mounted by the CLI frame (workers/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import json

from workers.cli_support import Commands, fail
from workers.settings import Settings
from workers.text_tables import print_table


def register(commands: Commands) -> None:
    stripe_ = commands.add_parser("stripe", help="the Stripe event inbox")
    stripe_actions = stripe_.add_subparsers(dest="action", required=True, metavar="ACTION")
    events = stripe_actions.add_parser("events", help="recent inbox events (never their payloads)")
    events.add_argument("--failed", action="store_true", help="only events that failed")
    events.add_argument("--json", action="store_true")
    retry = stripe_actions.add_parser("retry", help="process failed events again")
    retry.add_argument("event_id", nargs="?")
    retry.add_argument("--failed", action="store_true", help="every failed event")
    stripe_actions.add_parser(
        "catch-up", aliases=["reconcile"], help="store the events Stripe has and the inbox lacks"
    )
    backfill = stripe_actions.add_parser("backfill", help="read Stripe's current billing objects")
    backfill.add_argument("--since", help="only objects created on or after this date (YYYY-MM-DD)")
    push = stripe_actions.add_parser("push", help="create or update an account's Stripe customer now")
    push.add_argument("account_id", type=int)
    stripe_.set_defaults(handler=cmd_stripe)


def cmd_stripe(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.billing.admin import list_events, reset_failed
    from workers.db import connect

    if args.action == "retry" and (args.event_id is None) == (not args.failed):
        return fail("name one EVENT_ID or --failed", 2)
    if args.action == "push":
        return asyncio.run(_push_account(settings, args.account_id))
    if args.action in ("catch-up", "reconcile"):
        return asyncio.run(_catch_up(settings))
    if args.action == "backfill":
        return asyncio.run(_backfill(settings, args.since))

    async def run() -> int:
        conn = await connect(settings.database_url)
        try:
            if args.action == "events":
                rows = await list_events(conn, failed_only=args.failed)
                if args.json:
                    print(json.dumps(rows, indent=2))
                else:
                    print_table(
                        rows, ("id", "type", "object_id", "state", "attempts", "last_error", "received_at")
                    )
                return 0
            retried = await reset_failed(conn, args.event_id)
        finally:
            await conn.close()
        if args.event_id and not retried:
            return fail(f"no failed event {args.event_id!r}")
        if retried:
            from tasks.billing.actors import send_events

            await send_events(retried)
        print(f"re-queued {len(retried)} event(s)")
        return 0

    return asyncio.run(run())


async def _push_account(settings: Settings, account_id: int) -> int:
    from tasks.billing.customers import push_account
    from workers.errors import JobError
    from workers.stripe_client import stripe_session

    try:
        async with stripe_session(settings) as (conn, client):
            outcome = await push_account(conn, client, account_id)
    except JobError as error:
        return fail(str(error))
    print(("created" if outcome["created"] else "updated") + f" Stripe customer {outcome['customer_id']}")
    return 0


async def _backfill(settings: Settings, since: str | None) -> int:
    from datetime import UTC, datetime

    from tasks.billing.backfill import backfill
    from workers.stripe_calls import RateLimitedStripe
    from workers.stripe_client import stripe_session

    try:
        start = datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None
    except ValueError:
        return fail("--since takes a date such as 2026-01-31", 2)
    async with stripe_session(settings) as (conn, client):
        counts = await backfill(conn, client, RateLimitedStripe(None), start)
    print(", ".join(f"{count} {name}" for name, count in counts.items()) + " applied")
    return 0


async def _catch_up(settings: Settings) -> int:
    from tasks.billing.actors import send_events
    from tasks.billing.catch_up import catch_up_events
    from workers.stripe_calls import RateLimitedStripe
    from workers.stripe_client import stripe_session

    async with stripe_session(settings) as (conn, client):
        stored = await catch_up_events(conn, client, RateLimitedStripe(None))
    await send_events(stored)
    print(f"stored {len(stored)} event(s) the inbox lacked")
    return 0
