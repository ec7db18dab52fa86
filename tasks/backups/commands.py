"""`bindery backup …`: encrypted backups of instances, mounted by the CLI frame (workers/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from workers.cli_support import Commands, fail
from workers.progress import ProgressBar
from workers.settings import Settings
from workers.text_tables import print_table


def register(commands: Commands) -> None:
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
    backup_actions.add_parser(
        "init-bucket",
        help="create every bucket bindery writes to (backups, export archives), set their lifecycle rules",
    )
    backup.set_defaults(handler=cmd_backup)


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date

    from botocore.exceptions import BotoCoreError, ClientError

    from tasks.backups import admin
    from tasks.backups.pipeline import BackupFailed
    from workers.errors import JobError
    from workers.s3 import describe_s3_error

    try:
        day = date.fromisoformat(args.day) if getattr(args, "day", None) else None
    except ValueError:
        return fail("--day takes a date such as 2026-11-25", 2)
    try:
        if args.action == "run":
            progress = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
            result: Any = asyncio.run(admin.run(settings, args.instance, day, args.force, progress))
            if progress is not None:
                progress.close()
        elif args.action == "verify":
            result = asyncio.run(admin.verify(settings, args.backup_id))
        elif args.action == "restore":
            result = asyncio.run(admin.restore(settings, args.backup_id, args.into))
        elif args.action == "init-bucket":
            result = asyncio.run(admin.init_bucket(settings))
        elif args.action == "list":
            result = asyncio.run(admin.list_backups(settings, args.instance))
            if not args.json:
                columns = ("id", "instance_id", "day", "generation", "state", "object_bytes", "finished_at")
                print_table(result, (*columns, "error"))
                return 0
        else:
            result = asyncio.run(admin.status(settings, day))
            if not args.json:
                _print_backup_status(result)
                return 0
    except (JobError, BackupFailed) as error:
        return fail(str(error))
    except (ClientError, BotoCoreError) as error:
        # e.g. wrong credentials: S3's error code, never the keys.
        endpoint = settings.s3_endpoint_url or "the default endpoint"
        return fail(f"S3 at {endpoint}: {describe_s3_error(error)}")
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
