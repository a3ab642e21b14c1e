"""Acceptance of the pipeline: four `kb-ingest run` processes, fed by kcat, checked to the row.

The producer, consumer, aggregator and API run as separate processes for the whole module.
Documents and control messages are written with `kcat` (a client that shares no code with the
service), validated against the committed JSON Schemas first. What the KB must hold is
recomputed from the same bytes with the service's pure extraction and chunking functions, and
compared with `kb_documents` / `kb_chunks` row for row.
"""

from __future__ import annotations

import base64
import itertools
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.demo_corpus import DEMO_PHRASE, DEMO_PHRASE_FILE, write_corpus
from service.domain.documents import content_type_for
from tests.e2e.conftest import ServiceEnv, ServiceProcess, ServiceProcesses
from tests.e2e.helpers import (
    PHASE_NAMES,
    ExpectedKb,
    KafkaRecord,
    SentDocument,
    akcat_consume,
    akcat_produce,
    all_done,
    assert_same_rows,
    assert_valid,
    compact_json,
    control,
    counters,
    document,
    schema_validator,
    wait_until,
)

pytestmark = pytest.mark.e2e

ROLES = ("producer", "consumer", "aggregator", "api")
JOB_SIZES = (400, 350, 250)
COMPLETION_DEADLINE_S = 180
PLANTED_PHRASE = "periwinkle zeppelin harmonica"

DOCUMENT_SCHEMA = schema_validator("document")
CONTROL_SCHEMA = schema_validator("control")
STATUS_SCHEMA = schema_validator("status")
DLQ_SCHEMA = schema_validator("dlq")


