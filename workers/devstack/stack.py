"""`bindery dev` (what `make run` runs): the whole local stack in the foreground.

Checks Postgres and the broker, creates and migrates the database, then runs the
stand-ins (SeaweedFS S3, the SMTP sink, localstripe) and the Procfile's roles under
honcho with prefixed logs. Ctrl-C stops them all; a second `bindery dev` is refused.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from honcho.manager import Manager
from honcho.printer import Printer

from workers.db import connect, migrate_database
from workers.devstack import commands, seaweedfs
from workers.devstack.local_services import START_POSTGRES, START_RABBITMQ, START_REDIS
from workers.devstack.seed import SeedFailed, seed
from workers.devstack.servers import VENV_BIN, port_open, wait_for_port
from workers.reachability import broker_problem, postgres_problem
from workers.settings import Settings
from workers.tokens import TokenVerifier, create_token

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ROLES = ("web", "worker", "scheduler")


def _procfile_roles(procfile: Path) -> dict[str, str]:
    roles = {}
    for line in procfile.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and not line.startswith("#"):
            roles[name.strip()] = command.strip()
    return roles


def _lock(dev_dir: Path) -> IO[str] | None:
    """Hold .dev/dev.lock while the stack runs; None when another stack holds it."""
    dev_dir.mkdir(parents=True, exist_ok=True)
    handle = (dev_dir / "dev.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        print(f"bindery: the dev stack is already running (pid {holder}); stop it first", file=sys.stderr)
        return None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


async def _prepare_database(settings: Settings, saved_token: str | None) -> str:
    """Create and migrate the database; return a working development token."""
    await migrate_database(settings.database_url, create=True)
    conn = await connect(settings.database_url)
    try:
        if saved_token and await TokenVerifier(conn, cache_seconds=0).verify(saved_token):
            return saved_token
        # A fresh token each time the old one is lost; earlier ones are revoked, not deleted
        # (jobs they asked for keep pointing at them).
        await conn.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE name LIKE 'dev-%' AND revoked_at IS NULL"
        )
        return await create_token(conn, f"dev-{int(time.time())}", ["*"])
    finally:
        await conn.close()


def run_dev_stack(settings: Settings) -> int:
    dev_dir = Path(os.environ.get("BINDERY_DEV_DIR", PROJECT_ROOT / ".dev")).resolve()
    lock = _lock(dev_dir)
    if lock is None:
        return 1
    problem = asyncio.run(postgres_problem(settings.database_url, START_POSTGRES)) or broker_problem(
        settings.broker_url, START_REDIS, START_RABBITMQ
    )
    if problem:
        print(f"bindery: {problem}", file=sys.stderr)
        return 1
    ports = _ports(settings)
    busy = [f"{name} port {port}" for name, port in ports.items() if port_open("127.0.0.1", port)]
    if busy:
        print(f"bindery: cannot start the dev stack: {', '.join(busy)} already in use", file=sys.stderr)
        return 1

    token_file = dev_dir / "dev-token"
    saved = token_file.read_text().strip() if token_file.exists() else None
    token = asyncio.run(_prepare_database(settings, saved))
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    stripe_base = settings.stripe_api_base or "http://127.0.0.1:8420"
    env = {**os.environ, "STRIPE_API_BASE": stripe_base, "PORT": str(ports["web"]), "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    manager = Manager(Printer(sys.stdout))
    for name, argv in _stand_ins(settings, dev_dir, ports).items():
        manager.add_process(name, shlex.join(argv), env=env, cwd=str(PROJECT_ROOT))
    roles = _procfile_roles(PROJECT_ROOT / "Procfile")
    for role in ROLES:
        manager.add_process(role, roles[role], env=env, cwd=str(PROJECT_ROOT))

    seeding = settings.model_copy(update={"stripe_api_base": stripe_base})
    threading.Thread(target=_announce, args=(seeding, ports, token), daemon=True).start()
    manager.loop()
    lock.close()
    return manager.returncode or 0


def _seed(settings: Settings, api: str, token: str) -> None:
    """The demo customers, on a database that has none yet (workers/devstack/seed.py)."""
    try:
        outcome = asyncio.run(seed(settings, api, token))
    except SeedFailed as failed:
        print(f"bindery dev: seeding failed: {failed}", flush=True)
        return
    if outcome["seeded"]:
        print(
            f"bindery dev: seeded accounts {outcome['accounts']}, draft campaign {outcome['draft_campaign']}",
            flush=True,
        )


def seed_running_stack(settings: Settings) -> int:
    """`bindery dev seed`: seed the stack `make run` runs (its web port, its dev token)."""
    dev_dir = Path(os.environ.get("BINDERY_DEV_DIR", PROJECT_ROOT / ".dev")).resolve()
    token_file = dev_dir / "dev-token"
    if not token_file.exists():
        print("bindery dev seed: no .dev/dev-token: start the stack with `make run` first", file=sys.stderr)
        return 1
    ports = _ports(settings)
    stripe_base = settings.stripe_api_base or f"http://127.0.0.1:{ports['stripe']}"
    seeding = settings.model_copy(update={"stripe_api_base": stripe_base})
    try:
        outcome = asyncio.run(
            seed(seeding, f"http://127.0.0.1:{ports['web']}", token_file.read_text().strip())
        )
    except SeedFailed as failed:
        print(f"bindery dev seed: {failed}", file=sys.stderr)
        return 1
    print(outcome)
    return 0


def _export_bucket_ready(settings: Settings) -> bool:
    deadline = time.monotonic() + 60
    while not asyncio.run(seaweedfs.bucket_accepts_writes(settings)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    asyncio.run(seaweedfs.create_export_bucket(settings))
    return True


def _ports(settings: Settings) -> dict[str, int]:
    """Every port the stack listens on, by what listens."""
    stripe_port = urlsplit(settings.stripe_api_base or "http://127.0.0.1:8420").port or 8420
    ports = {
        "web": int(os.environ.get("PORT", "8000")),
        "s3": urlsplit(settings.s3_endpoint_url or "http://127.0.0.1:8333").port or 8333,
        "smtp": urlsplit(settings.smtp_url.get_secret_value()).port or 25,
        "stripe": stripe_port,
        # localstripe sits behind stripe_extras, which serves what it lacks (mandates, SEPA lists).
        "localstripe": stripe_port + 1,
    }
    for role, port in (
        ("worker metrics", settings.worker_metrics_port),
        ("scheduler metrics", settings.scheduler_metrics_port),
    ):
        if port:
            ports[role] = port
    return ports


def _stand_ins(settings: Settings, dev_dir: Path, ports: dict[str, int]) -> dict[str, list[str]]:
    return {
        "s3": seaweedfs.server_command(dev_dir / "s3", dev_dir / "s3-identities.json", ports["s3"], settings),
        "smtp": commands.smtp_sink(ports["smtp"], dev_dir / "mail"),
        "localstripe": commands.localstripe(ports["localstripe"]),
        # Webhooks reach the web process late, some twice, out of order, as Stripe's do.
        "stripe": commands.stripe_extras(
            ports["stripe"],
            ports["localstripe"],
            *commands.stripe_webhooks(ports["web"], settings.webhook_secrets[0]),
        ),
    }


def _announce(settings: Settings, ports: dict[str, int], token: str) -> None:
    if not all(wait_for_port("127.0.0.1", port, 60) for port in ports.values()):
        print(
            "bindery dev: some services did not open their port within 60 s; see the logs above", flush=True
        )
        return
    if not _export_bucket_ready(settings):
        print("bindery dev: the S3 server did not accept writes within 60 s; see its log above", flush=True)
        return
    _seed(settings, f"http://127.0.0.1:{ports['web']}", token)
    base = f"http://127.0.0.1:{ports['web']}"
    worker_metrics = ports.get("worker metrics", "off")
    scheduler_metrics = ports.get("scheduler metrics", "off")
    print(
        f"""
bindery dev: ready
  API          {base}   (OpenAPI: {base}/openapi.json, metrics: {base}/metrics)
  S3           http://127.0.0.1:{ports["s3"]}
  SMTP sink    127.0.0.1:{ports["smtp"]}  (messages in .dev/mail/)
  Stripe fake  http://127.0.0.1:{ports["stripe"]}  (webhooks to /webhooks/stripe, 1-5 s late)
  metrics      {base}/metrics, worker :{worker_metrics}, scheduler :{scheduler_metrics}
  dev token    in .dev/dev-token

  curl {base}/readyz
  curl -X POST -H "Authorization: Bearer $(cat .dev/dev-token)" {base}/jobs/system.ping
  curl -H "Authorization: Bearer $(cat .dev/dev-token)" {base}/jobs/JOB_ID

Ctrl-C stops everything.
""",
        flush=True,
    )
