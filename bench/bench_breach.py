"""A breach campaign to `BENCH_BREACH_RECIPIENTS` accounts (default 100,000) through the
whole path — Postgres rows, the broker, `bindery worker` (1 process, 4 lanes, 4 SMTP
connections), the shared rate limit — into the SMTP sink, in emails per second, against a
raw aiosmtplib blast of the same messages, prepared beforehand, over the same number of
connections into the same kind of sink in the same run: one blast before bindery's run
and one after, as the machine's speed drifts within minutes (the blast alone can differ
by a quarter between two runs). Then: nobody missing, nobody twice.

`BENCH_BREACH_CONNECTIONS` (default 4, the `SMTP_CONNECTIONS` default) sets the number of
connections, lanes and worker threads on bindery's side and of connections in the blast.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesHeaderParser
from pathlib import Path

import aiosmtplib
import asyncpg

from bench.common import (
    BINDERY,
    OUT,
    Result,
    bench_env,
    process,
    scratch_database,
    wait_for_value,
    wait_until,
)
from tasks.breach.message import CompiledMessage, Recipient
from tasks.breach.notice import from_incident
from workers.devstack import commands
from workers.devstack.servers import free_port, running
from workers.settings import load_settings

RECIPIENTS = int(os.environ.get("BENCH_BREACH_RECIPIENTS", "100000"))
CONNECTIONS = int(os.environ.get("BENCH_BREACH_CONNECTIONS", "4"))
INCIDENT = Path(__file__).parent.parent / "tests" / "data" / "incident.toml"


@contextmanager
def sink(directories: list[Path]) -> Iterator[tuple[int, Path]]:
    """A fresh SMTP sink; its directory is added to `directories`, which the run deletes at
    its end (100,000 messages weigh 400 MB; deleting them between phases would load the
    disk during the next). Dirty pages are written out first: the previous phase's
    messages, written back within 30 s, would otherwise make this phase's commits wait."""
    port = free_port()
    directory = OUT / f"breach-mail-{port}"
    directories.append(directory)
    os.sync()
    with running("smtp sink", commands.smtp_sink(port, directory), port, OUT / "breach-sink.log"):
        yield port, directory


async def _accounts(database_url: str) -> list[Recipient]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """INSERT INTO accounts (email, password_hash, first_name, last_name)
               SELECT 'bench' || g || '@example.com', 'x', 'Prénom ' || g, 'Nom'
                 FROM generate_series(1, $1::int) g
               RETURNING id, email, first_name, last_name""",
            RECIPIENTS,
        )
    finally:
        await conn.close()
    return [Recipient(r["id"], r["email"], r["first_name"], r["last_name"]) for r in rows]


async def _blast(port: int, messages: list[tuple[str, bytes]], sender: str) -> float:
    """The baseline: prepared messages over CONNECTIONS connections, as fast as they go."""

    async def connection(share: list[tuple[str, bytes]]) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        await client.ehlo()
        for recipient, data in share:  # the commands bindery sends (tasks/breach/smtp_delivery.py)
            await client.mail(sender, options=[f"SIZE={len(data)}"])
            await client.rcpt(recipient)
            await client.data(data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(connection(messages[i::CONNECTIONS]) for i in range(CONNECTIONS)))
    return len(messages) / (time.perf_counter() - started)


def _in_a_new_sink(messages: list[tuple[str, bytes]], sender: str, directories: list[Path]) -> float:
    with sink(directories) as (port, _):
        return asyncio.run(_blast(port, messages, sender))


@contextmanager
def _deleted(directories: list[Path]) -> Iterator[None]:
    try:
        yield
    finally:
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)


def _message_ids(directory: Path) -> Counter[str]:
    parser = BytesHeaderParser()
    return Counter(
        str(parser.parsebytes(path.read_bytes())["Message-ID"]) for path in directory.glob("*.eml")
    )


def run() -> list[Result]:
    settings = load_settings()
    notice = from_incident(INCIDENT)
    directories: list[Path] = []
    with scratch_database() as database_url, _deleted(directories):
        recipients = asyncio.run(_accounts(database_url))
        prepared = CompiledMessage(
            0, notice, sender=settings.mail_from, privacy_contact=settings.privacy_contact
        )
        messages = [(r.email, prepared.message(r)) for r in recipients]
        blasts = [_in_a_new_sink(messages, prepared.envelope_from, directories)]
        with sink(directories) as (port, directory):
            env = bench_env(
                database_url,
                SMTP_URL=f"smtp://127.0.0.1:{port}",
                SMTP_CONNECTIONS=str(CONNECTIONS),
                BREACH_LANES=str(CONNECTIONS),
                BREACH_MESSAGES_PER_SECOND="100000",
            )
            created = subprocess.run(
                [BINDERY, "breach", "create", "--incident", str(INCIDENT)],
                env=env,
                capture_output=True,
                text=True,
            )
            campaign_id = int(created.stdout.split()[1])
            argv = [BINDERY, "worker", "--queues", "mail", "--processes", "1", "--threads", str(CONNECTIONS)]
            with process(argv, env, "breach-worker.log"):
                wait_until(
                    lambda: "Worker process is ready" in (OUT / "breach-worker.log").read_text(), 30, "worker"
                )
                started = time.perf_counter()
                out = subprocess.run(
                    [BINDERY, "breach", "start", str(campaign_id)], env=env, capture_output=True, text=True
                )
                assert json.loads(out.stdout)["recipients"] == RECIPIENTS, out.stderr
                wait_for_value(
                    database_url,
                    "SELECT state FROM breach_campaigns WHERE id = $1",
                    campaign_id,
                    until=lambda state: state == "done",
                    timeout=3600,
                    what="the campaign",
                )
                figure = RECIPIENTS / (time.perf_counter() - started)
            seen = _message_ids(directory)
        blasts.append(_in_a_new_sink(messages, prepared.envelope_from, directories))
    baseline = sum(blasts) / len(blasts)
    sender_domain = settings.mail_from.rpartition("@")[2].rstrip(">")
    expected = {f"<breach.{campaign_id}.{r.account_id}@{sender_domain}>" for r in recipients}
    missing, duplicates = len(expected - set(seen)), sum(n - 1 for n in seen.values())
    return [
        Result(
            f"breach campaign, {RECIPIENTS:,} recipients",
            figure,
            baseline,
            "emails/s",
            f"baseline: raw aiosmtplib, {CONNECTIONS} connections, the mean of a blast before"
            f" ({blasts[0]:,.0f}) and after ({blasts[1]:,.0f}); {missing} missing, {duplicates} twice",
        )
    ]