@dataclass
class Deployment:
    """The module's four processes and how to reach what they write."""

    env: ServiceEnv
    processes: dict[str, ServiceProcess]
    db: asyncpg.Pool
    api: httpx.AsyncClient
    ready_s: float

    @property
    def bootstrap(self) -> str:
        return self.env.kafka_bootstrap

    def topic(self, name: str) -> str:
        return self.env.topics[name]

    def name(self, what: str) -> str:
        """A job or KB id unique to this module run."""
        return f"e2e-{self.env.suffix}-{what}"

    async def send_documents(self, docs: list[SentDocument]) -> None:
        for doc in docs:
            assert_valid(DOCUMENT_SCHEMA, doc.message)
        await akcat_produce(self.bootstrap, self.topic("documents"), [d.line() for d in docs])

    async def send_control(self, *messages: dict[str, Any]) -> None:
        for message in messages:
            assert_valid(CONTROL_SCHEMA, message)
        await akcat_produce(
            self.bootstrap,
            self.topic("control"),
            [(str(m["job_id"]), compact_json(m)) for m in messages],
        )

    # -- reading state back ----------------------------------------------------------------

    async def job_row(self, job_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow(
            """SELECT status, derived_status, current_phase, sealed, expected_documents,
                      version, options::text AS options
               FROM ingestion_jobs WHERE job_id = $1""",
            job_id,
        )
        return dict(row) if row else None

    async def phases(self, job_id: str) -> dict[str, tuple[str, int, int, int, int]]:
        rows = await self.db.fetch(
            """SELECT phase, status, total, processed, failed, parked
               FROM ingestion_phase_status WHERE job_id = $1 ORDER BY position""",
            job_id,
        )
        assert [r["phase"] for r in rows] in ([], list(PHASE_NAMES))
        return counters(dict(r) for r in rows)

    async def statuses(self, job_ids: list[str]) -> dict[str, str]:
        rows = await self.db.fetch(
            "SELECT job_id, derived_status FROM ingestion_jobs WHERE job_id = ANY($1::text[])",
            job_ids,
        )
        return {r["job_id"]: r["derived_status"] for r in rows}

    async def wait_for_jobs(self, job_ids: list[str], within: float) -> dict[str, str]:
        """Wait until every job is completed (or one failed); return their statuses."""
        return await wait_until(
            lambda: self.statuses(job_ids),
            lambda s: (
                len(s) == len(job_ids)
                and (all(v == "completed" for v in s.values()) or "failed" in s.values())
            ),
            within,
            f"jobs {job_ids} to complete",
        )

    async def kb_rows(
        self, kb_ids: list[str]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        documents = await self.db.fetch(
            """SELECT kb_id, doc_id, job_id, content_type, title, text, chunk_count
               FROM kb_documents WHERE kb_id = ANY($1::text[])""",
            kb_ids,
        )
        chunks = await self.db.fetch(
            "SELECT kb_id, doc_id, chunk_no, text FROM kb_chunks WHERE kb_id = ANY($1::text[])",
            kb_ids,
        )
        return [tuple(r) for r in documents], [tuple(r) for r in chunks]

    async def assert_kb_holds(self, kb_ids: list[str], expected: ExpectedKb) -> None:
        documents, chunks = await self.kb_rows(kb_ids)
        assert_same_rows(documents, expected.documents, f"kb_documents of {kb_ids}")
        assert_same_rows(chunks, expected.chunks, f"kb_chunks of {kb_ids}")

    async def document_outcomes(self, job_id: str) -> Counter[tuple[str, str, str | None, int]]:
        rows = await self.db.fetch(
            """SELECT phase, outcome, reason, attempts FROM ingestion_document_status
               WHERE job_id = $1""",
            job_id,
        )
        return Counter((r["phase"], r["outcome"], r["reason"], r["attempts"]) for r in rows)

    async def status_events(self, job_ids: list[str]) -> dict[str, list[KafkaRecord]]:
        """The job's records on the status topic, read back with kcat, in offset order."""
        records = await akcat_consume(self.bootstrap, self.topic("status"))
        by_job: dict[str, list[KafkaRecord]] = {j: [] for j in job_ids}
        for record in records:
            if record.key in by_job:
                by_job[record.key].append(record)
        return by_job

    async def assert_status_events(
        self, job_id: str, status: str, phases: dict[str, tuple[str, int, int, int, int]]
    ) -> list[dict[str, Any]]:
        """The job's status events: one partition, valid, versions strictly increasing, and
        the last one (once the outbox has drained) equal to the job as stored."""
        row = await self.job_row(job_id)
        assert row is not None
        latest = await wait_until(
            lambda: self.status_events([job_id]),
            lambda by_job: (
                bool(by_job[job_id]) and by_job[job_id][-1].json()["version"] == row["version"]
            ),
            30,
            f"the status event of {job_id} v{row['version']}",
        )
        records = latest[job_id]
        assert len({r.partition for r in records}) == 1, "a job's events span partitions"
        events = [r.json() for r in records]
        for event in events:
            assert_valid(STATUS_SCHEMA, event)
            assert event["job_id"] == job_id
        versions = [e["version"] for e in events]
        assert all(a < b for a, b in itertools.pairwise(versions)), versions
        last = events[-1]
        assert last["status"] == status
        assert last["legacy_status"] == status
        assert counters(last["phases"]) == phases
        return events


@pytest.fixture(scope="module")
def processes(
    service_env: Any, service_processes: ServiceProcesses
) -> tuple[ServiceEnv, dict[str, ServiceProcess], float]:
    env: ServiceEnv = service_env(status_progress_interval_s="0.5")
    started = time.monotonic()
    running = service_processes(env, *ROLES)
    return env, dict(zip(ROLES, running, strict=True)), time.monotonic() - started


@pytest.fixture(scope="module")
async def deployment(
    processes: tuple[ServiceEnv, dict[str, ServiceProcess], float],
) -> AsyncIterator[Deployment]:
    env, running, ready_s = processes
    db = await asyncpg.create_pool(env.database_url, min_size=1, max_size=4)
    try:
        async with httpx.AsyncClient(base_url=running["api"].url, timeout=10) as api:
            yield Deployment(env, running, db, api, ready_s)
    finally:
        await db.close()


# -- the corpus --------------------------------------------------------------------------------


def corpus_documents(paths: list[Path], job_id: str, kb_id: str, prefix: str) -> list[SentDocument]:
    """Documents from demo-corpus files: PDFs and every seventh text file as base64."""
    docs = []
    for index, path in enumerate(paths):
        content_type = content_type_for(path.name)
        assert content_type is not None
        binary = content_type == "application/pdf" or index % 7 == 3
        if content_type == "text/html" and index % 3 == 0:
            content_type = "text/html; charset=utf-8"
        docs.append(
            document(
                job_id,
                kb_id,
                f"{prefix}/{path.name}",
                content_type,
                path.read_bytes(),
                as_base64=binary,
                title=path.stem.replace("-", " "),
                metadata={"file": path.name, "index": index},
            )
        )
    return docs


def written_documents(job_id: str, kb_id: str) -> list[SentDocument]:
    """Hand-written documents: one holding the planted phrase, a decoy, and non-ASCII text."""
    planted = (
        "Field notes from the operations review.\n\n"
        f"The team agreed that the {PLANTED_PHRASE} is the only name anyone remembers "
        "for the rollout plan, so it stays.\n"
    )
    # Holds every word of the phrase, apart: a match, but a weaker one than the phrase itself.
    decoy = (
        "A periwinkle notebook lists every zeppelin model in the museum; the harmonica on the "
        "shelf is not part of the collection.\n"
    )
    unicode_text = (
        "Ünïcödé café — naïve façade, 東京の分散ログ, emoji 🚀, tab\tand\r\nnewlines.\n" * 30
    )
    return [
        document(
            job_id, kb_id, "written/planted.md", "text/markdown", planted.encode(), as_base64=False
        ),
        document(job_id, kb_id, "written/decoy.txt", "text/plain", decoy.encode(), as_base64=False),
        document(
            job_id,
            kb_id,
            "written/unicode.txt",
            "text/plain",
            unicode_text.encode(),
            as_base64=False,
            title="Ünïcödé",
            metadata={"lang": ["fr", "ja"], "nested": {"ok": True}},
        ),
    ]


@dataclass
class BulkRun:
    """The three jobs of the 1,000-document run and how long they took."""

    jobs: dict[str, list[SentDocument]]
    kb_of: dict[str, str]
    statuses: dict[str, str]
    elapsed_s: float

    @property
    def documents(self) -> int:
        return sum(len(d) for d in self.jobs.values())


@pytest.fixture(scope="module")
async def bulk(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> BulkRun:
    """1,000 documents in 3 jobs over 2 KBs, written by kcat, sealed, and run to the end."""
    kb_a, kb_b = deployment.name("kb-a"), deployment.name("kb-b")
    job_ids = [deployment.name(f"bulk-{n}") for n in (1, 2, 3)]
    kb_of = dict(zip(job_ids, (kb_a, kb_b, kb_a), strict=True))
    written = written_documents(job_ids[0], kb_a)
    paths = write_corpus(tmp_path_factory.mktemp("corpus"), sum(JOB_SIZES) - len(written), seed=11)
    first, second = JOB_SIZES[0] - len(written), JOB_SIZES[0] - len(written) + JOB_SIZES[1]
    jobs = {
        job_ids[0]: corpus_documents(paths[:first], job_ids[0], kb_a, "corpus") + written,
        job_ids[1]: corpus_documents(paths[first:second], job_ids[1], kb_b, "corpus"),
        job_ids[2]: corpus_documents(paths[second:], job_ids[2], kb_a, "corpus"),
    }
    assert [len(d) for d in jobs.values()] == list(JOB_SIZES)
    # Interleaved, as from three clients at once; each job's documents keep their order.
    interleaved = [
        d for group in itertools.zip_longest(*jobs.values()) for d in group if d is not None
    ]
    assert len(interleaved) == sum(JOB_SIZES)
    seal = {j: control("seal", j, expected_documents=len(d)) for j, d in jobs.items()}

    started = time.monotonic()
    # The third job is sealed before its documents arrive: the count decides, not the order.
    await deployment.send_control(seal[job_ids[2]])
    await deployment.send_documents(interleaved)
    await deployment.send_control(seal[job_ids[0]], seal[job_ids[1]])
    statuses = await deployment.wait_for_jobs(job_ids, COMPLETION_DEADLINE_S)
    elapsed = time.monotonic() - started
    run = BulkRun(jobs, kb_of, statuses, elapsed)
    print(
        f"\n{run.documents} documents in {len(jobs)} jobs completed in {elapsed:.1f}s "
        f"({run.documents / elapsed:.0f} documents/s; processes ready in {deployment.ready_s:.1f}s)"
    )
    return run


async def job_view(
    deployment: Deployment, job_id: str, status: str, current_phase: str | None
) -> dict[str, Any]:
    """`GET /v1/jobs/{id}`, checked for its derived and legacy status and current phase."""
    response = await deployment.api.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200
    view: dict[str, Any] = response.json()
    assert (view["status"], view["legacy_status"], view["current_phase"]) == (
        status,
        status,
        current_phase,
    )
    return view


# -- a) 1,000 documents, 3 jobs, 2 KBs ---------------------------------------------------------


async def test_thousand_documents_complete_with_exact_counts_rows_and_events(
    deployment: Deployment, bulk: BulkRun
) -> None:
    assert bulk.statuses == dict.fromkeys(bulk.jobs, "completed")
    for job_id, docs in bulk.jobs.items():
        n = len(docs)
        assert await deployment.phases(job_id) == all_done(n), job_id
        row = await deployment.job_row(job_id)
        assert row is not None
        assert (row["status"], row["derived_status"], row["current_phase"]) == (
            "completed",
            "completed",
            None,
        )
        assert (row["sealed"], row["expected_documents"]) == (True, n)
        assert await deployment.document_outcomes(job_id) == Counter(
            {(phase, "processed", None, 1): n for phase in PHASE_NAMES}
        )
        view = await job_view(deployment, job_id, "completed", None)
        assert (view["kb_id"], view["expected_documents"]) == (bulk.kb_of[job_id], n)
        assert counters(view["phases"]) == all_done(n)

    # The KB: exactly the recomputed documents and chunks, and nothing else, in both KBs.
    all_docs = [d for docs in bulk.jobs.values() for d in docs]
    expected = ExpectedKb.of(all_docs, deployment.env.chunking)
    assert len(expected.documents) == 1000
    await deployment.assert_kb_holds(sorted(set(bulk.kb_of.values())), expected)
    per_kb = Counter(d.kb_id for d in all_docs)
    rows = await deployment.db.fetch(
        "SELECT kb_id, count(*) AS n FROM kb_documents WHERE kb_id = ANY($1::text[])"
        " GROUP BY kb_id",
        sorted(per_kb),
    )
    kb_a, kb_b = deployment.name("kb-a"), deployment.name("kb-b")
    assert {r["kb_id"]: r["n"] for r in rows} == dict(per_kb) == {kb_a: 650, kb_b: 350}

    # kb.status, read back with kcat: per job, strictly increasing versions ending in completed.
    for job_id, docs in bulk.jobs.items():
        events = await deployment.assert_status_events(job_id, "completed", all_done(len(docs)))
        assert events[-1]["current_phase"] is None
        assert events[-1]["kb_id"] == bulk.kb_of[job_id]
        assert len(events) >= 2  # at least created/running and completed


# -- b) the same document twice counts once ----------------------------------------------------


async def test_document_sent_twice_counts_once_and_is_indexed_once(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    job_id, kb_id = deployment.name("dup"), deployment.name("kb-dup")
    paths = write_corpus(tmp_path_factory.mktemp("dup"), 15, seed=23)
    docs = corpus_documents(paths, job_id, kb_id, "dup")
    n = len(docs)
    # docs[0] three times (twice in one kcat run, once in another), docs[1] and docs[2] twice.
    # Each copy is a message of its own; the later ones come before the job's last documents,
    # so by the time the job completes every copy has gone through every phase.
    await deployment.send_documents([*docs[:8], docs[0]])
    await deployment.send_documents([docs[1], docs[2], docs[0]])
    await deployment.send_documents(docs[8:])
    await deployment.send_control(control("seal", job_id, expected_documents=n))

    written = [
        r
        for r in await akcat_consume(deployment.bootstrap, deployment.topic("documents"))
        if r.key == job_id
    ]
    assert len({r.partition for r in written}) == 1  # one partition: the order argument holds
    assert Counter(r.json()["doc_id"] for r in written) == Counter(
        {d.doc_id: 1 for d in docs} | {docs[0].doc_id: 3, docs[1].doc_id: 2, docs[2].doc_id: 2}
    )

    assert await deployment.wait_for_jobs([job_id], 60) == {job_id: "completed"}
    assert await deployment.phases(job_id) == all_done(n)
    assert await deployment.document_outcomes(job_id) == Counter(
        {(phase, "processed", None, 1): n for phase in PHASE_NAMES}
    )
    expected = ExpectedKb.of(docs, deployment.env.chunking)
    assert len(expected.chunks) > n  # several chunks a document: duplicates would show
    await deployment.assert_kb_holds([kb_id], expected)
    await deployment.assert_status_events(job_id, "completed", all_done(n))


# -- c) undecodable documents: tolerated up to max_failed_documents, else the job fails --------


@dataclass(frozen=True)
class BadDocuments:
    good: list[SentDocument]
    bad: list[SentDocument]
    reasons: dict[str, str]  # doc_id → the reason the service must give


def bad_job(job_id: str, kb_id: str, corpus: list[Path]) -> BadDocuments:
    """20 good documents and 5 undecodable ones, interleaved."""
    rng = random.Random(5)
    good = corpus_documents(corpus, job_id, kb_id, "good")
    bad, reasons = [], {}
    for n in range(3):  # base64 of bytes that are no PDF at all
        junk = bytes(rng.randrange(256) for _ in range(600))
        assert b"%PDF-" not in junk
        doc = document(job_id, kb_id, f"bad/junk-{n}.pdf", "application/pdf", junk, as_base64=True)
        bad.append(doc)
        reasons[doc.doc_id] = "extract_failed"
    for n in range(2):  # content_b64 that is not base64
        doc = SentDocument(
            {
                "type": "document",
                "v": 1,
                "job_id": job_id,
                "kb_id": kb_id,
                "doc_id": f"bad/not-base64-{n}.pdf",
                "content_type": "application/pdf",
                "content_b64": "%%not*base64!!" * (n + 1),
            },
            b"",
        )
        bad.append(doc)
        reasons[doc.doc_id] = "invalid_content"
    return BadDocuments(good, bad, reasons)


def interleave(good: list[SentDocument], bad: list[SentDocument]) -> list[SentDocument]:
    out = list(good)
    for index, doc in enumerate(bad):
        out.insert(2 + index * 5, doc)
    return out


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_corpus(tmp_path_factory.mktemp("small"), 20, seed=31)


async def assert_failures_reported(
    deployment: Deployment, job_id: str, batch: BadDocuments
) -> None:
    """The API lists exactly the bad documents as failed in extract; the DLQ holds each one."""
    response = await deployment.api.get(
        f"/v1/jobs/{job_id}/documents", params={"outcome": "failed"}
    )
    assert response.status_code == 200
    page = response.json()
    assert page["next_cursor"] is None
    assert {i["doc_id"]: (i["phase"], i["outcome"], i["reason"]) for i in page["items"]} == {
        doc_id: ("extract", "failed", reason) for doc_id, reason in batch.reasons.items()
    }
    assert len(page["items"]) == 5
    assert all(i["error"] for i in page["items"])

    sent = {d.doc_id: d.line()[1].encode() for d in batch.bad}

    async def dlq() -> list[dict[str, Any]]:
        records = await akcat_consume(deployment.bootstrap, deployment.topic("dlq"))
        return [r.json() for r in records if r.key == job_id]

    records = await wait_until(dlq, lambda r: len(r) >= 5, 30, f"5 DLQ records of {job_id}")
    assert len(records) == 5
    for record in records:
        assert_valid(DLQ_SCHEMA, record)
    assert {r["doc_id"]: r["reason"] for r in records} == batch.reasons
    for record in records:
        assert record["job_id"] == job_id
        assert record["source_topic"] == deployment.topic("documents")
        assert base64.b64decode(record["original_b64"]) == sent[record["doc_id"]]
        assert record["detail"]


async def test_failed_documents_within_max_failed_documents_let_the_job_complete(
    deployment: Deployment, small_corpus: list[Path]
) -> None:
    job_id, kb_id = deployment.name("tolerant"), deployment.name("kb-tolerant")
    batch = bad_job(job_id, kb_id, small_corpus)
    create = control("create", job_id, kb_id=kb_id, options={"max_failed_documents": 10})
    await deployment.send_control(create)
    # Control and documents are different topics, with no order between them: a client that
    # needs the options in force first waits until the job shows them.
    await wait_until(
        lambda: deployment.job_row(job_id),
        lambda row: row is not None and '"max_failed_documents": 10' in row["options"],
        30,
        f"the create of {job_id}",
    )
    await deployment.send_documents(interleave(batch.good, batch.bad))
    await deployment.send_control(control("seal", job_id, expected_documents=25))

    assert await deployment.wait_for_jobs([job_id], 60) == {job_id: "completed"}
    expected_phases = {
        "load": ("completed", 25, 25, 0, 0),
        "extract": ("completed", 25, 20, 5, 0),
        "chunk": ("completed", 20, 20, 0, 0),
        "index": ("completed", 20, 20, 0, 0),
    }
    assert await deployment.phases(job_id) == expected_phases
    view = await job_view(deployment, job_id, "completed", None)
    assert view["options"] == {"max_failed_documents": 10}
    assert counters(view["phases"]) == expected_phases
    await assert_failures_reported(deployment, job_id, batch)
    await deployment.assert_kb_holds([kb_id], ExpectedKb.of(batch.good, deployment.env.chunking))
    await deployment.assert_status_events(job_id, "completed", expected_phases)


async def test_failed_documents_beyond_the_default_limit_fail_the_job(
    deployment: Deployment, small_corpus: list[Path]
) -> None:
    job_id, kb_id = deployment.name("strict"), deployment.name("kb-strict")
    batch = bad_job(job_id, kb_id, small_corpus)
    await deployment.send_documents(interleave(batch.good, batch.bad))
    await deployment.send_control(control("seal", job_id, expected_documents=25))

    # A failed phase keeps processing the other documents: wait for all of them to be counted.
    expected_phases = {
        "load": ("completed", 25, 25, 0, 0),
        "extract": ("failed", 25, 20, 5, 0),
        "chunk": ("running", 20, 20, 0, 0),
        "index": ("running", 20, 20, 0, 0),
    }
    assert (
        await wait_until(
            lambda: deployment.phases(job_id),
            lambda phases: phases == expected_phases,
            60,
            f"{job_id} to fail with every document counted",
        )
        == expected_phases
    )
    row = await deployment.job_row(job_id)
    assert row is not None
    assert (row["status"], row["derived_status"], row["current_phase"]) == (
        "failed",
        "failed",
        "extract",
    )
    view = await job_view(deployment, job_id, "failed", "extract")
    assert view["options"] == {"max_failed_documents": 0}
    assert counters(view["phases"]) == expected_phases
    extract = next(p for p in view["phases"] if p["phase"] == "extract")
    assert extract["last_error"]
    await assert_failures_reported(deployment, job_id, batch)
    await deployment.assert_kb_holds([kb_id], ExpectedKb.of(batch.good, deployment.env.chunking))
    await deployment.assert_status_events(job_id, "failed", expected_phases)


# -- d) search --------------------------------------------------------------------------------


async def test_search_finds_the_planted_document_first(
    deployment: Deployment, bulk: BulkRun
) -> None:
    kb_a, kb_b = deployment.name("kb-a"), deployment.name("kb-b")

    async def search(kb_id: str, q: str) -> list[dict[str, Any]]:
        response = await deployment.api.get(f"/v1/kbs/{kb_id}/search", params={"q": q, "limit": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["kb_id"], body["query"]) == (kb_id, q)
        hits: list[dict[str, Any]] = body["hits"]
        return hits

    hits = await search(kb_a, PLANTED_PHRASE)
    # The phrase itself outranks its words scattered through the decoy; nothing else matches.
    assert [(h["doc_id"], h["chunk_no"]) for h in hits] == [
        ("written/planted.md", 0),
        ("written/decoy.txt", 0),
    ]
    assert hits[0]["score"] > hits[1]["score"]
    assert all(w in hits[0]["snippet"].lower() for w in PLANTED_PHRASE.split())
    assert await search(kb_b, PLANTED_PHRASE) == []

    # The demo corpus's own needle: one document of the first job (kb-a), none in kb-b.
    demo_hits = await search(kb_a, DEMO_PHRASE)
    assert demo_hits and demo_hits[0]["doc_id"] == f"corpus/{DEMO_PHRASE_FILE}"
    assert await search(kb_b, DEMO_PHRASE) == []


# -- the per-document listing, page by page ----------------------------------------------------


async def test_document_listing_pages_through_every_row(
    deployment: Deployment, bulk: BulkRun
) -> None:
    job_id = deployment.name("bulk-3")
    n = len(bulk.jobs[job_id])
    seen: list[tuple[str, str]] = []
    params: dict[str, Any] = {"limit": 999}  # 4 rows a document: page 1 ends inside one
    for _ in range(10):
        response = await deployment.api.get(f"/v1/jobs/{job_id}/documents", params=params)
        assert response.status_code == 200
        page = response.json()
        seen += [(i["doc_id"], i["phase"]) for i in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 4 * n
