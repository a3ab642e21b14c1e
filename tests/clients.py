"""Real clients written by others, as the tests call them."""

from __future__ import annotations

import shutil
import subprocess

from service.localstack import postgres_bin_dir


def psql(url: str, sql: str) -> str:
    """Run one statement with `psql` and return its unaligned, tuples-only output."""
    binary = shutil.which("psql") or str(postgres_bin_dir() / "psql")
    result = subprocess.run(
        [binary, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()
