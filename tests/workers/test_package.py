"""The installed package holds the product only: no development stand-ins or keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local/bin/uv")
    assert Path(found).exists(), "uv is installed by `make install`"
    return found


def test_the_wheel_leaves_the_development_stack_and_keys_out(tmp_path: Path) -> None:
    built = subprocess.run(
        [_uv(), "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        env={**os.environ, "UV_NO_PROGRESS": "1"},
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("bindery-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.startswith("workers/") for name in names) and "tasks/erasure/saga.py" in names
    assert not [name for name in names if "devstack" in name or "identity" in name]
    contents = b"".join(zipfile.ZipFile(wheel).read(name) for name in names)
    dev_key = next(
        line for line in (ROOT / "workers/devstack/dev-backup-identity.txt").read_bytes().splitlines()
        if line.startswith(b"AGE-SECRET-KEY-")
    )  # fmt: skip
    assert dev_key not in contents and b"import honcho" not in contents and b"from honcho" not in contents
