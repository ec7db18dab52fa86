"""The CLI frame mounts what each domain declares (workers/domains.py), and building it
builds nothing else: `bindery token list` needs no broker."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("package", [*DOMAINS, "tasks.system"])
def test_a_domain_s_actors_imported_alone_are_declared_on_bindery_s_broker(package: str) -> None:
    """Imported first, as `bindery breach start` imports the breach actors: without the
    global broker set, Dramatiq would declare them on a default RabbitMQ broker, and the
    messages would go where no worker listens."""
    module = package if package == "tasks.system" else f"{package}.actors"
    probe = f"import {module}, dramatiq; print(type(dramatiq.get_broker()).__name__)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "RedisBroker"


def test_every_domain_mounts_its_commands() -> None:
    parser = make_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    names = set(commands.choices or ())
    assert {"stripe", "backup", "erasure", "breach", "privacy"} <= names
    assert {"migrate", "web", "worker", "scheduler", "dev", "token"} <= names
    assert len(DOMAINS) == 5


def test_plumbing_names_no_domain_but_in_the_loader() -> None:
    """workers/ and scheduler/ import no module of tasks/: the domains' surfaces reach
    them through workers/domains.py (the development stack, not installed, may)."""
    import ast
    from pathlib import Path

    importers = []
    for path in [*Path("workers").rglob("*.py"), *Path("scheduler").rglob("*.py")]:
        if "devstack" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            importers += [f"{path}: {name}" for name in names if name == "tasks" or name.startswith("tasks.")]
    assert importers == []


def test_the_stripe_webhook_is_mounted_from_billing() -> None:
    from workers.domains import domain_routes
    from workers.web.openapi import openapi_document

    assert [routes.__name__ for routes in domain_routes()] == ["tasks.billing.routes"]
    document = openapi_document()
    assert "/webhooks/stripe" in document["paths"] and "StripeEvent" in document["components"]["schemas"]


def test_every_periodic_job_is_declared_once_and_names_an_actor_that_exists() -> None:
    """The domains' schedules.py and bindery's own, collected: a job naming an actor that
    no domain declares would be sent where no worker listens."""
    import dramatiq

    from scheduler.jobs import declared_schedule
    from workers.domains import declare_actors

    declare_actors()
    jobs = declared_schedule()
    assert len({job.name for job in jobs}) == len(jobs) == 14
    broker = dramatiq.get_broker()
    for job in jobs:
        broker.get_actor(job.actor)  # raises ActorNotFound
