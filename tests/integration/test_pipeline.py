"""The pipeline in one process against real Kafka and Postgres: counting, failures, search."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from service.adapters.postgres import PostgresStore
from service.domain.chunking import ChunkingParams, chunk_text
from service.domain.jobs import JobStatus
from tests.integration.conftest import (
    Feeder,
    SettingsFactory,
    counters,
    read_topic,
    running,
    text_doc,
    wait_for_job,
)

pytestmark = pytest.mark.integration

WORDS = [
    "river", "stone", "ledger", "harbor", "signal",
    "lantern", "meadow", "copper", "orbit", "thistle",
]  # fmt: skip


def prose(seed: int, words: int = 300) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] + str(i % 13) for i in range(words))


async def test_a_document_sent_twice_counts_once_with_one_set_of_chunks(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory(chunk_size=200, chunk_overlap=20)
    job, kb = f"dup-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    docs = [text_doc(job, kb, f"doc-{i}", prose(i)) for i in range(10)]
    feeder = Feeder(settings)
    async with running(settings):
        await feeder.documents(docs)
        await feeder.documents([docs[3], docs[7]])  # re-sent
        await feeder.seal(job, 10)
        done = await wait_for_job(store, job)
    assert done.status == JobStatus.COMPLETED
    assert counters(done) == {p: ("completed", 10, 10, 0, 0) for p in counters(done)}
    expected = {
        (d.doc_id, n, t)
        for d in docs
        for n, t in enumerate(chunk_text(d.text or "", ChunkingParams(200, 20)))
    }
    rows = await store.pool.fetch(
        "SELECT doc_id, chunk_no, text FROM kb_chunks WHERE kb_id = $1", kb
    )
    assert len(rows) == len(expected)
    assert {(r["doc_id"], r["chunk_no"], r["text"]) for r in rows} == expected


@pytest.mark.parametrize(
    ("max_failed", "status", "extract_status"),
    [
        (10, JobStatus.COMPLETED, "completed"),
        (0, JobStatus.FAILED, "failed"),
    ],
)
async def test_undecodable_documents_fail_in_extract_within_the_job_tolerance(
    settings_factory: SettingsFactory,
    store: PostgresStore,
    max_failed: int,
    status: JobStatus,
    extract_status: str,
) -> None:
    settings = settings_factory()
    job, kb = f"bad-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    good = [text_doc(job, kb, f"good-{i}", prose(i)) for i in range(20)]
    junk = base64.b64encode(b"\x00\x01 definitely not a pdf " * 10).decode()
    bad = [
        text_doc(job, kb, f"bad-{i}", "x").model_copy(
            update={"text": None, "content_b64": junk, "content_type": "application/pdf"}
        )
        for i in range(5)
    ]
    feeder = Feeder(settings)
    async with running(settings):
        await feeder.create(job, kb, max_failed=max_failed)
        await feeder.documents(good[:10] + bad + good[10:])
        await feeder.seal(job, 25)
        done = await wait_for_job(
            store, job, until=lambda j: j.status == status and j.phases[1].processed == 20
        )
        dlq = await read_topic(settings, settings.topics.dlq)
    phases = counters(done)
    assert phases["load"] == ("completed", 25, 25, 0, 0)
    assert phases["extract"] == (extract_status, 25, 20, 5, 0)
    assert phases["chunk"][1:] == (20, 20, 0, 0)
    failed = await store.job_documents(job, None, "failed", 100, None)
    assert sorted(r["doc_id"] for r in failed) == [f"bad-{i}" for i in range(5)]
    assert {(r["phase"], r["reason"]) for r in failed} == {("extract", "extract_failed")}
    assert sorted(d["doc_id"] for d in dlq if d["job_id"] == job) == [f"bad-{i}" for i in range(5)]
    assert {d["reason"] for d in dlq} == {"extract_failed"}


async def test_search_finds_a_planted_phrase_in_the_right_document(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory()
    job, kb = f"srch-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    docs = [text_doc(job, kb, f"doc-{i}", prose(i)) for i in range(12)]
    docs[8] = text_doc(job, kb, "doc-8", prose(8) + " the vermilion quokka juggles turbines")
    feeder = Feeder(settings)
    async with running(settings):
        await feeder.documents(docs)
        await feeder.seal(job, 12)
        await wait_for_job(store, job)
    hits = await store.search(kb, "vermilion quokka juggles turbines", 5)
    assert [h["doc_id"] for h in hits] == ["doc-8"]
    assert "<b>quokka</b>" in hits[0]["snippet"]


async def test_status_events_have_strictly_increasing_versions_and_end_completed(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory(status_progress_interval_s=0.0)
    job, kb = f"ver-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    feeder = Feeder(settings)
    async with running(settings):
        for i in range(5):  # several batches, so several status changes
            await feeder.documents([text_doc(job, kb, f"doc-{i}", prose(i))])
        await feeder.seal(job, 5)
        done = await wait_for_job(store, job)
        events = [
            e for e in await read_topic(settings, settings.topics.status) if e["job_id"] == job
        ]
    versions = [e["version"] for e in events]
    assert versions == sorted(set(versions)), versions
    assert events[-1]["status"] == "completed"
    assert events[-1]["version"] == done.version
    assert [p["processed"] for p in events[-1]["phases"]] == [5, 5, 5, 5]


async def test_a_record_the_database_refuses_is_dead_lettered_and_the_partition_flows_on(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory(partitions_default=1)
    job, kb = f"nul-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    # Valid by the schema, refused by Postgres: text columns cannot hold NUL characters.
    poison = json.dumps({
        "type": "phase-event", "v": 1, "job_id": job, "kb_id": kb, "doc_id": "x",
        "outcomes": [{"phase": "extract", "outcome": "failed", "error": "bad\x00byte"}],
        "emitted_at": "2026-01-01T00:00:00Z",
    }).encode()  # fmt: skip
    feeder = Feeder(settings)
    async with running(settings):
        await feeder.send(settings.topics.phase_events, job, [poison])
        await feeder.documents([text_doc(job, kb, f"d{i}", prose(i)) for i in range(3)])
        await feeder.seal(job, 3)
        done = await wait_for_job(store, job)
        dlq = await read_topic(settings, settings.topics.dlq, idle_s=0.5)
    assert done.status == JobStatus.COMPLETED
    assert counters(done)["index"] == ("completed", 3, 3, 0, 0)
    assert [(d["reason"], d["source_topic"]) for d in dlq] == [
        ("unprocessable", settings.topics.phase_events)
    ]
    assert base64.b64decode(dlq[0]["original_b64"]) == poison


async def test_metrics_count_the_records_each_worker_handled(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    from prometheus_client import REGISTRY

    def handled(worker: str) -> float:
        return REGISTRY.get_sample_value("kb_ingest_records_total", {"worker": worker}) or 0.0

    before = {w: handled(w) for w in ("producer", "consumer", "aggregator")}
    settings = settings_factory()
    job, kb = f"met-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    feeder = Feeder(settings)
    async with running(settings):
        await feeder.documents([text_doc(job, kb, f"d{i}", prose(i)) for i in range(4)])
        await feeder.seal(job, 4)
        await wait_for_job(store, job)
    assert handled("producer") - before["producer"] == 5  # 4 documents + the seal (kb.control)
    assert handled("consumer") - before["consumer"] == 4  # one chunk message per document
    assert handled("aggregator") - before["aggregator"] >= 9  # 8 outcome events + the seal
