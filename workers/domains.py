"""The one place that names the domains: the CLI frame mounts what each declares.

Each package in DOMAINS has a `commands` module with `register(commands)`, which adds the
domain's `bindery …` subcommands. Adding a domain is adding its name here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from workers.cli_support import Commands

DOMAINS = ("tasks.billing", "tasks.backups", "tasks.erasure", "tasks.breach")


def domain_commands() -> list[Callable[[Commands], None]]:
    registers = []
    for package in DOMAINS:
        module = importlib.import_module(f"{package}.commands")
        registers.append(module.register)
    return registers
