"""`kb-ingest dev`: a local Kafka and PostgreSQL that stay up between commands.

``eval "$(kb-ingest dev up)"`` starts them (or finds them running) and exports their addresses;
``kb-ingest dev down`` stops them. Their data stays in the dev dir for the next ``up``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from service.localstack import (
    KAFKA_VERSION,
    REPO_ROOT,
    KafkaServer,
    LocalStackError,
    PostgresServer,
    port_in_use,
    postgres_bin_dir,
    server_processes,
    start_kafka,
    start_postgres,
    stop_kafka,
    stop_postgres,
)

dev_app = typer.Typer(
    name="dev",
    help="Run a local Kafka and PostgreSQL for development.",
    no_args_is_help=True,
    add_completion=False,
)

_STATE_FILE = "stack.json"


def dev_dir() -> Path:
    """Return the folder that holds the dev stack's state and data."""
    return Path(os.environ.get("KB_INGEST_DEV_DIR") or REPO_ROOT / ".cache" / "dev").resolve()


@dataclass
class _Stack:
    kafka: KafkaServer | None
    postgres: PostgresServer | None

    def exports(self) -> list[str]:
        assert self.kafka is not None and self.postgres is not None
        return [
            f"export KB_INGEST_KAFKA_BOOTSTRAP={self.kafka.bootstrap}",
            f"export KB_INGEST_DATABASE_URL={self.postgres.url}",
        ]


def _info(message: str) -> None:
    typer.echo(f"dev: {message}", err=True)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialize dev commands, so two concurrent `up`s do not both start servers."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load(directory: Path) -> _Stack:
    """Return the servers the state file names, each None unless its process still runs."""
    try:
        raw: dict[str, Any] = json.loads((directory / _STATE_FILE).read_text())
    except FileNotFoundError:
        return _Stack(None, None)
    except (OSError, ValueError) as exc:
        raise LocalStackError(f"unreadable dev state {directory / _STATE_FILE}: {exc}") from exc
    kafka = postgres = None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        entry = raw["kafka"]
        kafka = KafkaServer(
            int(entry["port"]),
            int(entry["controller_port"]),
            Path(entry["workdir"]),
            int(entry["pid"]),
        )
    with contextlib.suppress(KeyError, TypeError, ValueError):
        entry = raw["postgres"]
        postgres = PostgresServer(int(entry["port"]), Path(entry["workdir"]), int(entry["pid"]))
    return _Stack(
        kafka if kafka is not None and kafka.alive() else None,
        postgres if postgres is not None and postgres.alive() else None,
    )


def _save(directory: Path, stack: _Stack) -> None:
    state: dict[str, Any] = {}
    if stack.kafka is not None:
        state["kafka"] = {
            "port": stack.kafka.port,
            "controller_port": stack.kafka.controller_port,
            "workdir": str(stack.kafka.workdir),
            "pid": stack.kafka.pid,
        }
    if stack.postgres is not None:
        state["postgres"] = {
            "port": stack.postgres.port,
            "workdir": str(stack.postgres.workdir),
            "pid": stack.postgres.pid,
        }
    temporary = directory / f".{_STATE_FILE}.tmp"
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.replace(directory / _STATE_FILE)


def _fail(error: LocalStackError) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(1)


@dev_app.command()
def up(
    kafka_port: Annotated[int, typer.Option(help="Port for Kafka clients.")] = 9092,
    postgres_port: Annotated[int, typer.Option(help="Port for PostgreSQL.")] = 5433,
) -> None:
    """Start Kafka and PostgreSQL (or find them running) and print their `export` lines."""
    directory = dev_dir()
    try:
        with _locked(directory):
            stack = _bring_up(directory, kafka_port, postgres_port)
    except LocalStackError as exc:
        raise _fail(exc) from None
    for line in stack.exports():
        typer.echo(line)


