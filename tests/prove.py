"""`make prove`: a pytest plugin that ends the run of tests/privacy and tests/faults with
one table: each promise or fault scenario (the first line of its module's docstring),
its result, and what fault tests measured (lost, duplicated, seconds to recover).

Use: `pytest -p tests.prove tests/privacy tests/faults`.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

import pytest

_rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"passed": 0, "failed": 0, "seconds": 0.0})


def _title(item: pytest.Item) -> str:
    module = getattr(item, "module", None)
    doc = (getattr(module, "__doc__", None) or item.nodeid).strip().splitlines()[0]
    return doc.rstrip(".")


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if call.when != "call" and not (call.when == "setup" and call.excinfo is not None):
        return
    row = _rows[_title(item)]
    row["passed" if call.excinfo is None else "failed"] += 1
    row["seconds"] += call.duration
    for name, value in getattr(item, "user_properties", []):
        row[name] = row.get(name, 0) + value if isinstance(value, int | float) else value


def pytest_terminal_summary(terminalreporter: Any) -> None:
    columns = ("promise or scenario", "result", "lost", "duplicated", "recovered in", "tests")
    table = [
        (
            title[:90],
            "PASS" if row["failed"] == 0 else "FAIL",
            str(row.get("lost", "-")),
            str(row.get("duplicated", "-")),
            f"{row['recovery_s']:.1f} s" if "recovery_s" in row else "-",
            f"{row['passed']}/{row['passed'] + row['failed']} in {row['seconds']:.0f} s",
        )
        for title, row in sorted(_rows.items())
    ]
    widths = [max(len(line[i]) for line in [columns, *table]) for i in range(len(columns))]
    write = terminalreporter.write_line
    write("")
    for line in [columns, tuple("-" * width for width in widths), *table]:
        write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    sys.stdout.flush()
