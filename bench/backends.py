"""The servers a benchmark run needs: from the environment when set, otherwise started here.

`KB_INGEST_DATABASE_URL` / `KB_INGEST_KAFKA_BOOTSTRAP` name servers from outside, which the run
only borrows: it works in a database and topics of its own and removes them at the end.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from service.adapters.postgres import PostgresStore
from service.bootstrap import connect_store
from service.config import Settings
from service.localstack import start_kafka, start_postgres, stop_kafka, stop_postgres


@contextmanager
def postgres_url(workdir: Path) -> Iterator[str]:
    """A server URL: `KB_INGEST_DATABASE_URL`, or a throwaway local cluster (fsync off)."""
    url = os.environ.get("KB_INGEST_DATABASE_URL")
    if url:
        yield url
        return
    server = start_postgres(workdir / "postgres", durable=False)
    try:
        yield server.url
    finally:
        stop_postgres(server)


@contextmanager
def kafka_bootstrap(workdir: Path) -> Iterator[str]:
    """A bootstrap address: `KB_INGEST_KAFKA_BOOTSTRAP`, or a local single-node broker."""
    bootstrap = os.environ.get("KB_INGEST_KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap
        return
    server = start_kafka(workdir / "kafka")
    try:
        yield server.bootstrap
    finally:
        stop_kafka(server)


@contextmanager
def workdir() -> Iterator[Path]:
    """A temporary folder for local servers, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as folder:
        yield Path(folder)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database `bench_<uuid>` on the server, dropped on exit; yields its URL."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def migrated_store(database_url: str) -> AsyncIterator[PostgresStore]:
    """The service's store on the database, migrated by the service's own start-up path."""
    store = await connect_store(Settings(database_url=database_url))
    try:
        yield store
    finally:
        await store.pool.close()


async def delete_topics(settings: Settings, topics: list[str]) -> None:
    """Remove a run's own topics (best effort: a borrowed broker should not keep them)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    except Exception:  # cleanup only: the run's figures stand either way
        return
    finally:
        await admin.close()
