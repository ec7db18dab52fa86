"""`bindery operator …`: the console's operators, mounted by the CLI frame (workers/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys

from workers.cli_support import Commands, fail
from workers.settings import Settings
from workers.text_tables import print_table

ACTOR = "cli"


def register(commands: Commands) -> None:
    operator = commands.add_parser("operator", help="people who log in to the console (/console/)")
    actions = operator.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create an operator (asks for the password)")
    create.add_argument("name")
    create.add_argument("--role", choices=["viewer", "operator", "admin"], default="viewer")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    reset = actions.add_parser("reset", help="a new password (asked for); ends the operator's sessions")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    disable = actions.add_parser("disable", help="disable an operator; ends their sessions")
    disable.add_argument("name")
    listing = actions.add_parser("list", help="operators, their roles, whether disabled")
    listing.add_argument("--json", action="store_true")
    operator.set_defaults(handler=cmd_operator)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def cmd_operator(settings: Settings, args: argparse.Namespace) -> int:
    from workers.console.operators import OperatorError

    try:
        password = _password(args.password_stdin) if args.action in ("create", "reset") else ""
        return asyncio.run(_run(settings, args, password))
    except (OperatorError, ValueError) as error:
        return fail(str(error))


async def _run(settings: Settings, args: argparse.Namespace, password: str) -> int:
    from workers.console import operators
    from workers.db import create_pool

    pool = await create_pool(settings.database_url, max_size=2)
    try:
        if args.action == "create":
            operator_id = await operators.create_operator(pool, args.name, args.role, password, ACTOR)
            print(json.dumps({"id": operator_id, "name": args.name, "role": args.role}))
        elif args.action == "reset":
            await operators.reset_password(pool, args.name, password, ACTOR)
            print(f"new password for {args.name}; their sessions ended")
        elif args.action == "disable":
            await operators.disable_operator(pool, args.name, ACTOR)
            print(f"disabled {args.name}; their sessions ended")
        else:
            rows = await operators.list_operators(pool)
            if args.json:
                print(json.dumps(rows, indent=2, default=str))
            else:
                print_table(rows, ("id", "name", "role", "created_at", "disabled_at"))
    finally:
        await pool.close()
    return 0
