"""`bindery erasure …`: account erasure requests, mounted by the CLI frame (workers/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import json

from workers.cli_support import Commands, fail
from workers.settings import Settings
from workers.text_tables import print_table


def register(commands: Commands) -> None:
    erasure = commands.add_parser("erasure", help="account erasure requests")
    erasure_actions = erasure.add_subparsers(dest="action", required=True, metavar="ACTION")
    ask = erasure_actions.add_parser("request", help="disable an account and erase it after the grace period")
    ask.add_argument("account_id", type=int)
    ask.add_argument("--now", action="store_true", help="no grace period: erase now")
    cancel = erasure_actions.add_parser("cancel", help="cancel an account's erasure within its grace period")
    cancel.add_argument("account_id", type=int)
    status = erasure_actions.add_parser("status", help="a request's steps, counts, retained records")
    status.add_argument("request_id", type=int)
    status.add_argument("--json", action="store_true")
    reapply = erasure_actions.add_parser(
        "reapply", help="erase again accounts the ledger knows (after a restore)"
    )
    reapply.add_argument("--target", help="the restored database (default: DATABASE_URL)")
    erasure.set_defaults(handler=cmd_erasure)


def cmd_erasure(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.erasure import admin
    from workers.errors import JobError

    try:
        if args.action == "request":
            result = asyncio.run(admin.request(settings, args.account_id, now=args.now))
        elif args.action == "cancel":
            result = asyncio.run(admin.cancel(settings, args.account_id))
        elif args.action == "reapply":
            erased = asyncio.run(admin.reapply(settings, args.target))
            result = {"erased_again": erased}
        else:
            found = asyncio.run(admin.status(settings, args.request_id))
            if found is None:
                return fail(f"no erasure request {args.request_id}")
            result = found
    except JobError as error:
        return fail(str(error))
    if getattr(args, "json", False) or args.action != "status":
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"erasure request {result['id']} of account {result['account_id']}: {result['state']}")
        print(f"  runs after {result['run_after']}; verification {result['verification']}")
        if result["last_error"]:
            print(f"  last error: {result['last_error']}")
        steps = [{"error": None, **step} for step in result["steps"]]
        print_table(steps, ["step", "started_at", "finished_at", "attempts", "error"])
    return 0
