"""What the CLI frame and the domains' commands share: one way to fail, one type for the
subcommand table they add to."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

# What `add_subparsers()` returns; generic for the type checker only.
if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction


def fail(message: str, status: int = 1) -> int:
    """Say what went wrong in one line on stderr; the exit status to return."""
    print(f"bindery: {message}", file=sys.stderr)
    return status
