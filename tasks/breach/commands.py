"""`bindery breach …`: breach notification campaigns, mounted by the CLI frame (workers/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from workers.cli_support import Commands, fail
from workers.settings import Settings


def register(commands: Commands) -> None:
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


def cmd_breach(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.breach import admin, notice
    from workers.errors import JobError

    try:
        if args.action == "create":
            if args.incident:
                written = notice.from_incident(args.incident)
            elif all((args.subject_fr, args.subject_en, args.body_fr, args.body_en)):
                written = notice.from_files(args.subject_fr, args.subject_en, args.body_fr, args.body_en)
            else:
                return fail("give --incident FILE, or each of --subject-fr/en and --body-fr/en", 2)
            campaign_id = asyncio.run(admin.create(settings, written))
            print(f"campaign {campaign_id} created (draft); check it: bindery breach preview {campaign_id}")
            return 0
        if args.action == "preview":
            print(asyncio.run(admin.preview(settings, args.campaign_id, args.to)))
            return 0
        if args.action == "start":
            result: Any = asyncio.run(admin.start(settings, args.campaign_id))
        elif args.action in ("pause", "resume", "cancel"):
            result = asyncio.run(admin.move(settings, args.campaign_id, args.action))
        else:
            return _watch_breach(settings, args) if args.watch else _print_breach(settings, args)
    except JobError as error:
        return fail(str(error))
    print(json.dumps(result, indent=2, default=str))
    return 0


def _print_breach(settings: Settings, args: argparse.Namespace) -> int:
    from tasks.breach import admin

    status = asyncio.run(admin.status(settings, args.campaign_id))
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

    from tasks.breach import admin

    while True:
        status = asyncio.run(admin.status(settings, args.campaign_id))
        redraw = sys.stdout.isatty() and not args.json  # one line redrawn, else one line each time
        line = json.dumps(status, default=str) if args.json else _breach_line(status)
        print(("\r" if redraw else "") + line, end="" if redraw else "\n", flush=True)
        if status["state"] != "sending":
            if redraw:
                print()
            return 0
        time.sleep(2)