def _bring_up(directory: Path, kafka_port: int, postgres_port: int) -> _Stack:
    stack = _load(directory)
    # Check both ports before starting anything, so a clash leaves nothing half-started.
    if stack.kafka is None and port_in_use(kafka_port):
        raise LocalStackError(f"port {kafka_port} is already in use (wanted for kafka)")
    if stack.postgres is None and port_in_use(postgres_port):
        raise LocalStackError(f"port {postgres_port} is already in use (wanted for postgres)")
    if stack.postgres is None:
        postgres_bin_dir()  # fail before Kafka starts when PostgreSQL is not installed

    started: list[KafkaServer | PostgresServer] = []
    try:
        if stack.kafka is None:
            _info(f"starting kafka {KAFKA_VERSION} on 127.0.0.1:{kafka_port}")
            began = time.monotonic()
            stack.kafka = start_kafka(directory / "kafka", kafka_port)
            started.append(stack.kafka)
            _info(f"kafka ready in {time.monotonic() - began:.1f}s (log {stack.kafka.log_path})")
        else:
            _reuse("kafka", stack.kafka.port, kafka_port, stack.kafka.pid)
        if stack.postgres is None:
            _info(f"starting postgres on 127.0.0.1:{postgres_port}")
            began = time.monotonic()
            stack.postgres = start_postgres(directory / "postgres", postgres_port)
            started.append(stack.postgres)
            _info(f"postgres ready in {time.monotonic() - began:.1f}s ({stack.postgres.log_path})")
        else:
            _reuse("postgres", stack.postgres.port, postgres_port, stack.postgres.pid)
    except BaseException:
        for server in reversed(started):
            _stop(server)
        raise
    _save(directory, stack)
    return stack


def _reuse(name: str, running_port: int, wanted_port: int, pid: int) -> None:
    note = "" if running_port == wanted_port else f"; run `dev down` first for port {wanted_port}"
    _info(f"{name} already running on 127.0.0.1:{running_port} (pid {pid}){note}")


def _stop(server: KafkaServer | PostgresServer) -> None:
    if isinstance(server, KafkaServer):
        stop_kafka(server)
    else:
        stop_postgres(server)


@dev_app.command()
def env() -> None:
    """Print the `export` lines of the running dev stack."""
    directory = dev_dir()
    try:
        stack = _load(directory)
        missing = [
            name
            for name, server in (("kafka", stack.kafka), ("postgres", stack.postgres))
            if server is None
        ]
        if len(missing) == 2:
            raise LocalStackError("no dev stack is running (start it with: kb-ingest dev up)")
        if missing:
            raise LocalStackError(
                f"the dev stack is only partly running ({missing[0]} is down): run kb-ingest dev up"
            )
    except LocalStackError as exc:
        raise _fail(exc) from None
    for line in stack.exports():
        typer.echo(line)


@dev_app.command()
def down() -> None:
    """Stop the dev stack's Kafka and PostgreSQL (their data stays for the next `up`)."""
    directory = dev_dir()
    if not directory.exists():
        _info("nothing is running")
        return
    try:
        with _locked(directory):
            _bring_down(directory)
    except LocalStackError as exc:
        raise _fail(exc) from None


def _bring_down(directory: Path) -> None:
    stack = _load(directory)
    for server in (stack.postgres, stack.kafka):
        if server is not None:
            name = "kafka" if isinstance(server, KafkaServer) else "postgres"
            _info(f"stopping {name} (pid {server.pid})")
            _stop(server)
    # Servers the state file does not know about (it was lost, or a start was interrupted).
    strays = server_processes(directory)
    for pid in strays:
        _info(f"killing leftover process {pid}")
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:  # a server leads its group: take its children too
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server_processes(directory):
        if time.monotonic() >= deadline:
            pids = " ".join(map(str, server_processes(directory)))
            raise LocalStackError(f"processes still running from {directory}: {pids}")
        time.sleep(0.1)
    (directory / _STATE_FILE).unlink(missing_ok=True)
    if stack.kafka is None and stack.postgres is None and not strays:
        _info("nothing is running")
    else:
        _info("stopped")
