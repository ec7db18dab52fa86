"""`make run` (= `bindery dev`): the whole local stack starts, answers, and stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.databases import new_bindery_database
from tests.http import answers, call
from tests.processes import BINDERY, bindery_env, run_bindery, wait_until
from workers.db import connect, drop_database
from workers.devstack import seaweedfs
from workers.devstack.servers import free_port, free_port_block

# Beside SeaweedFS's ports: the SMTP sink, the Stripe stand-in and localstripe behind it
# (the stack puts it at the Stripe port + 1), the web role.
SMTP, STRIPE, WEB = 20, 21, 23


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _all_descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.slow
def test_dev_stack_seeds_serves_then_stops_on_ctrl_c_leaving_nothing(
    database_url: str, tmp_path: Path
) -> None:
    catalog = database_url.rsplit("/", 1)[0] + f"/devstack_{tmp_path.name[-10:].replace('-', '_')}"
    asyncio.run(new_bindery_database(catalog))
    try:
        _serve_and_stop(catalog, tmp_path)
    finally:
        asyncio.run(_drop_seeded(catalog))


async def _drop_seeded(catalog: str) -> None:
    conn = await connect(catalog)
    try:
        urls = [row["database_url"] for row in await conn.fetch("SELECT database_url FROM instances")]
    finally:
        await conn.close()
    for url in urls:
        await drop_database(url)
    await drop_database(catalog)


def _serve_and_stop(database_url: str, tmp_path: Path) -> None:
    # One block below the kernel's range of ephemeral ports: a port drawn from that range
    # may be taken as the source port of any outgoing connection (SeaweedFS's own, when
    # it starts) before the server meant for it binds, and localstripe's port is chosen
    # by the stack, not checked free here. That happened: localstripe failed to bind.
    s3 = free_port_block((*seaweedfs.PORT_OFFSETS, SMTP, STRIPE, STRIPE + 1, WEB))
    smtp, stripe, web = s3 + SMTP, s3 + STRIPE, s3 + WEB
    env = bindery_env(
        DATABASE_URL=database_url,
        BINDERY_DEV_DIR=str(tmp_path / "dev"),
        PORT=str(web),
        S3_ENDPOINT_URL=f"http://127.0.0.1:{s3}",
        SMTP_URL=f"smtp://127.0.0.1:{smtp}",
        STRIPE_API_BASE=f"http://127.0.0.1:{stripe}",
    )
    log = (tmp_path / "dev.log").open("wb")
    stack = subprocess.Popen(
        [BINDERY, "dev"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_until(lambda: b"bindery dev: ready" in (tmp_path / "dev.log").read_bytes(), 90, "the dev stack")
        base = f"http://127.0.0.1:{web}"
        assert answers(f"{base}/readyz")
        token = (tmp_path / "dev" / "dev-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        _, _, job = call("POST", f"{base}/jobs/system.ping", body={}, headers=headers)
        wait_until(
            lambda: call("GET", f"{base}/jobs/{job['job_id']}", headers=headers)[2]["status"] == "done",
            30,
            "the ping job",
        )
        stripe_status, _, _ = call(
            "GET", f"http://127.0.0.1:{stripe}/v1/customers", headers={"Authorization": "Bearer sk_test_dev"}
        )
        assert stripe_status == 200
        # The Stripe fake delivers its webhooks to the web process, as Stripe would.
        created = urllib.request.Request(
            f"http://127.0.0.1:{stripe}/v1/customers",
            data=b"email=dev%40example.org",
            headers={"Authorization": "Bearer sk_test_dev"},
        )
        with urllib.request.urlopen(created, timeout=10) as answer:
            customer_id = json.load(answer)["id"]
        wait_until(
            lambda: asyncio.run(_inbox_has(database_url, "customer.created", customer_id)),
            60,
            "the customer.created webhook in the inbox",
        )
        assert "curl" in (tmp_path / "dev.log").read_text()
        # The empty catalog was seeded through the stack's own front doors.
        wait_until(
            lambda: b"bindery dev: seeded accounts" in (tmp_path / "dev.log").read_bytes(), 90, "the seed"
        )
        seeded = asyncio.run(_seeded(database_url))
        assert seeded == {"accounts": 4, "paid": 3, "campaigns": 1, "erasures": 1, "exports": 1}, seeded
        again = run_bindery("dev", "seed", env=env, timeout=60)
        assert again.returncode == 0 and "has accounts already" in again.stdout

        second = run_bindery("dev", env=env, timeout=30)
        assert second.returncode == 1
        assert "already running" in second.stderr

        children = _all_descendants(stack.pid)
        assert len(children) >= 6
        os.killpg(stack.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        stack.wait(timeout=15)
        wait_until(lambda: not any(_alive(pid) for pid in children), 10, "every process of the stack to exit")
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
        log.close()


async def _seeded(database_url: str) -> dict[str, int]:
    """What the seed made, once the worker has done its jobs (within a minute)."""
    conn = await connect(database_url)
    try:
        deadline = time.monotonic() + 60
        while True:
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM accounts) AS accounts,
                          (SELECT count(*) FROM paid_accounts) AS paid,
                          (SELECT count(*) FROM breach_campaigns WHERE state = 'draft') AS campaigns,
                          (SELECT count(*) FROM erasure_requests WHERE state = 'pending') AS erasures,
                          (SELECT count(*) FROM privacy_requests
                            WHERE kind = 'export' AND state = 'closed') AS exports"""
            )
            assert row is not None
            if (row["paid"] == 3 and row["exports"] == 1) or time.monotonic() > deadline:
                return dict(row)
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def _inbox_has(database_url: str, event_type: str, object_id: str) -> bool:
    conn = await connect(database_url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM stripe_events WHERE type = $1 AND object_id = $2", event_type, object_id
            )
        )
    finally:
        await conn.close()


def test_dev_stack_names_the_unreachable_database(tmp_path: Path) -> None:
    env = bindery_env(
        BINDERY_DEV_DIR=str(tmp_path / "dev"),
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
    )
    result = run_bindery("dev", env=env, timeout=30)
    assert result.returncode == 1
    assert "DATABASE_URL" in result.stderr and "pg_ctlcluster" in result.stderr


def test_dev_stack_names_the_unreachable_broker(database_url: str, tmp_path: Path) -> None:
    env = bindery_env(BINDERY_DEV_DIR=str(tmp_path / "dev"), BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = run_bindery("dev", env=env, timeout=30)
    assert result.returncode == 1
    assert "BROKER_URL" in result.stderr and "redis-server" in result.stderr
