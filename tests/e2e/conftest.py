"""The service as real processes: `kb-ingest run ROLE` started, probed, stopped and crashed.

- `service_env` (a factory) gives each caller its own topic names and consumer groups (uuid
  suffix), so modules sharing the session's broker and database never see each other's messages.
- `service_processes` (a factory) starts `kb-ingest run ROLE` processes for a module, waits for
  their `/readyz`, and stops them all at module end; when a test fails, the tail of every
  process's log is printed with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from service.domain.chunking import ChunkingParams
from service.localstack import free_port

# The console script of the venv running the tests (`.venv/bin/kb-ingest`).
KB_INGEST = str(Path(sys.executable).with_name("kb-ingest"))
TOPIC_KEYS = ("documents", "control", "chunks", "phase_events", "status", "dlq")
GROUP_KEYS = ("producer", "consumer", "aggregator")
# Smaller than the defaults, so that a few thousand characters already make several chunks.
E2E_CHUNKING = ChunkingParams(size=400, overlap=50)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


# Each test's setup/call/teardown reports, read by _service_logs_on_failure after the test.
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@dataclass(frozen=True)
class ServiceEnv:
    """Settings of one isolated deployment of the service on the session's backends."""

    suffix: str
    kafka_bootstrap: str
    database_url: str
    topics: dict[str, str]
    groups: dict[str, str]
    chunking: ChunkingParams = E2E_CHUNKING
    extra: dict[str, str] = field(default_factory=dict)

    def variables(self) -> dict[str, str]:
        """The `KB_INGEST_*` environment of every process of this deployment."""
        env = {
            "KB_INGEST_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "KB_INGEST_DATABASE_URL": self.database_url,
            "KB_INGEST_API_HOST": "127.0.0.1",
            "KB_INGEST_CHUNK_SIZE": str(self.chunking.size),
            "KB_INGEST_CHUNK_OVERLAP": str(self.chunking.overlap),
            "KB_INGEST_LOG_LEVEL": "INFO",
        }
        env.update({f"KB_INGEST_TOPIC_{k.upper()}": v for k, v in self.topics.items()})
        env.update({f"KB_INGEST_GROUP_{k.upper()}": v for k, v in self.groups.items()})
        env.update(self.extra)
        return env


@pytest.fixture(scope="session")
def service_env(kafka_bootstrap: str, database_url: str) -> Any:
    """A factory: ``service_env(**settings)`` → a `ServiceEnv` with fresh topics and groups.

    Keyword arguments are further settings by name (``batch_max_records="100"`` sets
    ``KB_INGEST_BATCH_MAX_RECORDS``); chunking goes through ``chunking=`` so that tests
    recompute chunks with what the service was given.
    """

    def make(chunking: ChunkingParams = E2E_CHUNKING, **extra: str) -> ServiceEnv:
        assert not {"chunk_size", "chunk_overlap"} & set(extra), "pass chunking=ChunkingParams"
        suffix = uuid.uuid4().hex[:10]
        return ServiceEnv(
            suffix=suffix,
            kafka_bootstrap=kafka_bootstrap,
            database_url=database_url,
            topics={k: f"e2e-{suffix}.{k.replace('_', '-')}" for k in TOPIC_KEYS},
            groups={k: f"e2e-{suffix}-{k}" for k in GROUP_KEYS},
            chunking=chunking,
            extra={f"KB_INGEST_{k.upper()}": v for k, v in extra.items()},
        )

    return make


class ServiceError(Exception):
    """A service process did not start, get ready or stop as it should."""


