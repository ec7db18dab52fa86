"""The one place that names the domains: the CLI frame mounts what each declares.

Each package in DOMAINS has an `actors` module (importing it declares the domain's actors
and jobs on the broker) and a `commands` module with `register(commands)`, which adds the
domain's `bindery …` subcommands. Adding a domain is adding its name here. Commands are
collected without the actors: `bindery token list` builds no broker. A domain's
commands only parse arguments and print; the work is in its plain functions, and heavy
imports wait for the command that needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from workers.cli_support import Commands

DOMAINS = ("tasks.billing", "tasks.backups", "tasks.erasure", "tasks.breach")


def declare_actors() -> None:
    """Every actor and job of every domain, declared on the broker (built on first use)."""
    for module in (*(f"{package}.actors" for package in DOMAINS), "tasks.system"):
        importlib.import_module(module)


def domain_commands() -> list[Callable[[Commands], None]]:
    registers = []
    for package in DOMAINS:
        module = importlib.import_module(f"{package}.commands")
        registers.append(module.register)
    return registers
