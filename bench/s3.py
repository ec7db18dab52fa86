"""A SeaweedFS S3 server of the benchmark's own, under bench/.out/, removed at the end."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.common import OUT, wait_until
from workers.devstack import seaweedfs
from workers.devstack.servers import free_port_block, running
from workers.settings import load_settings


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (it shares the machine's cores with the
        pipeline it serves)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def s3_server(name: str) -> Iterator[S3Server]:
    """Start it, with the settings' bucket and credentials; S3_ENDPOINT_URL names it
    (in this process's environment, which benchmark subprocesses inherit)."""
    settings = load_settings()
    OUT.mkdir(exist_ok=True)
    port = free_port_block(seaweedfs.PORT_OFFSETS)
    data = OUT / f"{name}-s3-{secrets.token_hex(3)}"
    command = seaweedfs.server_command(data, OUT / f"{name}-s3-identities.json", port, settings)
    try:
        with running("s3", command, port, OUT / f"{name}-s3.log", timeout=60) as server:
            endpoint = f"http://127.0.0.1:{port}"
            os.environ["S3_ENDPOINT_URL"] = endpoint
            wait_until(
                lambda: asyncio.run(seaweedfs.bucket_accepts_writes(load_settings())), 60, "the S3 bucket"
            )
            yield S3Server(endpoint, server.pid)
    finally:
        shutil.rmtree(data, ignore_errors=True)
