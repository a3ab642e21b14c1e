"""Migrations and phase rows on a real Postgres: `migrate` applies each version once (also when
five processes race), leaves the schema alone when up to date, refuses an edited migration, and a
phase row written through `JobUnit` reads back equal, through asyncpg and through `psql`.

Each test works in its own throwaway database, so nothing here touches the session's `kb`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from service.adapters.migrations import (
    MIGRATION_LOCK_KEY,
    Migration,
    MigrationError,
    bundled_migrations,
    migrate,
)
from service.adapters.postgres import PostgresStore, create_pool
from service.contracts import JobOptions
from service.domain.jobs import JobStatus
from service.domain.phases import PHASES, Phase, PhaseStatus
from tests.clients import psql

pytestmark = pytest.mark.integration

DatabaseFactory = Callable[[], Awaitable[str]]

T0 = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


@pytest.fixture(scope="module")
async def new_database(database_url: str) -> AsyncIterator[DatabaseFactory]:
    """Make empty databases on the session's server on demand; drop them all at the end."""
    made: list[str] = []
    admin = await asyncpg.connect(database_url)

    async def create() -> str:
        name = f"kb_mig_{uuid.uuid4().hex}"
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.InsufficientPrivilegeError:
            pytest.skip("the database user may not CREATE DATABASE")
        made.append(name)
        return _with_database(database_url, name)

    try:
        yield create
    finally:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def migrated_url(new_database: DatabaseFactory) -> str:
    """A fresh database with every bundled migration applied."""
    url = await new_database()
    conn = await asyncpg.connect(url)
    try:
        assert await migrate(conn) == [m.version for m in bundled_migrations()]
    finally:
        await conn.close()
    return url


async def _catalog(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    columns = await conn.fetch(
        """SELECT table_name, column_name, ordinal_position, data_type, is_nullable,
                  column_default, is_generated, generation_expression
           FROM information_schema.columns WHERE table_schema = 'public'
           ORDER BY table_name, ordinal_position"""
    )
    indexes = await conn.fetch(
        """SELECT tablename, indexname, indexdef FROM pg_indexes
           WHERE schemaname = 'public' ORDER BY tablename, indexname"""
    )
    constraints = await conn.fetch(
        """SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
           FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
           WHERE n.nspname = 'public' ORDER BY 1, 2"""
    )
    return {
        "columns": [tuple(r) for r in columns],
        "indexes": [tuple(r) for r in indexes],
        "constraints": [tuple(r) for r in constraints],
    }


async def _applied(conn: asyncpg.Connection) -> dict[int, int]:
    rows = await conn.fetch(
        "SELECT version, count(*) AS n FROM schema_migrations GROUP BY version ORDER BY version"
    )
    return {r["version"]: r["n"] for r in rows}


async def _lock_is_free(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY)
        if got:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        return bool(got)
    finally:
        await conn.close()


# -- migrate ---------------------------------------------------------------------------------


async def test_migrate_applies_once_and_then_changes_nothing(new_database: DatabaseFactory) -> None:
    url = await new_database()
    conn = await asyncpg.connect(url)
    try:
        assert await migrate(conn) == [1]
        before = await _catalog(conn)

        assert await migrate(conn) == []

        after = await _catalog(conn)
        assert after == before
        tables = {c[0] for c in before["columns"]}
        assert {
            "schema_migrations",
            "ingestion_jobs",
            "ingestion_phase_status",
            "ingestion_document_status",
            "kb_documents",
            "kb_chunks",
        } <= tables
        assert ("kb_chunks", "kb_chunks_tsv_idx") in {i[:2] for i in before["indexes"]}
        assert await _applied(conn) == {1: 1}
    finally:
        await conn.close()
    assert await _lock_is_free(url)


async def test_concurrent_migrate_applies_each_version_exactly_once(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database()
    conns = [await asyncpg.connect(url) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))

        assert sorted(v for applied in results for v in applied) == [1]
        assert sorted(results) == [[], [], [], [], [1]]
        assert await _applied(conns[0]) == {m.version: 1 for m in bundled_migrations()}
    finally:
        for conn in conns:
            await conn.close()
    assert await _lock_is_free(url)


async def test_changed_migration_is_refused(migrated_url: str) -> None:
    edited = [replace(m, sql=m.sql + "\n-- edited after release\n") for m in bundled_migrations()]
    conn = await asyncpg.connect(migrated_url)
    try:
        before = await _catalog(conn)

        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, edited)

        assert await _catalog(conn) == before
    finally:
        await conn.close()
    assert await _lock_is_free(migrated_url)


