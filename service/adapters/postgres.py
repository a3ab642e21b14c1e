"""asyncpg adapter: the job store, the KB index, the worker gate and the outbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from service.contracts import ChunkMessage, JobOptions
from service.domain.jobs import JobStatus, current_phase, derive_job_status, legacy_status
from service.domain.phases import PHASES, Phase, PhaseState, PhaseStatus

# Errors that mean "the database is not there right now": back off and retry.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
    # A connection cut mid-query can leave the protocol in a state it reports this way.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, size: int = 10) -> asyncpg.Pool:
    """A connection pool that encodes and decodes jsonb as Python objects."""
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=size, init=_init_connection, command_timeout=60
    )
    assert pool is not None
    return pool


@dataclass
class JobRecord:
    """A job row and its phase rows, as loaded for update."""

    job_id: str
    kb_id: str | None
    options: JobOptions
    source: dict[str, Any] | None
    sealed: bool
    expected_documents: int | None
    version: int
    phases: list[PhaseState]
    pause_requested: set[Phase] = field(default_factory=set)
    status_dirty: bool = False
    status_emitted_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    is_new: bool = False

    def phase(self, phase: Phase) -> PhaseState:
        """The state of one phase of this job."""
        for state in self.phases:
            if state.phase == phase:
                return state
        raise KeyError(phase)

    @property
    def status(self) -> JobStatus:
        """The derived five-value status."""
        return derive_job_status(p.status for p in self.phases)


_PHASE_COLUMNS = (
    "status",
    "total",
    "processed",
    "failed",
    "parked",
    "started_at",
    "paused_at",
    "completed_at",
    "updated_at",
    "last_progress_at",
    "last_error",
    "stalled",
)


def _phase_from_row(row: asyncpg.Record) -> PhaseState:
    return PhaseState(
        phase=Phase(row["phase"]),
        status=PhaseStatus(row["status"]),
        total=row["total"],
        processed=row["processed"],
        failed=row["failed"],
        parked=row["parked"],
        started_at=row["started_at"],
        paused_at=row["paused_at"],
        completed_at=row["completed_at"],
        updated_at=row["updated_at"],
        last_progress_at=row["last_progress_at"],
        last_error=row["last_error"],
        stalled=row["stalled"],
    )


def _job_from_rows(job: asyncpg.Record, phases: Sequence[asyncpg.Record]) -> JobRecord:
    ordered = sorted(phases, key=lambda r: r["position"])
    return JobRecord(
        job_id=job["job_id"],
        kb_id=job["kb_id"],
        options=JobOptions.model_validate(job["options"] or {}),
        source=job["source"],
        sealed=job["sealed"],
        expected_documents=job["expected_documents"],
        version=job["version"],
        phases=[_phase_from_row(r) for r in ordered],
        pause_requested={Phase(r["phase"]) for r in ordered if r["pause_requested"]},
        status_dirty=job["status_dirty"],
        status_emitted_at=job["status_emitted_at"],
        created_at=job["created_at"],
        updated_at=job["updated_at"],
    )


@dataclass(frozen=True)
class OutcomeRow:
    """One document's outcome in one phase, as stored."""

    job_id: str
    doc_id: str
    phase: Phase
    outcome: str
    reason: str | None = None
    error: str | None = None
    retry_topic: str | None = None
    retry_value: bytes | None = None


@dataclass(frozen=True)
class OutboxMessage:
    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Republish:
    """A stored message to send again (a retried or un-parked document)."""

    doc_id: str
    phase: Phase
    topic: str
    value: bytes


