"""The `kb-ingest` CLI against the real processes: submit, watch, status, search, pause,
resume, retry — exit statuses and one-line errors included."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from service.demo_corpus import DEMO_PHRASE, write_corpus
from tests.e2e.conftest import KB_INGEST, ServiceEnv, ServiceProcesses

ROLES = ("producer", "consumer", "aggregator")


@pytest.fixture(scope="module")
def env(service_env: Any, service_processes: ServiceProcesses) -> ServiceEnv:
    deployment: ServiceEnv = service_env(status_progress_interval_s="0.2")
    service_processes(deployment, *ROLES)
    return deployment


def cli(env: ServiceEnv, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KB_INGEST, *args],
        env={**os.environ, **env.variables()},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_submit_watch_search_status_and_refusals(env: ServiceEnv, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    files = write_corpus(corpus, count=40)
    job = f"cli-{env.suffix}"
    submitted = cli(env, "submit", str(corpus), "--kb", f"kb-{env.suffix}", "--job", job, "--seal")
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.strip() == job
    assert f"submitted {len(files)} documents" in submitted.stderr

    watched = cli(env, "watch", job, "--timeout", "120")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert f"job {job}: completed" in watched.stdout

    status = cli(env, "status", job)
    assert status.returncode == 0, status.stderr
    for phase in ("load", "extract", "chunk", "index"):
        row = next(line for line in status.stdout.splitlines() if f" {phase} " in line)
        assert row.split("│")[2:6] == [
            " completed ",
            f"    {len(files)} ",
            f"        {len(files)} ",
            "      0 ",
        ], row

    found = cli(env, "search", f"kb-{env.suffix}", DEMO_PHRASE)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0].startswith("1. streaming-017.md")

    refused = one_line_error(cli(env, "resume", job, "--phase", "index"))
    assert "invalid_transition" in refused and "completed" in refused
    assert "no job 'ghost'" in one_line_error(cli(env, "pause", "ghost"))
    assert "no job 'ghost'" in one_line_error(cli(env, "status", "ghost"))
    assert "no such file" in one_line_error(cli(env, "submit", "/nonexistent", "--kb", "k"))


def test_pause_resume_retry_through_the_cli(env: ServiceEnv, tmp_path: Path) -> None:
    job, kb = f"cli-ctl-{env.suffix}", f"kb-ctl-{env.suffix}"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("a perfectly readable note about harbor lanterns")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf at all")
    submitted = cli(env, "submit", str(docs), "--kb", kb, "--job", job)
    assert submitted.returncode == 0, submitted.stderr

    paused = cli(env, "pause", job, "--phase", "load")
    assert paused.returncode == 0, paused.stderr
    assert "load" in paused.stdout
    resumed = cli(env, "resume", job, "--phase", "load")
    assert resumed.returncode == 0, resumed.stderr

    sealed = cli(env, "submit", str(docs / "good.txt"), "--kb", kb, "--job", job, "--seal")
    assert sealed.returncode == 0, sealed.stderr  # the same document again: counted once
    watched = cli(env, "watch", job, "--timeout", "120")
    assert watched.returncode == 1, watched.stdout + watched.stderr  # the PDF fails extract
    assert f"job {job}: failed" in watched.stdout

    retried = cli(env, "retry", job, "--phase", "extract")
    assert retried.returncode == 0, retried.stderr
    again = cli(env, "watch", job, "--timeout", "120")
    assert again.returncode == 1  # still not a PDF: it fails again, once more
    status = cli(env, "status", job)
    extract = next(line for line in status.stdout.splitlines() if " extract " in line)
    assert extract.split("│")[2:6] == [" failed    ", "     2 ", "         1 ", "      1 "], extract