async def test_failing_migration_is_rolled_back_and_not_recorded(migrated_url: str) -> None:
    broken = Migration(
        version=2, name="broken", sql="CREATE TABLE half_done (id int); SELECT 1 / 0;"
    )
    conn = await asyncpg.connect(migrated_url)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(conn, [*bundled_migrations(), broken])

        assert await conn.fetchval("SELECT to_regclass('public.half_done')") is None
        assert await _applied(conn) == {1: 1}
    finally:
        await conn.close()
    assert await _lock_is_free(migrated_url)


# -- phase rows ------------------------------------------------------------------------------


async def test_phase_row_written_by_job_unit_reads_back_equal(migrated_url: str) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    t1, t2, t3 = (T0 + timedelta(seconds=s) for s in (1, 2, 3))
    pool = await create_pool(migrated_url, size=2)
    try:
        store = PostgresStore(pool)
        async with store.unit() as unit:
            job = await unit.insert_job(
                job_id, "kb.main", JobOptions(max_failed_documents=3), {"type": "uris"}, T0
            )
            assert job.is_new
            assert [p.phase for p in job.phases] == list(PHASES)
            assert all(p.status is PhaseStatus.NOT_STARTED for p in job.phases)
            load, extract = job.phase(Phase.LOAD), job.phase(Phase.EXTRACT)
            load.start(T0)
            load.total = load.processed = 10
            load.complete(t1)
            extract.start(t1)
            extract.total, extract.processed, extract.failed, extract.parked = 10, 7, 1, 2
            extract.last_progress_at = t2
            extract.last_error = "doc-9: extract_failed: bad pdf"
            extract.stalled = True
            extract.updated_at = t3
            job.sealed = True
            job.expected_documents = 10
            job.version = 4
            job.updated_at = t3
            await unit.save_job(job)

        async with store.unit() as unit:
            loaded = (await unit.lock_jobs([job_id, "no-such-job"]))[job_id]

        assert loaded.phases == job.phases
        assert loaded.phase(Phase.EXTRACT).status is PhaseStatus.RUNNING
        assert loaded.phase(Phase.EXTRACT).started_at == t1
        assert loaded.status is JobStatus.RUNNING
        assert (loaded.kb_id, loaded.options, loaded.source) == (
            "kb.main",
            JobOptions(max_failed_documents=3),
            {"type": "uris"},
        )
        assert (loaded.sealed, loaded.expected_documents, loaded.version) == (True, 10, 4)
        assert (loaded.created_at, loaded.updated_at) == (T0, t3)
        row = await pool.fetchrow(
            "SELECT status, derived_status, current_phase FROM ingestion_jobs WHERE job_id = $1",
            job_id,
        )
        assert dict(row) == {
            "status": "running",
            "derived_status": "running",
            "current_phase": "extract",
        }
    finally:
        await pool.close()

    # The real client, as an operator would query it.
    out = psql(
        migrated_url,
        "SELECT job_id, phase, status, processed FROM ingestion_phase_status"
        f" WHERE job_id = '{job_id}' ORDER BY position",
    )
    assert out.splitlines() == [
        f"{job_id}|load|completed|10",
        f"{job_id}|extract|running|7",
        f"{job_id}|chunk|not_started|0",
        f"{job_id}|index|not_started|0",
    ]
