"""`make bench`: run every benchmark and print figure, baseline and ratio side by side."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

# Before any bindery module reads its settings: benchmarks use their own Redis database.
os.environ.update(BROKER_URL="redis://127.0.0.1:6379/14", WORKER_METRICS_PORT="0")

from bench.common import Result

BENCHMARKS = sorted(path.stem for path in Path(__file__).parent.glob("bench_*.py"))


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def main(selected: list[str]) -> int:
    rows: list[Result] = []
    for name in BENCHMARKS:
        if selected and not any(choice in name for choice in selected):
            continue
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(f"bench.{name}").run())
    print(f"\n{'benchmark':<40} {'figure':>12} {'baseline':>12} {'ratio':>7}  unit / note")
    for row in rows:
        figure, baseline = _number(row.figure), _number(row.baseline)
        note = f"  ({row.note})" if row.note else ""
        print(f"{row.name:<40} {figure:>12} {baseline:>12} {row.ratio:>7.2f}  {row.unit}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
