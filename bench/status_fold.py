"""Bench 1: per-document phase outcomes folded into Postgres, three ways.

- ours: the aggregator's `JobFolding`, one transaction per batch of events;
- naive: one transaction per outcome, recounting the (job, phase) from the document rows;
- COPY limit: `copy_records_to_table` of the same rows into an index-free temporary table.

Every run starts from empty tables, and every run is checked: counters that are not exact
raise `BenchFailure` instead of producing a figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bench.naive_sql import (
    COPY_COLUMNS,
    COPY_TABLE,
    COUNT_COPIED,
    CREATE_COPY_TABLE,
    DOCUMENT_ROWS,
    NAIVE_RECOUNT_PHASE,
    NAIVE_UPSERT_OUTCOME,
    PHASE_COUNTERS,
    RESET_TABLES,
    TRUNCATE_COPY_TABLE,
)
from bench.plan import FoldPlan
from bench.report import BenchFailure, Comparison, Measurement, Section, format_rate, rate
from service.adapters.postgres import PostgresStore
from service.config import Settings
from service.contracts import Command, ControlMessage, Outcome, PhaseEventMessage, PhaseOutcome
from service.domain.phases import PHASES, Phase
from service.pipeline.aggregator import JobFolding
from service.pipeline.producer import PRODUCER_PHASES
from service.pipeline.runtime import utcnow

# How far the consumer's `index` outcomes trail the producer's in the event stream.
_LAG_DOCS = 250

Log = Callable[[str], None]


@dataclass(frozen=True)
class FoldWorkload:
    """`jobs` jobs of `docs_per_job` documents each, every document going through every phase."""

    jobs: int
    docs_per_job: int
    tag: str

    @property
    def documents(self) -> int:
        return self.jobs * self.docs_per_job

    @property
    def outcomes(self) -> int:
        return self.documents * len(PHASES)

    def job_ids(self) -> list[str]:
        return [f"{self.tag}-job-{j:02d}" for j in range(self.jobs)]

    def documents_in_order(self) -> list[tuple[str, str]]:
        """(job_id, doc_id) in arrival order: the jobs' documents interleave, as on a partition."""
        jobs = self.job_ids()
        return [(jobs[i % self.jobs], f"doc-{i:06d}") for i in range(self.documents)]

    def events(self) -> list[PhaseEventMessage]:
        """The stream the aggregator reads: per document, the producer's event with its three
        outcomes, and later the consumer's event with `index`, trailing by `_LAG_DOCS`."""
        now = utcnow()
        order = self.documents_in_order()
        events: list[PhaseEventMessage] = []
        for start in range(0, len(order), _LAG_DOCS):
            block = order[start : start + _LAG_DOCS]
            for job_id, doc_id in block:
                events.append(_event(job_id, doc_id, PRODUCER_PHASES, now))
            for job_id, doc_id in block:
                events.append(_event(job_id, doc_id, (Phase.INDEX,), now))
        return events


def _event(job_id: str, doc_id: str, phases: Sequence[Phase], now: datetime) -> PhaseEventMessage:
    return PhaseEventMessage(
        job_id=job_id,
        kb_id="bench-kb",
        doc_id=doc_id,
        outcomes=[PhaseOutcome(phase=p, outcome=Outcome.PROCESSED) for p in phases],
        emitted_at=now,
    )


def flat_outcomes(events: Sequence[PhaseEventMessage]) -> list[tuple[str, str, str, str]]:
    """(job_id, doc_id, phase, outcome) per outcome, in stream order."""
    return [
        (e.job_id, e.doc_id, o.phase.value, o.outcome.value) for e in events for o in e.outcomes
    ]


def batches(events: Sequence[PhaseEventMessage], size: int) -> list[Sequence[PhaseEventMessage]]:
    """Consecutive slices of at most `size` events (the aggregator's `getmany` batches)."""
    return [events[i : i + size] for i in range(0, len(events), size)]


# -- setup and checks (never timed) ---------------------------------------------------------


async def reset(store: PostgresStore) -> None:
    """Empty the service's tables so that every run starts from the same state."""
    async with store.pool.acquire() as conn:
        await conn.execute(RESET_TABLES)