class ServiceProcess:
    """One `kb-ingest run ROLE` process in its own session, logging to a file."""

    def __init__(self, role: str, env: ServiceEnv, log_path: Path) -> None:
        self.role = role
        self.env = env
        self.log_path = log_path
        # The API serves /readyz on its API port; a worker on its health port.
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.role} was never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Launch the process (without waiting for readiness)."""
        if self.running:
            raise ServiceError(f"{self.role} is already running (pid {self.pid})")
        self._close_log()
        self.starts += 1
        port_var = "KB_INGEST_API_PORT" if self.role == "api" else "KB_INGEST_HEALTH_PORT"
        # Only this deployment's settings: none leak in from the shell (a token, a topic...).
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("KB_INGEST_")}
        env = {**inherited, **self.env.variables(), port_var: str(self.port)}
        self._log = self.log_path.open("ab")
        self._log.write(f"--- start #{self.starts}: kb-ingest run {self.role}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            [KB_INGEST, "run", self.role],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> float:
        """Poll `/readyz` until it answers 200; return the seconds it took.

        Raises:
            ServiceError: the process exited, or was not ready within `timeout`.
        """
        started = time.monotonic()
        last = "no answer"
        with httpx.Client(timeout=2) as client:
            while True:
                if not self.running:
                    raise ServiceError(
                        f"{self.role} exited with {self.process and self.process.returncode}"
                        f" before it was ready\n{self.log_tail()}"
                    )
                try:
                    response = client.get(f"{self.url}/readyz")
                    if response.status_code == 200:
                        return time.monotonic() - started
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}"
                if time.monotonic() - started > timeout:
                    raise ServiceError(
                        f"{self.role} not ready after {timeout:.0f}s ({last})\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def signal_terminate(self) -> None:
        """Send SIGTERM (a graceful stop) without waiting."""
        if self.running:
            os.kill(self.pid, signal.SIGTERM)

    def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM, then wait; SIGKILL the group if it outlives `timeout`. Returns the exit code.

        Raises:
            ServiceError: the process ignored SIGTERM for `timeout` seconds (it is killed).
        """
        self.signal_terminate()
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = 30) -> int | None:
        """Wait for the process to exit (after SIGTERM); SIGKILL the group after `timeout`.

        Raises:
            ServiceError: still running after `timeout` seconds (it is killed).
        """
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServiceError(
                f"{self.role} still running {timeout:.0f}s after SIGTERM\n{self.log_tail()}"
            ) from None
        finally:
            self._close_log()

    def kill(self) -> int | None:
        """SIGKILL the whole process group, as a crash would, and reap it."""
        if self.process is None:
            return None
        if self.running:
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                os.killpg(self.pid, signal.SIGKILL)
        code = self.process.wait(10)
        self._close_log()
        return code

    def restart(self, *, crash: bool = False, ready_timeout: float = 90) -> None:
        """Stop (or with `crash`, kill) the process, start it again and wait until ready."""
        if crash:
            self.kill()
        else:
            self.terminate()
        self.start()
        self.wait_ready(ready_timeout)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return f"[{self.role}: no log]"
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.role} ({self.log_path}), last {len(text)} lines:\n" + "\n".join(text)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class ServiceProcesses:
    """The processes one test module started; see the `service_processes` fixture."""

    log_dir: Path
    started: list[ServiceProcess] = field(default_factory=list)

    def __call__(
        self, env: ServiceEnv, *roles: str, ready_timeout: float = 90
    ) -> list[ServiceProcess]:
        """Start one process per role (all at once), then wait until each is ready."""
        processes = []
        for role in roles:
            process = ServiceProcess(role, env, self.log_dir / f"{role}-{env.suffix}.log")
            self.started.append(process)
            process.start()
            processes.append(process)
        for process in processes:
            process.wait_ready(ready_timeout)
        return processes

    def print_logs(self, lines: int = 40) -> None:
        for process in self.started:
            print(process.log_tail(lines))

    def stop_all(self, timeout: float = 30) -> list[str]:
        """SIGTERM every live process at once, wait for each; return what went wrong."""
        live = [p for p in self.started if p.running]
        for process in live:
            process.signal_terminate()
        problems = []
        for process in self.started:
            try:
                # One SIGTERM only: a second one may land after the service has removed its
                # handler on the way out, and kill it.
                code = process.wait_exit(timeout)
            except ServiceError as exc:
                problems.append(str(exc).splitlines()[0])
                continue
            if process in live and code != 0:
                problems.append(f"{process.role} exited with {code} after SIGTERM")
        return problems


@pytest.fixture(scope="module")
def service_processes(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServiceProcesses]:
    """A factory: ``service_processes(env, *roles)`` → ready processes, stopped at module end."""
    processes = ServiceProcesses(tmp_path_factory.mktemp("service-logs"))
    failed_before = request.session.testsfailed
    try:
        yield processes
    finally:
        problems = processes.stop_all()
        if problems or request.session.testsfailed > failed_before:
            processes.print_logs()
        assert not problems, "; ".join(problems)


@pytest.fixture(autouse=True)
def _service_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the tail of every service log after a test of this directory fails."""
    processes: ServiceProcesses | None = None
    if "service_processes" in request.fixturenames:
        processes = request.getfixturevalue("service_processes")
    yield
    reports = request.node.stash.get(_REPORTS, {})
    if processes is not None and any(r.failed for r in reports.values()):
        processes.print_logs()
