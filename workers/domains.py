"""The one place that names the domains: the CLI frame mounts what each declares.

Each package in DOMAINS has an `actors` module (importing it declares the domain's actors
and jobs on the broker) and a `commands` module with `register(commands)`, which adds the
domain's `bindery …` subcommands. A domain with HTTP routes has a `routes` module:
`register(app)` adds them to the web process, `openapi_paths()` and `openapi_schemas()`
describe them. A domain that keeps records for a while has a `retention` module:
`prune(pool, now)`, run daily by `system.prune`. Its periodic jobs are the `SCHEDULES` of
its `schedules` module; where it holds data about an account, the `PLACES` of its
`data_map` module (workers/data_map.py). Adding a domain is adding its name here. Commands are
collected without the actors: `bindery token list` builds no broker. A domain's
commands only parse arguments and print; the work is in its plain functions, and heavy
imports wait for the command that needs them.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import ModuleType
from typing import Any

from workers.cli_support import Commands

DOMAINS = ("tasks.billing", "tasks.backups", "tasks.erasure", "tasks.breach", "tasks.privacy")


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


def _modules(name: str) -> list[ModuleType]:
    """The module `name` of every domain that has one."""
    return [
        importlib.import_module(f"{package}.{name}")
        for package in DOMAINS
        if importlib.util.find_spec(f"{package}.{name}") is not None
    ]


def domain_routes() -> list[ModuleType]:
    return _modules("routes")


def domain_console() -> list[ModuleType]:
    """Each domain's `console` module: `status(pool)`, its lines of the overview."""
    return _modules("console")


def domain_retention() -> list[Callable[[Any, datetime], Awaitable[dict[str, int]]]]:
    """Each domain's `prune(pool, now)`: counts of what it deleted, by table."""
    return [module.prune for module in _modules("retention")]


def domain_schedules() -> list[Any]:
    """Every domain's periodic jobs (scheduler.jobs.ScheduledJob), domain by domain."""
    return [job for module in _modules("schedules") for job in module.SCHEDULES]


def data_map() -> list[Any]:
    """Every place bindery holds data about an account (workers.data_map.Place): the
    plumbing's own, then each domain's, in DOMAINS order."""
    from workers import data_map as plumbing

    return [*plumbing.PLACES, *(place for module in _modules("data_map") for place in module.PLACES)]
