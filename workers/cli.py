"""`bindery`: one console script for every process role and operator command.

The CLI only parses arguments and calls plain functions; each command says what went
wrong in one line and exits non-zero (2 for bad settings or usage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workers.progress import ProgressBar
from workers.settings import Settings, SettingsError, load_settings
from workers.text_tables import print_table

EXIT_SETTINGS = 2


def _fail(message: str, status: int = 1) -> int:
    print(f"bindery: {message}", file=sys.stderr)
    return status


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
        from workers.devstack.stack import run_dev_stack
    except ModuleNotFoundError:  # the installed package leaves the development stack out
        print("bindery dev: the development stack runs from a checkout (`make run`)", file=sys.stderr)
        return 2
    return run_dev_stack(settings)


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
                    return _fail(f"no active token named {args.name!r}")
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
            return _fail(str(error))
        finally:
            await conn.close()

    return asyncio.run(run())


def cmd_stripe(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.billing.operate import list_events, reset_failed
    from workers.db import connect

    if args.action == "retry" and (args.event_id is None) == (not args.failed):
        return _fail("name one EVENT_ID or --failed", 2)
    if args.action == "push":
        return asyncio.run(_push_account(settings, args.account_id))
    if args.action == "reconcile":
        return asyncio.run(_reconcile(settings))
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
            return _fail(f"no failed event {args.event_id!r}")
        if retried:
            import tasks  # noqa: F401  (declares the billing actors)
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
        return _fail(str(error))
    print(("created" if outcome["created"] else "updated") + f" Stripe customer {outcome['customer_id']}")
    return 0


async def _backfill(settings: Settings, since: str | None) -> int:
    from datetime import UTC, datetime

    from tasks.billing.backfill import backfill
    from tasks.billing.stripe_calls import StripeGate
    from workers.stripe_client import stripe_session

    try:
        start = datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None
    except ValueError:
        return _fail("--since takes a date such as 2026-01-31", 2)
    async with stripe_session(settings) as (conn, client):
        counts = await backfill(conn, client, StripeGate(None), start)
    print(", ".join(f"{count} {name}" for name, count in counts.items()) + " applied")
    return 0


async def _reconcile(settings: Settings) -> int:
    import tasks  # noqa: F401  (declares the billing actors)
    from tasks.billing.actors import send_events
    from tasks.billing.reconcile import reconcile_events
    from tasks.billing.stripe_calls import StripeGate
    from workers.stripe_client import stripe_session

    async with stripe_session(settings) as (conn, client):
        stored = await reconcile_events(conn, client, StripeGate(None))
    await send_events(stored)
    print(f"stored {len(stored)} event(s) the inbox lacked")
    return 0


def cmd_erasure(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.erasure import operate
    from workers.errors import JobError

    try:
        if args.action == "request":
            result = asyncio.run(operate.request(settings, args.account_id, now=args.now))
        elif args.action == "cancel":
            result = asyncio.run(operate.cancel(settings, args.account_id))
        elif args.action == "reapply":
            erased = asyncio.run(operate.reapply(settings, args.target))
            result = {"erased_again": erased}
        else:
            found = asyncio.run(operate.status(settings, args.request_id))
            if found is None:
                return _fail(f"no erasure request {args.request_id}")
            result = found
    except JobError as error:
        return _fail(str(error))
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


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date

    from botocore.exceptions import BotoCoreError, ClientError

    from tasks.backups import operate
    from tasks.backups.pipeline import BackupFailed
    from workers.errors import JobError
    from workers.s3 import describe_s3_error

    try:
        day = date.fromisoformat(args.day) if getattr(args, "day", None) else None
    except ValueError:
        return _fail("--day takes a date such as 2026-11-25", 2)
    try:
        if args.action == "run":
            progress = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
            result: Any = asyncio.run(operate.run(settings, args.instance, day, args.force, progress))
            if progress is not None:
                progress.close()
        elif args.action == "verify":
            result = asyncio.run(operate.verify(settings, args.backup_id))
        elif args.action == "restore":
            result = asyncio.run(operate.restore(settings, args.backup_id, args.into))
        elif args.action == "init-bucket":
            result = asyncio.run(operate.init_bucket(settings))
        elif args.action == "list":
            result = asyncio.run(operate.list_backups(settings, args.instance))
            if not args.json:
                columns = ("id", "instance_id", "day", "generation", "state", "object_bytes", "finished_at")
                print_table(result, (*columns, "error"))
                return 0
        else:
            result = asyncio.run(operate.status(settings, day))
            if not args.json:
                _print_backup_status(result)
                return 0
    except (JobError, BackupFailed) as error:
        return _fail(str(error))
    except (ClientError, BotoCoreError) as error:
        # e.g. wrong credentials: S3's error code, never the keys.
        endpoint = settings.s3_endpoint_url or "the default endpoint"
        return _fail(f"S3 at {endpoint}: {describe_s3_error(error)}")
    print(json.dumps(result, indent=2, default=str))
    return 0


def _print_backup_status(status: dict[str, Any]) -> None:
    print(
        f"backups of {status['day']}: {status['done']} done ({status['verified']} verified), "
        f"{status['failed']} failed, {status['in_progress']} in progress, "
        f"{len(status['missing'])} paid instance(s) without one"
    )
    print(
        f"  {status['dump_bytes'] / 1e6:.1f} MB dumped, {status['object_bytes'] / 1e6:.1f} MB stored; "
        f"slowest {status['seconds_max'] or 0:.1f} s, median {status['seconds_median'] or 0:.1f} s"
    )
    if status["missing"]:
        print("  without a backup: " + ", ".join(map(str, status["missing"])))
    if status["failures"]:
        print_table(status["failures"], ("instance_id", "backup_id", "error"))


def cmd_breach(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.breach import notice, operate
    from workers.errors import JobError

    try:
        if args.action == "create":
            if args.incident:
                written = notice.from_incident(args.incident)
            elif all((args.subject_fr, args.subject_en, args.body_fr, args.body_en)):
                written = notice.from_files(args.subject_fr, args.subject_en, args.body_fr, args.body_en)
            else:
                return _fail("give --incident FILE, or each of --subject-fr/en and --body-fr/en", 2)
            campaign_id = asyncio.run(operate.create(settings, written))
            print(f"campaign {campaign_id} created (draft); check it: bindery breach preview {campaign_id}")
            return 0
        if args.action == "preview":
            print(asyncio.run(operate.preview(settings, args.campaign_id, args.to)))
            return 0
        if args.action == "start":
            result: Any = asyncio.run(operate.start(settings, args.campaign_id))
        elif args.action in ("pause", "resume", "cancel"):
            result = asyncio.run(operate.move(settings, args.campaign_id, args.action))
        else:
            return _watch_breach(settings, args) if args.watch else _print_breach(settings, args)
    except JobError as error:
        return _fail(str(error))
    print(json.dumps(result, indent=2, default=str))
    return 0


def _print_breach(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.breach import operate

    status = asyncio.run(operate.status(settings, args.campaign_id))
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(_breach_line(status))
        if status["pause_reason"]:
            print(f"  paused: {status['pause_reason']}")
        if status["reply_codes"]:
            print("  reply codes: " + ", ".join(f"{code} ×{n}" for code, n in status["reply_codes"].items()))
    return 0


def _breach_line(status: dict[str, Any]) -> str:
    from workers.progress import bar

    done = status["sent"] + status["failed"] + status["skipped"]
    eta = f", about {status['eta_seconds']} s left" if status["eta_seconds"] is not None else ""
    return (
        f"campaign {status['id']} {status['state']}: {bar(done, status['recipients'])} "
        f"{status['sent']} sent, {status['failed']} failed, {status['skipped']} skipped, "
        f"{status['pending']} pending; {status['rate_per_second']}/s{eta}"
    )


def _watch_breach(settings: Settings, args: argparse.Namespace) -> int:
    """Redraw the status line every two seconds until the campaign stops sending."""
    import time

    from tasks.breach import operate

    while True:
        status = asyncio.run(operate.status(settings, args.campaign_id))
        redraw = sys.stdout.isatty() and not args.json  # one line redrawn, else one line each time
        line = json.dumps(status, default=str) if args.json else _breach_line(status)
        print(("\r" if redraw else "") + line, end="" if redraw else "\n", flush=True)
        if status["state"] != "sending":
            if redraw:
                print()
            return 0
        time.sleep(2)


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

    dev = commands.add_parser("dev", help="the whole local stack in the foreground")
    dev.set_defaults(handler=cmd_dev)

    stripe_ = commands.add_parser("stripe", help="the Stripe event inbox")
    stripe_actions = stripe_.add_subparsers(dest="action", required=True, metavar="ACTION")
    events = stripe_actions.add_parser("events", help="recent inbox events (never their payloads)")
    events.add_argument("--failed", action="store_true", help="only events that failed")
    events.add_argument("--json", action="store_true")
    retry = stripe_actions.add_parser("retry", help="process failed events again")
    retry.add_argument("event_id", nargs="?")
    retry.add_argument("--failed", action="store_true", help="every failed event")
    stripe_actions.add_parser("reconcile", help="store the events Stripe has and the inbox lacks")
    backfill = stripe_actions.add_parser("backfill", help="read Stripe's current billing objects")
    backfill.add_argument("--since", help="only objects created on or after this date (YYYY-MM-DD)")
    push = stripe_actions.add_parser("push", help="create or update an account's Stripe customer now")
    push.add_argument("account_id", type=int)
    stripe_.set_defaults(handler=cmd_stripe)

    backup = commands.add_parser("backup", help="encrypted backups of instances")
    backup_actions = backup.add_subparsers(dest="action", required=True, metavar="ACTION")
    backup_run = backup_actions.add_parser("run", help="back up one instance, or every paid one, now")
    backup_run.add_argument("--instance", type=int, help="one instance (default: every paid account's)")
    backup_run.add_argument("--day", help="the day it is for (YYYY-MM-DD; default today in Paris)")
    backup_run.add_argument("--force", action="store_true", help="a new generation even if one exists")
    backup_verify = backup_actions.add_parser("verify", help="download, check, decrypt, pg_restore --list")
    backup_verify.add_argument("backup_id")
    backup_restore = backup_actions.add_parser("restore", help="restore a backup into a database")
    backup_restore.add_argument("backup_id")
    backup_restore.add_argument("--into", required=True, metavar="DATABASE_URL")
    backup_list = backup_actions.add_parser("list", help="the catalog, newest first")
    backup_list.add_argument("--instance", type=int, help="one instance's backups")
    backup_list.add_argument("--json", action="store_true")
    backup_status = backup_actions.add_parser("status", help="a night's run: done, failed, in progress")
    backup_status.add_argument("--day", help="the night's day (YYYY-MM-DD; default today in Paris)")
    backup_status.add_argument("--json", action="store_true")
    backup_actions.add_parser("init-bucket", help="create the bucket, set its lifecycle rules (backstops)")
    backup.set_defaults(handler=cmd_backup)

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

    breach = commands.add_parser("breach", help="breach notification campaigns")
    breach_actions = breach.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = breach_actions.add_parser("create", help="a draft campaign from files or the GDPR template")
    create.add_argument("--incident", type=Path, help="TOML incident file for the built-in Art. 34 template")
    for language in ("fr", "en"):
        create.add_argument(f"--subject-{language}", type=Path, metavar="FILE")
        create.add_argument(f"--body-{language}", type=Path, metavar="FILE")
    preview = breach_actions.add_parser("preview", help="render a campaign's message, or send one copy")
    preview.add_argument("campaign_id", type=int)
    preview.add_argument("--to", metavar="ADDRESS", help="send one copy to this operator address")
    for action, text in (
        ("start", "snapshot every account and start sending"),
        ("pause", "stop sending for now"),
        ("resume", "go on sending a paused campaign"),
        ("cancel", "stop for good (what was sent stays sent)"),
    ):
        breach_actions.add_parser(action, help=text).add_argument("campaign_id", type=int)
    breach_status = breach_actions.add_parser("status", help="sent, failed, pending, rate, ETA")
    breach_status.add_argument("campaign_id", type=int)
    breach_status.add_argument("--json", action="store_true")
    breach_status.add_argument("--watch", action="store_true", help="refresh until it stops sending")
    breach.set_defaults(handler=cmd_breach)

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
        return _fail(str(error), EXIT_SETTINGS)
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
        return _fail(message)
    return status


if __name__ == "__main__":
    sys.exit(main())
