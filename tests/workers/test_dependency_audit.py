"""`.ci/audit_latest_releases.py`, the audit `make lint` falls back on when pip-audit cannot
reach PyPI's per-version API: run for real against project pages served from 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "audit_latest_releases.py"

PAGES = {
    "clean": {"info": {"version": "2.0"}, "vulnerabilities": []},
    "flawed": {
        "info": {"version": "1.4"},
        "vulnerabilities": [
            {"id": "PYSEC-0000-1", "fixed_in": ["1.5"], "withdrawn": None},
            {"id": "PYSEC-0000-2", "fixed_in": [], "withdrawn": "2026-01-01T00:00:00"},
        ],
    },
}


async def run_audit(requirements: str) -> tuple[int, str]:
    async def project(request: web.Request) -> web.Response:
        page = PAGES.get(request.match_info["name"])
        return web.json_response(page) if page else web.json_response({}, status=404)

    app = web.Application()
    app.router.add_get("/pypi/{name}/json", project)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"AUDIT_PYPI_URL": f"http://127.0.0.1:{port}", "PATH": "/usr/bin:/bin"},
        )
        output, _ = await asyncio.wait_for(process.communicate(requirements.encode()), 30)
    finally:
        await runner.cleanup()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_a_vulnerability_of_a_dependency_at_its_latest_release_fails_and_is_named() -> None:
    status, output = await run_audit("clean==2.0\nflawed==1.4 ; python_version >= '3.11'\n")
    assert status == 1
    assert "flawed 1.4: PYSEC-0000-1 (fixed in: 1.5)" in output
    assert "PYSEC-0000-2" not in output  # withdrawn
    assert "2 of 2 locked dependencies are their latest release, 1 known vulnerabilities" in output


async def test_a_dependency_below_its_latest_release_is_named_as_not_audited_not_passed_as_clean() -> None:
    status, output = await run_audit("clean==1.0\nflawed==1.3\n")
    assert status == 0
    assert "0 of 2 locked dependencies are their latest release" in output
    assert "not audited" in output
    assert "clean 1.0 (latest 2.0), flawed 1.3 (latest 1.4)" in output


async def test_an_unknown_project_is_a_failure_to_audit_not_a_pass() -> None:
    status, output = await run_audit("nowhere==1.0\n")
    assert status == 2
    assert "NOT RUN" in output
