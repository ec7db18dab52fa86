"""`bindery privacy …`: the register of data-subject requests, mounted by the CLI frame
(workers/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date
from typing import Any

from workers.cli_support import Commands, fail
from workers.settings import Settings
from workers.text_tables import print_table

ACTOR = "cli"


def register(commands: Commands) -> None:
    privacy = commands.add_parser("privacy", help="data-subject requests and their legal deadlines")
    actions = privacy.add_subparsers(dest="action", required=True, metavar="ACTION")
    log = actions.add_parser("log", help="record a request received by the privacy contact")
    log.add_argument("--kind", required=True, choices=["rectification", "objection", "other"])
    log.add_argument("account_id", type=int)
    log.add_argument("--note", help="what was asked, in our words (no copy of the customer's data)")
    extend = actions.add_parser("extend", help="extend a request's deadline (at most two more months)")
    extend.add_argument("request_id", type=int)
    extend.add_argument("--until", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    extend.add_argument("--reason", required=True, help="why: the law asks it be told to the customer")
    close = actions.add_parser("close", help="close a request with its outcome")
    close.add_argument("request_id", type=int)
    close.add_argument("--outcome", required=True)
    export = actions.add_parser("export", help="email an account's customer a link to all their data")
    export.add_argument("account_id", type=int)
    export.add_argument("--with-instances", action="store_true", help="add a pg_dump of each instance")
    listing = actions.add_parser("requests", help="the register, with the days left")
    listing.add_argument("--open", action="store_true", help="only the open requests")
    listing.add_argument("--json", action="store_true")
    privacy.set_defaults(handler=cmd_privacy)


def cmd_privacy(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.privacy.archive import ExportFailed
    from tasks.privacy.export import ExportRefused
    from tasks.privacy.register import RegisterError

    try:
        return asyncio.run(_run(settings, args))
    except (RegisterError, ExportRefused, ExportFailed) as error:
        return fail(str(error))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.privacy import register as requests
    from workers.db import create_pool

    pool = await create_pool(settings.database_url, max_size=2)
    try:
        if args.action == "log":
            request_id = await requests.log_request(pool, args.kind, args.account_id, args.note, ACTOR)
            print(json.dumps({"request_id": request_id}))
        elif args.action == "extend":
            deadline = await requests.extend_request(pool, args.request_id, args.until, args.reason, ACTOR)
            print(json.dumps({"request_id": args.request_id, "deadline": deadline.isoformat()}))
        elif args.action == "export":
            print(json.dumps(await _export(settings, pool, args.account_id, args.with_instances), indent=2))
        elif args.action == "close":
            if not await requests.close_request(
                pool, request_id=args.request_id, outcome=args.outcome, by=ACTOR
            ):
                return fail(f"no open privacy request {args.request_id}")
        else:
            _print_register(await requests.list_requests(pool, open_only=args.open), args.json)
    finally:
        await pool.close()
    return 0


async def _export(settings: Settings, pool: Any, account_id: int, with_instances: bool) -> dict[str, Any]:
    from tasks.privacy.export import Exporting, ExportRefused, being_erased, export_account
    from tasks.privacy.register import open_request
    from workers.stripe_calls import RateLimitedStripe
    from workers.stripe_client import make_stripe_client

    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)", account_id):
            raise ExportRefused(f"unknown account {account_id}")
        if (why := await being_erased(conn, account_id)) is not None:
            raise ExportRefused(why)  # refused before it is recorded, as the API does
        request_id = await open_request(conn, "export", account_id, received_by=ACTOR)
    client, http = make_stripe_client(settings)
    try:
        clients = Exporting(settings, pool, client, RateLimitedStripe(None))
        return await export_account(clients, account_id, request_id, with_instances=with_instances)
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]


COLUMNS = ["id", "kind", "account_id", "received_at", "deadline", "days_left", "state", "outcome"]


def _print_register(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print_table(rows, COLUMNS)
