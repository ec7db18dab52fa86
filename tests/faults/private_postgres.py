"""A throwaway PostgreSQL cluster of a test's own, to stop and start at will without
disturbing the machine's shared server. Its binaries come from the installed server
(pg_config --bindir); as root it runs as the `postgres` user, as PostgreSQL requires."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from workers.devstack.servers import free_port


def _bindir() -> Path:
    found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
    if found.returncode == 0 and (Path(found.stdout.strip()) / "initdb").exists():
        return Path(found.stdout.strip())
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        raise RuntimeError("no PostgreSQL server binaries (initdb) on this machine")
    return candidates[-1].parent


@dataclass
class PrivatePostgres:
    data: Path
    port: int
    log: Path
    bindir: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """initdb a cluster in a directory of its own (trust auth, 127.0.0.1 only), start it,
    and remove it at the end whatever happened. Not under pytest's tmp_path: its parents
    are closed to the `postgres` user."""
    root = Path(tempfile.mkdtemp(prefix="bindery-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = PrivatePostgres(root / "data", free_port(), root / "postgres.log", _bindir())
    cluster._run("initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped by the test
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