async def create_sealed_jobs(store: PostgresStore, settings: Settings, w: FoldWorkload) -> None:
    """Create and seal the workload's jobs through the aggregator's own command path."""
    async with store.unit() as unit:
        folding = JobFolding(settings, unit, utcnow())
        ids = w.job_ids()
        await folding.load(set(ids))
        for job_id in ids:
            await folding.apply_command(
                ControlMessage(command=Command.CREATE, job_id=job_id, kb_id="bench-kb")
            )
            await folding.apply_command(
                ControlMessage(
                    command=Command.SEAL, job_id=job_id, expected_documents=w.docs_per_job
                )
            )
        await folding.finish()


async def check_counters(
    store: PostgresStore, w: FoldWorkload, variant: str, *, completed: bool
) -> None:
    """Every phase of every job counted each document exactly once, all processed.

    Raises:
        BenchFailure: a counter, the number of document rows, or a job's status is wrong.
    """
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(PHASE_COUNTERS)
        documents = await conn.fetchval(DOCUMENT_ROWS)
        statuses = await conn.fetch("SELECT job_id, derived_status FROM ingestion_jobs")
    expected = {(j, p.value) for j in w.job_ids() for p in PHASES}
    seen = {(r["job_id"], r["phase"]) for r in rows}
    if seen != expected:
        raise BenchFailure(f"{variant}: phase rows {sorted(seen ^ expected)[:5]} missing or extra")
    n = w.docs_per_job
    wrong = [
        dict(r)
        for r in rows
        if (r["total"], r["processed"], r["failed"], r["parked"]) != (n, n, 0, 0)
    ]
    if wrong:
        raise BenchFailure(
            f"{variant}: {len(wrong)} phase counters are not total=processed={n}: {wrong[:3]}"
        )
    if documents != w.outcomes:
        raise BenchFailure(f"{variant}: {documents} document rows, expected {w.outcomes}")
    if completed:
        unfinished = {r["job_id"]: r["derived_status"] for r in statuses}
        unfinished = {j: s for j, s in unfinished.items() if s != "completed"}
        if unfinished:
            raise BenchFailure(f"{variant}: jobs not completed after every outcome: {unfinished}")


async def durability(store: PostgresStore) -> str:
    """What a commit costs on this server, read from it: fsync off makes commits cheap."""
    async with store.pool.acquire() as conn:
        fsync = await conn.fetchval("SHOW fsync")
        synchronous = await conn.fetchval("SHOW synchronous_commit")
    text = f"Postgres fsync={fsync}, synchronous_commit={synchronous}"
    if fsync == "off":
        text += ": commits are cheaper than in production, which flatters naive (1 commit/outcome)"
    return text


# -- the three variants (only the writes are timed) -----------------------------------------


async def run_ours(
    store: PostgresStore, settings: Settings, events: Sequence[PhaseEventMessage], batch: int
) -> float:
    """The aggregator's fold, one transaction per batch; returns seconds."""
    offset = 0
    started = time.perf_counter()
    for chunk in batches(events, batch):
        async with store.unit() as unit:
            folding = JobFolding(settings, unit, utcnow())
            await folding.load({e.job_id for e in chunk})
            await folding.apply_events(chunk)
            await folding.finish()
            await unit.add_outbox(folding.effects.outbox)
            offset += len(chunk)
            await unit.store_offsets(settings.group_aggregator, {("bench", 0): offset})
    return time.perf_counter() - started


async def run_naive(store: PostgresStore, outcomes: Sequence[tuple[str, str, str, str]]) -> float:
    """One transaction per outcome: upsert the row, recount its (job, phase); returns seconds."""
    async with store.pool.acquire() as conn:
        started = time.perf_counter()
        for job_id, doc_id, phase, outcome in outcomes:
            async with conn.transaction():
                await conn.execute(NAIVE_UPSERT_OUTCOME, job_id, doc_id, phase, outcome)
                await conn.execute(NAIVE_RECOUNT_PHASE, job_id, phase)
        return time.perf_counter() - started


def copy_records(outcomes: Sequence[tuple[str, str, str, str]]) -> list[tuple[object, ...]]:
    """The rows a full `ingestion_document_status` write would hold, in COPY_COLUMNS order."""
    now = utcnow()
    return [
        (job_id, doc_id, phase, outcome, None, None, 1, None, None, seq, now, now)
        for seq, (job_id, doc_id, phase, outcome) in enumerate(outcomes, start=1)
    ]


async def run_copy(conn: asyncpg.Connection, records: Sequence[tuple[object, ...]]) -> float:
    """One COPY of every row into the index-free temporary table; returns seconds."""
    await conn.execute(TRUNCATE_COPY_TABLE)
    started = time.perf_counter()
    await conn.copy_records_to_table(COPY_TABLE, records=records, columns=COPY_COLUMNS)
    return time.perf_counter() - started


