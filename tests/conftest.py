"""Session-wide servers: one Kafka broker and one PostgreSQL cluster for the whole test run.

Each comes from its environment variable when set (``KB_INGEST_KAFKA_BOOTSTRAP``,
``KB_INGEST_DATABASE_URL``, e.g. from ``eval "$(kb-ingest dev up)"``); otherwise the session
starts its own in a temporary folder on free ports and stops it at the end. Only servers the
session started can be killed and restarted by fault tests: see ``can_restart``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from service.localstack import (
    KafkaServer,
    LocalStackError,
    PostgresServer,
    kill_kafka,
    kill_postgres,
    start_kafka,
    start_postgres,
    stop_kafka,
    stop_postgres,
)


@dataclass
class KafkaHandle:
    """The session's broker. ``bootstrap`` stays the same across restarts (same port)."""

    bootstrap: str
    server: KafkaServer | None  # None: a broker from outside, which tests must not restart

    @property
    def can_restart(self) -> bool:
        return self.server is not None

    def require_restartable(self) -> KafkaServer:
        """Return our server, or skip the calling test when the broker came from outside."""
        if self.server is None:
            pytest.skip("the broker comes from KB_INGEST_KAFKA_BOOTSTRAP and cannot be restarted")
        return self.server

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would."""
        kill_kafka(self.require_restartable())

    def stop(self) -> None:
        """Shut the broker down cleanly."""
        stop_kafka(self.require_restartable())

    def start(self, timeout: float = 60) -> None:
        """Start the broker again on its work dir and port, with its data."""
        server = self.require_restartable()
        self.server = start_kafka(server.workdir, server.port, timeout=timeout)

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or with ``crash``, kill) the broker and start it again."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()


@dataclass
class PostgresHandle:
    """The session's database. ``url`` stays the same across restarts (same port)."""

    url: str
    server: PostgresServer | None  # None: a database from outside, which tests must not restart

    @property
    def can_restart(self) -> bool:
        return self.server is not None

    def require_restartable(self) -> PostgresServer:
        """Return our server, or skip the calling test when the database came from outside."""
        if self.server is None:
            pytest.skip("the database comes from KB_INGEST_DATABASE_URL and cannot be restarted")
        return self.server

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, as a crash would."""
        kill_postgres(self.require_restartable())

    def stop(self, mode: str = "fast") -> None:
        """Shut the cluster down with ``pg_ctl stop -m mode``."""
        stop_postgres(self.require_restartable(), mode=mode)

    def start(self, timeout: float = 30) -> None:
        """Start the cluster again on its work dir and port, with its data."""
        server = self.require_restartable()
        self.server = start_postgres(server.workdir, server.port, timeout=timeout, durable=False)

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or with ``crash``, kill) the cluster and start it again."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaHandle]:
    """The session's Kafka broker (a handle that fault tests can kill and restart)."""
    bootstrap = os.environ.get("KB_INGEST_KAFKA_BOOTSTRAP")
    if bootstrap:
        yield KafkaHandle(bootstrap, None)
        return
    try:
        server = start_kafka(tmp_path_factory.mktemp("kafka"))
    except LocalStackError as exc:
        pytest.fail(f"could not start kafka: {exc}\n{exc.details}", pytrace=False)
    handle = KafkaHandle(server.bootstrap, server)
    try:
        yield handle
    finally:
        assert handle.server is not None
        stop_kafka(handle.server)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: KafkaHandle) -> str:
    """``host:port`` of the session's Kafka broker."""
    return kafka_server.bootstrap


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresHandle]:
    """The session's PostgreSQL cluster (a handle that fault tests can kill and restart)."""
    url = os.environ.get("KB_INGEST_DATABASE_URL")
    if url:
        yield PostgresHandle(url, None)
        return
    try:
        # fsync off: tests kill the server, never the machine.
        server = start_postgres(tmp_path_factory.mktemp("postgres"), durable=False)
    except LocalStackError as exc:
        pytest.fail(f"could not start postgres: {exc}\n{exc.details}", pytrace=False)
    handle = PostgresHandle(server.url, server)
    try:
        yield handle
    finally:
        assert handle.server is not None
        stop_postgres(handle.server)


@pytest.fixture(scope="session")
def database_url(postgres_server: PostgresHandle) -> str:
    """URL of the session's PostgreSQL database ``kb``."""
    return postgres_server.url
