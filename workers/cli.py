"""`bindery`: one console script for every process role and operator command.

This is the frame: the process roles (migrate, web, worker, scheduler, dev), API tokens
and the console's operators (workers/console/commands.py); each domain mounts its own
commands (workers/domains.py, `tasks/*/commands.py`).
A command only parses arguments and calls plain functions; it says what went wrong in
one line and exits non-zero (2 for bad settings or usage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence

from workers.cli_support import fail
from workers.console.commands import register as operator_commands
from workers.domains import domain_commands
from workers.settings import Settings, SettingsError, load_settings
from workers.text_tables import print_table

EXIT_SETTINGS = 2


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from workers.db import migrate_database

    applied = asyncio.run(migrate_database(settings.database_url, create=args.create_database))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    from workers.web.app import serve

    serve(settings, args.host, args.port)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    import dramatiq.cli

    if settings.worker_metrics_port:
        # Read by Dramatiq's Prometheus middleware at import, in each forked process.
        # (Dramatiq's own lowercase names.)
        os.environ["BINDERY_WORKER_METRICS"] = "1"
        os.environ["dramatiq_prom_port"] = str(settings.worker_metrics_port)  # noqa: SIM112
        os.environ.setdefault("dramatiq_prom_host", "127.0.0.1")
        metrics_dir = tempfile.mkdtemp(prefix="bindery-worker-metrics-")
        os.environ["dramatiq_prom_db"] = metrics_dir  # noqa: SIM112
        # Our own worker metrics (scheduler lag) join Dramatiq's in its multiprocess
        # directory; prometheus_client reads this when first imported, in each process.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    argv = ["workers.worker", "--processes", str(args.processes), "--threads", str(args.threads)]
    argv += ["--skip-logging"]
    if args.queues:
        argv += ["--queues", *args.queues]
    parser = dramatiq.cli.make_argument_parser()  # type: ignore[no-untyped-call]
    result: int = dramatiq.cli.main(parser.parse_args(argv))  # type: ignore[no-untyped-call]
    return result


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from scheduler import service

    if args.action == "list":
        return service.list_jobs(settings, args.json)
    if args.action == "run-now":
        return service.run_job_now(settings, args.job)
    return service.run_scheduler(settings)


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    try:
        from workers.devstack.stack import run_dev_stack, seed_running_stack
    except ModuleNotFoundError:  # the installed package leaves the development stack out
        print("bindery dev: the development stack runs from a checkout (`make run`)", file=sys.stderr)
        return 2
    return seed_running_stack(settings) if args.action == "seed" else run_dev_stack(settings)


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from workers.db import connect
    from workers.tokens import TokenError, create_token, list_tokens, revoke_token

    async def run() -> int:
        conn = await connect(settings.database_url)
        try:
            if args.action == "create":
                token = await create_token(conn, args.name, args.scope)
                print(token)
                print("Shown once: store it now. bindery keeps only its hash.", file=sys.stderr)
            elif args.action == "revoke":
                if not await revoke_token(conn, args.name):
                    return fail(f"no active token named {args.name!r}")
                print(f"revoked {args.name}")
            else:
                rows = [
                    {
                        "id": row["id"],
                        "name": row["name"],
                        "scopes": list(row["scopes"]),
                        "created_at": row["created_at"].isoformat(),
                        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
                    }
                    for row in await list_tokens(conn)
                ]
                if args.json:
                    print(json.dumps(rows, indent=2))
                else:
                    print_table(rows, ("id", "name", "scopes", "created_at", "revoked_at"))
            return 0
        except TokenError as error:
            return fail(str(error))
        finally:
            await conn.close()

    return asyncio.run(run())


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bindery", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = commands.add_parser("migrate", help="apply schema/ migrations")
    migrate.add_argument(
        "--create-database", action="store_true", help="create DATABASE_URL's database if missing"
    )
    migrate.set_defaults(handler=cmd_migrate)

    web = commands.add_parser("web", help="the HTTP receiver")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8000)
    web.set_defaults(handler=cmd_web)

    worker = commands.add_parser("worker", help="Dramatiq workers")
    worker.add_argument("--queues", nargs="+", metavar="Q", help="only these queues (default: all)")
    worker.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    worker.add_argument("--threads", type=int, default=8)
    worker.set_defaults(handler=cmd_worker)

    scheduler = commands.add_parser("scheduler", help="the periodic scheduler (no action: run it)")
    scheduler_actions = scheduler.add_subparsers(dest="action", metavar="ACTION")
    scheduler_list = scheduler_actions.add_parser("list", help="jobs, next and last runs, lag")
    scheduler_list.add_argument("--json", action="store_true")
    run_now = scheduler_actions.add_parser("run-now", help="enqueue a scheduled job once, now")
    run_now.add_argument("job")
    scheduler.set_defaults(handler=cmd_scheduler)

    dev = commands.add_parser("dev", help="the whole local stack in the foreground (seed: its demo data)")
    dev.add_argument("action", nargs="?", choices=["seed"], help="seed the running stack's demo customers")
    dev.set_defaults(handler=cmd_dev)

    for register in domain_commands():
        register(commands)
    operator_commands(commands)

    token = commands.add_parser("token", help="API tokens for POST /jobs")
    token_commands = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="create a token (shown once)")
    create.add_argument("name")
    create.add_argument("--scope", nargs="+", required=True, help="system billing erasure backups, or *")
    revoke = token_commands.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    listing = token_commands.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--json", action="store_true")
    token.set_defaults(handler=cmd_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        return fail(str(error), EXIT_SETTINGS)
    from workers.logs import configure_logging

    configure_logging(json=settings.is_production)
    try:
        status: int = args.handler(settings, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output went away (`bindery … | head`): stop quietly, as Unix tools
        # do; what is still buffered goes nowhere rather than into a second error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:
        from workers.errors import describe_startup_error

        message = describe_startup_error(error)
        if message is None:
            raise
        return fail(message)
    return status


if __name__ == "__main__":
    sys.exit(main())