async def check_copied(conn: asyncpg.Connection, w: FoldWorkload) -> None:
    """The COPY wrote each (job, phase) `docs_per_job` times, all processed.

    Raises:
        BenchFailure: a count is wrong.
    """
    rows = await conn.fetch(COUNT_COPIED)
    n = w.docs_per_job
    counts = {(r["job_id"], r["phase"]): (r["total"], r["processed"]) for r in rows}
    expected = {(j, p.value): (n, n) for j in w.job_ids() for p in PHASES}
    if counts != expected:
        diff = {k: counts.get(k) for k in expected if counts.get(k) != expected[k]}
        raise BenchFailure(f"COPY limit: wrong per-(job, phase) counts: {list(diff.items())[:3]}")


# -- the bench -------------------------------------------------------------------------------


async def bench_status_fold(store: PostgresStore, plan: FoldPlan, log: Log) -> Section:
    """Run the three variants `plan.runs` times, interleaved, and return the report section."""
    settings = Settings()
    main = FoldWorkload(plan.jobs, plan.docs_per_job, "ours")
    small = FoldWorkload(plan.naive_jobs, plan.docs_per_job, "naive")
    events = main.events()
    naive_outcomes = flat_outcomes(small.events())
    records = copy_records(flat_outcomes(events))

    per_txn = sum(len(e.outcomes) for e in batches(events, plan.batch_events)[0])
    ours = Measurement(
        "ours: JobFolding",
        "outcomes",
        main.outcomes,
        note=f"{plan.batch_events} events (~{per_txn} outcomes) per txn; {plan.jobs} jobs",
    )
    naive = Measurement(
        "naive: txn per outcome + recount",
        "outcomes",
        small.outcomes,
        note=(
            f"sized down: {plan.naive_jobs} job x {plan.docs_per_job} docs"
            " (same docs/job, so same recount size); compare rates"
        ),
    )
    copy = Measurement(
        "limit: COPY into temp table",
        "outcomes",
        main.outcomes,
        note="copy_records_to_table, no index/PK/WAL; no counters",
    )

    cold: tuple[float, float] | None = None
    async with store.pool.acquire() as copy_conn:
        await copy_conn.execute(CREATE_COPY_TABLE)
        total_runs = plan.runs + (1 if plan.warmup else 0)
        for run in range(total_runs):
            warm = plan.warmup and run == 0
            label = "warm-up" if warm else f"run {run + (0 if plan.warmup else 1)}/{plan.runs}"

            await reset(store)
            await create_sealed_jobs(store, settings, main)
            seconds_ours = await run_ours(store, settings, events, plan.batch_events)
            await check_counters(store, main, "ours", completed=True)

            await reset(store)
            await create_sealed_jobs(store, settings, small)
            seconds_naive = await run_naive(store, naive_outcomes)
            await check_counters(store, small, "naive", completed=False)

            seconds_copy = await run_copy(copy_conn, records)
            await check_copied(copy_conn, main)

            log(
                f"bench 1 {label}: ours {seconds_ours:.2f} s, naive {seconds_naive:.2f} s,"
                f" COPY {seconds_copy:.3f} s"
            )
            if warm:
                cold = (seconds_ours, seconds_naive)
            else:
                ours.add(seconds_ours)
                naive.add(seconds_naive)
                copy.add(seconds_copy)
        await copy_conn.execute(f"DROP TABLE {COPY_TABLE}")
    await reset(store)

    notes = [
        f"{len(PHASES)} outcomes per document: producer event (3) + consumer event (1);"
        " counters checked exact after every run",
        await durability(store),
    ]
    if cold is not None:
        notes.append(
            "warm-up (not in the medians) = first pass on a fresh database, before planner"
            f" statistics: ours {format_rate(rate(main.outcomes, cold[0]))} outcomes/s,"
            f" naive {format_rate(rate(small.outcomes, cold[1]))} outcomes/s"
        )
    return Section(
        title="1 status fold into Postgres",
        measurements=[ours, naive, copy],
        comparisons=[
            Comparison("ours / naive", ours, naive, "outcomes/s over outcomes/s (N differs)"),
            Comparison("ours / COPY limit", ours, copy, "share of the raw write bound reached"),
        ],
        notes=notes,
    )
