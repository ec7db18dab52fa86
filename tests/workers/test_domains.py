"""The CLI frame mounts what each domain declares (workers/domains.py), and building it
builds nothing else: `bindery token list` needs no broker."""

from __future__ import annotations

import subprocess
import sys

from workers.cli import make_parser
from workers.domains import DOMAINS


def test_building_the_cli_imports_no_broker_and_no_actor() -> None:
    probe = (
        "import sys, workers.cli as cli; cli.make_parser(); "
        "print(sorted(m for m in sys.modules"
        " if m in ('dramatiq', 'workers.broker') or m.endswith('.actors')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_domain_mounts_its_commands() -> None:
    parser = make_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    names = set(commands.choices or ())
    assert {"stripe", "backup", "erasure", "breach"} <= names
    assert {"migrate", "web", "worker", "scheduler", "dev", "token"} <= names
    assert len(DOMAINS) == 4
