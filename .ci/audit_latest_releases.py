"""Audit locked dependencies from PyPI's project pages when pip-audit cannot run.

pip-audit asks PyPI for each pinned version (`/pypi/NAME/VERSION/json`) or asks OSV; on a
network that lets only package downloads through, neither answers. PyPI's project page
(`/pypi/NAME/json`) still does, and its `vulnerabilities` are those of the project's
latest release. So a dependency locked at its latest release is audited exactly; one
locked at an older release cannot be audited from here, and is named rather than passed.

Reads `NAME==VERSION` lines (as `uv export` writes them) on standard input.
Exit 0: no known vulnerability in what could be audited; 1: a finding;
2: PyPI's project pages could not be read.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

# Overridable so the tests can serve project pages from 127.0.0.1.
PYPI_URL = os.environ.get("AUDIT_PYPI_URL", "https://pypi.org")
if not PYPI_URL.startswith(("https://", "http://127.0.0.1:")):
    sys.exit(f"AUDIT_PYPI_URL must be https:// or http://127.0.0.1:PORT, not {PYPI_URL!r}")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


@dataclass
class Audit:
    name: str
    locked: str
    latest: str = ""
    findings: list[str] = field(default_factory=list)


def pins(lines: list[str]) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for line in lines if (m := PIN.match(line.strip()))]


def audit(name: str, locked: str) -> Audit:
    url = f"{PYPI_URL}/pypi/{name}/json"
    # The scheme is checked above (no file:); the name comes from our own lock file.
    with urllib.request.urlopen(url, timeout=15) as response:  # noqa: S310  # nosec B310
        project = json.load(response)
    result = Audit(name, locked, latest=project["info"]["version"])
    if result.latest == locked:
        for vulnerability in project.get("vulnerabilities") or []:
            if not vulnerability.get("withdrawn"):
                fixed = ", ".join(vulnerability.get("fixed_in") or []) or "no fix yet"
                result.findings.append(f"{vulnerability['id']} (fixed in: {fixed})")
    return result


def main() -> int:
    locked = pins(sys.stdin.read().splitlines())
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            audits = list(pool.map(lambda pin: audit(*pin), locked))
    except (urllib.error.URLError, TimeoutError) as error:
        print(
            f"pip-audit: NOT RUN — PyPI's project pages could not be read either ({error})", file=sys.stderr
        )
        return 2
    findings = [a for a in audits if a.findings]
    older = [a for a in audits if a.latest != a.locked]
    for a in findings:
        print(f"{a.name} {a.locked}: {'; '.join(a.findings)}")
    print(
        f"audited from PyPI's project pages (pip-audit's per-version API is unreachable here): "
        f"{len(audits) - len(older)} of {len(audits)} locked dependencies are their latest release, "
        f"{sum(len(a.findings) for a in findings)} known vulnerabilities among them"
    )
    if older:
        print(
            "not audited (locked below their latest release, which these pages do not describe): "
            + ", ".join(f"{a.name} {a.locked} (latest {a.latest})" for a in older)
        )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
