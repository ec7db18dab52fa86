"""Plain text tables for the CLI's human output (every command also offers --json)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain text table of `columns` (each command offers --json for machines)."""
    table = [list(columns)] + [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
