"""`kb-ingest demo`: local stack, service, a sample corpus ingested, watched and searched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from service.demo_corpus import DEMO_PHRASE, write_corpus
from service.localstack import REPO_ROOT, free_port, port_in_use

KB = "demo"


def _cli(
    *args: str, env: dict[str, str], capture: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        check=False,
    )


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def run_demo() -> int:
    """Run the demo end to end; returns the exit status."""
    started = time.monotonic()
    env = dict(os.environ)
    _say("starting the local Kafka and Postgres (kb-ingest dev up)")
    up = _cli("dev", "up", env=env, capture=True)
    if up.returncode != 0:
        return up.returncode
    for line in up.stdout.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value
    workdir = REPO_ROOT / ".cache" / "demo"
    corpus = workdir / "corpus"
    files = write_corpus(corpus)
    _say(f"sample corpus: {len(files)} documents in {corpus}")

    api_port = int(env.get("KB_INGEST_API_PORT", "8080"))
    if port_in_use(api_port):
        api_port = free_port()
    env["KB_INGEST_API_PORT"] = str(api_port)
    env.setdefault("KB_INGEST_LOG_LEVEL", "WARNING")
    log_path = workdir / "service.log"
    _say(f"starting the service (kb-ingest run all; API on :{api_port}, log {log_path})")
    with Path(log_path).open("w") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "service", "run", "all"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        job = f"demo-{uuid.uuid4().hex[:8]}"
        _say(f"submitting through Kafka as job {job} (kb-ingest submit --seal)")
        submitted = _cli(
            "submit", str(corpus), "--kb", KB, "--job", job, "--seal", env=env, capture=True
        )
        if submitted.returncode != 0:
            return submitted.returncode
        _say("watching the phases (kb-ingest watch)")
        watched = _cli("watch", job, "--timeout", "600", env=env)
        if watched.returncode != 0:
            _say(f"the job did not complete; see {log_path}")
            return watched.returncode
        _say(f'searching kb "{KB}" for "{DEMO_PHRASE}" (kb-ingest search)')
        found = _cli("search", KB, DEMO_PHRASE, "--limit", "3", env=env)
        if found.returncode != 0:
            return found.returncode
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGTERM)
            try:
                service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, signal.SIGKILL)
    _say(f"demo finished in {time.monotonic() - started:.0f}s")
    print(
        "Kafka and Postgres are still running for you to explore:\n"
        f'  eval "$(.venv/bin/kb-ingest dev env)" && .venv/bin/kb-ingest status {job}\n'
        "Stop them with:  make dev-down   (or .venv/bin/kb-ingest dev down)"
    )
    return 0