class JobUnit:
    """Queries of one aggregation transaction; every method runs on the same connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock_jobs(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        """Load and lock the named jobs that exist, in a deadlock-free order.

        NO KEY UPDATE does not conflict with the workers' KEY SHARE gate, so counting never
        waits for a worker's batch; only `lock_phases_for_pause` does.
        """
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        jobs = await self.conn.fetch(
            "SELECT * FROM ingestion_jobs WHERE job_id = ANY($1::text[]) ORDER BY job_id"
            " FOR NO KEY UPDATE",
            ids,
        )
        phases = await self.conn.fetch(
            "SELECT * FROM ingestion_phase_status WHERE job_id = ANY($1::text[])"
            " ORDER BY job_id, position FOR NO KEY UPDATE",
            ids,
        )
        by_job: dict[str, list[asyncpg.Record]] = {}
        for row in phases:
            by_job.setdefault(row["job_id"], []).append(row)
        return {j["job_id"]: _job_from_rows(j, by_job.get(j["job_id"], [])) for j in jobs}

    async def lock_phases_for_pause(self, job_id: str, phases: Sequence[Phase]) -> None:
        """Wait for every worker batch that holds the gate of these phases, then keep them out.

        FOR UPDATE conflicts with the workers' KEY SHARE: once this returns, no batch that
        read the phase as running is still starting documents, and every outcome such a batch
        sent is already in the job's partition of `kb.phase-events`.
        """
        await self.conn.execute(
            "SELECT 1 FROM ingestion_phase_status WHERE job_id = $1 AND phase = ANY($2::text[])"
            " ORDER BY position FOR UPDATE",
            job_id,
            [p.value for p in phases],
        )

    async def insert_job(
        self,
        job_id: str,
        kb_id: str | None,
        options: JobOptions,
        source: dict[str, Any] | None,
        now: datetime,
    ) -> JobRecord:
        """Create a job with its not-started phases, or lock the one that exists."""
        await self.conn.execute(
            """INSERT INTO ingestion_jobs (job_id, kb_id, options, source, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (job_id) DO NOTHING""",
            job_id,
            kb_id,
            options.model_dump(),
            source,
            now,
        )
        await self.conn.executemany(
            """INSERT INTO ingestion_phase_status (job_id, phase, position, updated_at)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            [(job_id, p.value, i, now) for i, p in enumerate(PHASES)],
        )
        record = (await self.lock_jobs([job_id]))[job_id]
        record.is_new = True
        return record

    async def current_outcomes(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], str]:
        """Stored outcome of each (job_id, doc_id, phase) that has one."""
        if not keys:
            return {}
        rows = await self.conn.fetch(
            # One primary-key probe per key: a plain join may pick the outcome index on a
            # fresh table (no statistics yet) and slow down as the first big job grows.
            """SELECT k.job_id, k.doc_id, k.phase, d.outcome
               FROM unnest($1::text[], $2::text[], $3::text[]) AS k(job_id, doc_id, phase)
               CROSS JOIN LATERAL (
                   SELECT outcome FROM ingestion_document_status
                   WHERE job_id = k.job_id AND doc_id = k.doc_id AND phase = k.phase
               ) AS d""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        return {(r["job_id"], r["doc_id"], r["phase"]): r["outcome"] for r in rows}

    async def upsert_outcomes(self, rows: Sequence[OutcomeRow], now: datetime) -> None:
        """Write per-document outcomes in one round trip (attempts count re-runs)."""
        if not rows:
            return
        await self.conn.execute(
            """INSERT INTO ingestion_document_status AS d
                   (job_id, doc_id, phase, outcome, reason, error, retry_topic, retry_value,
                    seq, first_seen_at, updated_at)
               SELECT job_id, doc_id, phase, outcome, reason, error, retry_topic, retry_value,
                      nextval('ingestion_document_seq'), $9, $9
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::text[], $7::text[], $8::bytea[])
                    WITH ORDINALITY
                    AS u(job_id, doc_id, phase, outcome, reason, error, retry_topic, retry_value, n)
               ORDER BY n
               ON CONFLICT (job_id, doc_id, phase) DO UPDATE SET
                   outcome = EXCLUDED.outcome,
                   reason = EXCLUDED.reason,
                   error = EXCLUDED.error,
                   retry_topic = CASE WHEN EXCLUDED.outcome = 'processed' THEN NULL
                                 ELSE COALESCE(EXCLUDED.retry_topic, d.retry_topic) END,
                   retry_value = CASE WHEN EXCLUDED.outcome = 'processed' THEN NULL
                                 ELSE COALESCE(EXCLUDED.retry_value, d.retry_value) END,
                   attempts = d.attempts + CASE WHEN d.outcome = 'retrying' THEN 1 ELSE 0 END,
                   seq = EXCLUDED.seq,
                   updated_at = EXCLUDED.updated_at""",
            [r.job_id for r in rows],
            [r.doc_id for r in rows],
            [r.phase.value for r in rows],
            [r.outcome for r in rows],
            [r.reason for r in rows],
            [r.error for r in rows],
            [r.retry_topic for r in rows],
            [r.retry_value for r in rows],
            now,
        )

    async def take_for_rerun(
        self, job_id: str, phases: Sequence[Phase], outcome: str, now: datetime
    ) -> list[Republish]:
        """Flip a job's documents with `outcome` in `phases` to `retrying`, oldest first.

        The flip happens under the job's row lock, so two racing retries re-run each document once.
        """
        rows = await self.conn.fetch(
            """UPDATE ingestion_document_status AS d SET outcome = 'retrying', updated_at = $4
               FROM (SELECT job_id, doc_id, phase FROM ingestion_document_status
                     WHERE job_id = $1 AND phase = ANY($2::text[]) AND outcome = $3
                     FOR UPDATE) AS t
               WHERE d.job_id = t.job_id AND d.doc_id = t.doc_id AND d.phase = t.phase
               RETURNING d.doc_id, d.phase, d.retry_topic, d.retry_value, d.seq""",
            job_id,
            [p.value for p in phases],
            outcome,
            now,
        )
        ordered = sorted(rows, key=lambda r: r["seq"])
        return [
            Republish(r["doc_id"], Phase(r["phase"]), r["retry_topic"], r["retry_value"])
            for r in ordered
            if r["retry_topic"] and r["retry_value"] is not None
        ]

    async def save_job(self, job: JobRecord) -> None:
        """Write the job row (derived and legacy status in step) and its phase rows."""
        status = job.status
        phase = current_phase(job.phases)
        await self.conn.execute(
            """UPDATE ingestion_jobs SET kb_id = $2, status = $3, derived_status = $4,
                   current_phase = $5, options = $6, source = $7, sealed = $8,
                   expected_documents = $9, version = $10, updated_at = $11,
                   status_dirty = $12, status_emitted_at = $13
               WHERE job_id = $1""",
            job.job_id,
            job.kb_id,
            legacy_status(status).value,
            status.value,
            phase.value if phase else None,
            job.options.model_dump(),
            job.source,
            job.sealed,
            job.expected_documents,
            job.version,
            job.updated_at,
            job.status_dirty,
            job.status_emitted_at,
        )
        await self.conn.executemany(
            """UPDATE ingestion_phase_status SET status = $3, total = $4, processed = $5,
                   failed = $6, parked = $7, started_at = $8, paused_at = $9,
                   completed_at = $10, updated_at = COALESCE($11, updated_at),
                   last_progress_at = $12, last_error = $13, stalled = $14,
                   pause_requested = $15
               WHERE job_id = $1 AND phase = $2""",
            [
                (
                    job.job_id,
                    p.phase.value,
                    *(
                        getattr(p, c).value if c == "status" else getattr(p, c)
                        for c in _PHASE_COLUMNS
                    ),
                    p.phase in job.pause_requested,
                )
                for p in job.phases
            ],
        )

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        """Queue messages to publish once this transaction commits."""
        if messages:
            await self.conn.executemany(
                "INSERT INTO outbox (topic, key, value) VALUES ($1, $2, $3)",
                [(m.topic, m.key, m.value) for m in messages],
            )

    async def store_offsets(self, group_id: str, offsets: dict[tuple[str, int], int]) -> None:
        """Record the next offset to read per partition, in this transaction."""
        if offsets:
            await self.conn.executemany(
                """INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (group_id, topic, partition)
                   DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()""",
                [(group_id, t, p, o) for (t, p), o in offsets.items()],
            )

    async def dirty_or_running_jobs(self, limit: int = 500) -> list[str]:
        """Jobs whose status may need a periodic look: unpublished progress or a stall check."""
        rows = await self.conn.fetch(
            """SELECT job_id FROM ingestion_jobs
               WHERE status_dirty OR derived_status = 'running'
               ORDER BY updated_at LIMIT $1""",
            limit,
        )
        return [r["job_id"] for r in rows]


class PostgresStore:
    """Everything the service reads from and writes to Postgres."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[JobUnit]:
        """One transaction for one aggregation batch."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield JobUnit(conn)

    async def stored_offsets(self, group_id: str) -> dict[tuple[str, int], int]:
        """The aggregator's committed offsets."""
        rows = await self.pool.fetch(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = $1",
            group_id,
        )
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    # -- outbox -----------------------------------------------------------------------------

    @asynccontextmanager
    async def outbox_batch(
        self, limit: int = 1000
    ) -> AsyncIterator[list[tuple[int, OutboxMessage]]]:
        """Oldest queued messages; deleted when the block exits without error.

        One drainer at a time (advisory transaction lock) keeps per-job order across processes.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            got = await conn.fetchval("SELECT pg_try_advisory_xact_lock(7301)")
            if not got:
                yield []
                return
            rows = await conn.fetch(
                "SELECT id, topic, key, value FROM outbox ORDER BY id LIMIT $1", limit
            )
            batch = [(r["id"], OutboxMessage(r["topic"], r["key"], r["value"])) for r in rows]
            yield batch
            if batch:
                await conn.execute("DELETE FROM outbox WHERE id <= $1", batch[-1][0])

    # -- worker gate ------------------------------------------------------------------------

    @asynccontextmanager
    async def gate(
        self, job_ids: Iterable[str], phases: Sequence[Phase]
    ) -> AsyncIterator[set[tuple[str, Phase]]]:
        """Which (job, phase) pairs are paused or pausing, held (KEY SHARE) while the block runs.

        A pause command takes these rows FOR UPDATE, so it waits for a batch that is already
        starting documents to finish: after a pause commits, no new batch starts that phase.
        """
        ids = sorted(set(job_ids))
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT job_id, phase, status, pause_requested FROM ingestion_phase_status
                   WHERE job_id = ANY($1::text[]) AND phase = ANY($2::text[])
                   ORDER BY job_id, position FOR KEY SHARE""",
                ids,
                [p.value for p in phases],
            )
            yield {
                (r["job_id"], Phase(r["phase"]))
                for r in rows
                if r["status"] == PhaseStatus.PAUSED.value or r["pause_requested"]
            }

    # -- KB ---------------------------------------------------------------------------------

    async def index_documents(self, docs: Sequence[ChunkMessage]) -> None:
        """Replace each document and its chunks in the KB, idempotently, in one transaction."""
        if not docs:
            return
        latest: dict[tuple[str, str], ChunkMessage] = {}
        for doc in docs:  # a later copy of the same document in one batch wins
            latest[(doc.kb_id, doc.doc_id)] = doc
        items = list(latest.values())
        chunk_rows = [
            (d.kb_id, d.doc_id, n, text) for d in items for n, text in enumerate(d.chunks)
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO kb_documents AS k (kb_id, doc_id, job_id, title, content_type,
                       metadata, text, chunk_count)
                   SELECT kb_id, doc_id, job_id, title, content_type, metadata::jsonb, text, n
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                               $6::text[], $7::text[], $8::int[])
                        AS u(kb_id, doc_id, job_id, title, content_type, metadata, text, n)
                   ON CONFLICT (kb_id, doc_id) DO UPDATE SET job_id = EXCLUDED.job_id,
                       title = EXCLUDED.title, content_type = EXCLUDED.content_type,
                       metadata = EXCLUDED.metadata, text = EXCLUDED.text,
                       chunk_count = EXCLUDED.chunk_count, updated_at = now()""",
                [d.kb_id for d in items],
                [d.doc_id for d in items],
                [d.job_id for d in items],
                [d.title for d in items],
                [d.content_type for d in items],
                [json.dumps(d.metadata) for d in items],
                [d.text for d in items],
                [len(d.chunks) for d in items],
            )
            await conn.execute(
                """DELETE FROM kb_chunks c USING unnest($1::text[], $2::text[], $3::int[])
                       AS u(kb_id, doc_id, n)
                   WHERE c.kb_id = u.kb_id AND c.doc_id = u.doc_id AND c.chunk_no >= u.n""",
                [d.kb_id for d in items],
                [d.doc_id for d in items],
                [len(d.chunks) for d in items],
            )
            if chunk_rows:
                await conn.execute(
                    """INSERT INTO kb_chunks (kb_id, doc_id, chunk_no, text)
                       SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[])
                       ON CONFLICT (kb_id, doc_id, chunk_no) DO UPDATE SET text = EXCLUDED.text
                       WHERE kb_chunks.text IS DISTINCT FROM EXCLUDED.text""",
                    [r[0] for r in chunk_rows],
                    [r[1] for r in chunk_rows],
                    [r[2] for r in chunk_rows],
                    [r[3] for r in chunk_rows],
                )

    async def search(self, kb_id: str, query: str, limit: int) -> list[dict[str, Any]]:
        """Chunks of a KB ranked by full-text relevance, with a highlighted snippet."""
        rows = await self.pool.fetch(
            """WITH q AS (SELECT websearch_to_tsquery('english', $2) AS query)
               SELECT c.doc_id, c.chunk_no, d.title, d.content_type,
                      ts_rank_cd(c.tsv, q.query) AS score,
                      ts_headline('english', c.text, q.query,
                                  'MaxFragments=1, MaxWords=30, MinWords=10') AS snippet
               FROM kb_chunks c JOIN q ON c.tsv @@ q.query
               JOIN kb_documents d ON d.kb_id = c.kb_id AND d.doc_id = c.doc_id
               WHERE c.kb_id = $1
               ORDER BY score DESC, c.doc_id, c.chunk_no
               LIMIT $3""",
            kb_id,
            query,
            limit,
        )
        return [dict(r) for r in rows]

    # -- read side --------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobRecord | None:
        """One job with its phases, or None."""
        async with self.pool.acquire() as conn:
            job = await conn.fetchrow("SELECT * FROM ingestion_jobs WHERE job_id = $1", job_id)
            if job is None:
                return None
            phases = await conn.fetch(
                "SELECT * FROM ingestion_phase_status WHERE job_id = $1 ORDER BY position", job_id
            )
        return _job_from_rows(job, phases)

    async def list_jobs(
        self, status: str | None, kb_id: str | None, limit: int, after: str | None
    ) -> list[JobRecord]:
        """Jobs ordered by id, filtered, after a cursor (keyset pagination)."""
        async with self.pool.acquire() as conn:
            jobs = await conn.fetch(
                """SELECT * FROM ingestion_jobs
                   WHERE ($1::text IS NULL OR derived_status = $1)
                     AND ($2::text IS NULL OR kb_id = $2)
                     AND ($3::text IS NULL OR job_id > $3)
                   ORDER BY job_id LIMIT $4""",
                status,
                kb_id,
                after,
                limit,
            )
            ids = [j["job_id"] for j in jobs]
            phases = await conn.fetch(
                "SELECT * FROM ingestion_phase_status WHERE job_id = ANY($1::text[])"
                " ORDER BY job_id, position",
                ids,
            )
        by_job: dict[str, list[asyncpg.Record]] = {}
        for row in phases:
            by_job.setdefault(row["job_id"], []).append(row)
        return [_job_from_rows(j, by_job.get(j["job_id"], [])) for j in jobs]

    async def job_documents(
        self,
        job_id: str,
        phase: Phase | None,
        outcome: str | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[dict[str, Any]]:
        """Per-document outcomes of a job, filtered by phase and outcome, after a
        (doc_id, phase) cursor."""
        rows = await self.pool.fetch(
            """SELECT doc_id, phase, outcome, reason, error, attempts, first_seen_at, updated_at
               FROM ingestion_document_status
               WHERE job_id = $1 AND ($2::text IS NULL OR phase = $2)
                 AND ($3::text IS NULL OR outcome = $3)
                 AND ($4::text IS NULL OR (doc_id, phase) > ($4, $5))
               ORDER BY doc_id, phase LIMIT $6""",
            job_id,
            phase.value if phase else None,
            outcome,
            after[0] if after else None,
            after[1] if after else "",
            limit,
        )
        return [dict(r) for r in rows]

    async def documents_with_outcome(
        self, job_id: str, phases: Sequence[Phase], outcome: str
    ) -> list[tuple[str, Phase]]:
        """(doc_id, phase) of a job's documents with `outcome` in `phases` (read only)."""
        rows = await self.pool.fetch(
            """SELECT doc_id, phase FROM ingestion_document_status
               WHERE job_id = $1 AND phase = ANY($2::text[]) AND outcome = $3 ORDER BY seq""",
            job_id,
            [p.value for p in phases],
            outcome,
        )
        return [(r["doc_id"], Phase(r["phase"])) for r in rows]

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self.pool.fetchval("SELECT 1")
