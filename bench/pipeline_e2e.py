"""Bench 2: documents through the whole pipeline (real Kafka and Postgres) against a raw round trip.

- pipeline: the producer, consumer and aggregator roles run in this process; D text documents
  and a seal go to `kb.documents` / `kb.control`, and the clock stops when the job's derived
  status reads `completed` in Postgres;
- raw round trip: the same D values produced to a topic and consumed back with the service's
  own client settings, no processing (one hop where the pipeline makes three).

Start-up (topic creation, group joins) is outside the clock for both. Each run uses topics and
consumer groups of its own, and is checked: a job that fails, or a KB that is not exactly the D
documents with one copy of each chunk, raises `BenchFailure`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.backends import delete_topics
from bench.plan import PipelinePlan
from bench.report import BenchFailure, Comparison, Measurement, Section
from service.adapters.kafka import make_consumer
from service.adapters.postgres import JobRecord, PostgresStore
from service.bootstrap import Service, started_producer
from service.config import Settings, Topics
from service.contracts import Command, ControlMessage, DocumentMessage
from service.domain.jobs import JobStatus

ROLES = ("producer", "consumer", "aggregator")
_POLL_S = 0.05
_READY_DEADLINE_S = 90.0
# Filler vocabulary of the generated documents (searchable, deterministic).
_VOCABULARY = (
    "kafka postgres ingestion phase document chunk index status batch offset partition "
    "consumer producer aggregator transaction commit retry pause resume seal job knowledge "
    "base search vector text extract load stream event topic broker cluster replica leader "
    "follower schema migration latency throughput counter outcome marker progress stall"
)
_WORDS = _VOCABULARY.split()

Log = Callable[[str], None]


def new_tag() -> str:
    """A short id naming one run's topics, groups and job."""
    return uuid.uuid4().hex[:10]


def run_settings(bootstrap: str, database_url: str, tag: str) -> Settings:
    """Settings whose topics and consumer groups belong to one run only (defaults otherwise)."""
    return Settings(
        kafka_bootstrap=bootstrap,
        database_url=database_url,
        topics=Topics.prefixed(f"bench.{tag}"),
        group_producer=f"bench.{tag}.producer",
        group_consumer=f"bench.{tag}.consumer",
        group_aggregator=f"bench.{tag}.aggregator",
        health_port=0,
    )


def _topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.documents, t.control, t.chunks, t.phase_events, t.status, t.dlq]


def document_values(job_id: str, kb_id: str, count: int, chars: int) -> list[bytes]:
    """`count` text/plain documents of about `chars` characters, deterministic per index."""
    values = []
    for i in range(count):
        rng = random.Random(i)
        words: list[str] = []
        size = 0
        while size < chars:
            word = rng.choice(_WORDS)
            words.append(word)
            size += len(word) + 1
        doc = DocumentMessage(
            job_id=job_id,
            kb_id=kb_id,
            doc_id=f"doc-{i:06d}",
            content_type="text/plain",
            text=" ".join(words),
            title=f"bench document {i}",
        )
        values.append(doc.to_bytes())
    return values


# -- pipeline --------------------------------------------------------------------------------


async def _wait_ready(service: Service, task: asyncio.Task[None]) -> None:
    """Until every worker's consumer owns partitions (start-up stays outside the clock)."""
    try:
        async with asyncio.timeout(_READY_DEADLINE_S):
            while len(service.workers) < len(ROLES) or not all(
                w.consumer.assignment() for w in service.workers
            ):
                if task.done():
                    task.result()
                    raise BenchFailure("the service stopped before it was ready")
                await asyncio.sleep(_POLL_S)
    except TimeoutError:
        raise BenchFailure(f"the service was not ready within {_READY_DEADLINE_S:.0f} s") from None


async def _wait_completed(store: PostgresStore, job_id: str, deadline_s: float) -> JobRecord:
    job: JobRecord | None = None
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                job = await store.get_job(job_id)
                if job is not None and job.status == JobStatus.COMPLETED:
                    return job
                if job is not None and job.status == JobStatus.FAILED:
                    raise BenchFailure(f"pipeline: job {job_id} failed: {_phases(job)}")
                await asyncio.sleep(_POLL_S)
    except TimeoutError:
        state = _phases(job) if job else "no job row"
        raise BenchFailure(
            f"pipeline: job {job_id} not completed within {deadline_s:.0f} s: {state}"
        ) from None


def _phases(job: JobRecord) -> str:
    return ", ".join(
        f"{p.phase}={p.status} {p.processed}/{p.total} failed={p.failed}" for p in job.phases
    )


async def check_pipeline(store: PostgresStore, job: JobRecord, kb_id: str, documents: int) -> int:
    """Every phase processed every document once; the KB holds them with one copy of each chunk.

    Returns the number of chunks.

    Raises:
        BenchFailure: a counter or the KB is wrong.
    """
    wrong = [
        p
        for p in job.phases
        if (p.total, p.processed, p.failed, p.parked) != (documents, documents, 0, 0)
    ]
    if wrong:
        raise BenchFailure(f"pipeline: counters not exact ({documents} docs): {_phases(job)}")
    async with store.pool.acquire() as conn:
        stored = await conn.fetchrow(
            "SELECT count(*) AS docs, coalesce(sum(chunk_count), 0) AS chunks"
            " FROM kb_documents WHERE kb_id = $1",
            kb_id,
        )
        chunks = await conn.fetchval("SELECT count(*) FROM kb_chunks WHERE kb_id = $1", kb_id)
    if stored["docs"] != documents or stored["chunks"] != chunks or chunks < documents:
        raise BenchFailure(
            f"pipeline: KB holds {stored['docs']} documents and {chunks} chunks"
            f" (documents say {stored['chunks']}), expected {documents} documents"
        )
    return int(chunks)


async def run_pipeline(
    bootstrap: str,
    database_url: str,
    store: PostgresStore,
    documents: int,
    plan: PipelinePlan,
    created: list[str],
) -> tuple[float, int]:
    """One job of `documents` documents through the three roles; returns (seconds, chunks).

    The run's topics are added to `created`, for removal once every run is over.
    """
    tag = new_tag()
    settings = run_settings(bootstrap, database_url, tag)
    created.extend(_topics(settings))
    job_id, kb_id = f"bench-{tag}", f"bench-kb-{tag}"
    values = document_values(job_id, kb_id, documents, plan.doc_chars)
    seal = ControlMessage(command=Command.SEAL, job_id=job_id, expected_documents=documents)
    key = job_id.encode()

    service = Service(settings, ROLES, install_signals=False)
    task = asyncio.create_task(service.run(), name="bench-service")
    try:
        await _wait_ready(service, task)
        await wait_for_leaders(settings, _topics(settings))
        async with started_producer(settings, "bench") as producer:
            started = time.perf_counter()
            futures = [
                await producer.send(settings.topics.documents, key=key, value=v) for v in values
            ]
            futures.append(
                await producer.send(settings.topics.control, key=key, value=seal.to_bytes())
            )
            await asyncio.gather(*futures)
            job = await _wait_completed(store, job_id, plan.deadline_s)
            seconds = time.perf_counter() - started
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)
    chunks = await check_pipeline(store, job, kb_id, documents)
    return seconds, chunks


# -- raw round trip --------------------------------------------------------------------------


async def wait_for_leaders(settings: Settings, topics: list[str]) -> None:
    """Until every partition of the topics answers on its leader, so that the clock never runs
    while the broker is still electing one (clients would retry NotLeaderForPartition).

    The metadata names a leader before that broker serves the partition, so this asks each
    partition for an offset, the way a consumer's first fetch does.

    Raises:
        BenchFailure: still not served after 60 s.
    """
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    probe = make_consumer(settings, [], None, "bench-probe")
    await admin.start()
    await probe.start()
    try:
        async with asyncio.timeout(60):
            while True:
                described = await admin.describe_topics(topics)
                served = [
                    d
                    for d in described
                    if d.get("error_code", 0) == 0
                    and d.get("partitions")
                    and all(p.get("leader", -1) >= 0 for p in d["partitions"])
                ]
                if len(served) == len(topics):
                    break
                await asyncio.sleep(_POLL_S)
            led = [
                TopicPartition(d["topic"], p["partition"]) for d in served for p in d["partitions"]
            ]
            probe.assign(led)
            for tp in led:
                await probe.position(tp)
    except TimeoutError:
        raise BenchFailure(f"topics {topics} not served by their leaders after 60 s") from None
    finally:
        await probe.stop()
        await admin.close()


async def _create_topic(settings: Settings, name: str) -> None:
    """The raw topic, shaped like `kb.documents` (partitions, message size)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name=name,
                    num_partitions=settings.partitions_documents,
                    replication_factor=settings.kafka_replication_factor,
                    topic_configs={"max.message.bytes": str(settings.max_message_bytes)},
                )
            ]
        )
    finally:
        await admin.close()
    await wait_for_leaders(settings, [name])


async def _assigned_consumer(settings: Settings, topic: str) -> AIOKafkaConsumer:
    consumer = make_consumer(settings, [], None, "bench-raw")
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(settings.partitions_documents)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning()
    for tp in partitions:  # resolve the start offsets now, not on the clock
        await consumer.position(tp)
    return consumer


async def run_raw_round_trip(
    bootstrap: str, database_url: str, documents: int, chars: int, created: list[str]
) -> float:
    """The same document values produced and consumed back, with the service's client
    settings (one topic shaped like `kb.documents`); returns seconds.

    The run's topic is added to `created`, for removal once every run is over.
    """
    tag = new_tag()
    settings = run_settings(bootstrap, database_url, tag)
    job_id = f"bench-{tag}"
    topic = f"bench.{tag}.raw"
    created.append(topic)
    values = document_values(job_id, f"bench-kb-{tag}", documents, chars)
    key = job_id.encode()
    await _create_topic(settings, topic)
    consumer = await _assigned_consumer(settings, topic)
    received: list[bytes] = []

    async def consume_all() -> None:
        while len(received) < documents:
            batch = await consumer.getmany(timeout_ms=100, max_records=settings.batch_max_records)
            for records in batch.values():
                received.extend(r.value for r in records)

    try:
        async with started_producer(settings, "bench-raw") as producer:
            reader = asyncio.create_task(consume_all(), name="bench-raw-reader")
            started = time.perf_counter()
            futures = [await producer.send(topic, key=key, value=v) for v in values]
            await asyncio.gather(*futures)
            try:
                async with asyncio.timeout(120):
                    await reader
            except TimeoutError:
                raise BenchFailure(
                    f"raw round trip: {len(received)} of {documents} values back after 120 s"
                ) from None
            seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    if sorted(received) != sorted(values):
        raise BenchFailure(
            f"raw round trip: got {len(received)} values back, not the {documents} sent"
        )
    return seconds


# -- the bench -------------------------------------------------------------------------------


async def bench_pipeline(
    bootstrap: str, database_url: str, store: PostgresStore, plan: PipelinePlan, log: Log
) -> Section:
    """Warm up once with a small job, then alternate raw round trip and pipeline runs."""
    pipeline = Measurement(
        "ours: producer+consumer+aggregator",
        "docs",
        plan.documents,
        note="send D docs + seal → job completed in Postgres (3 hops, KB + status rows)",
    )
    raw = Measurement(
        "baseline: raw Kafka round trip",
        "docs",
        plan.documents,
        note="produce D → consume D back, same client settings, no processing (1 hop)",
    )
    created: list[str] = []
    chunks = 0
    try:
        if plan.warmup_documents:
            warm = plan.warmup_documents
            await run_raw_round_trip(bootstrap, database_url, warm, plan.doc_chars, created)
            seconds, _ = await run_pipeline(bootstrap, database_url, store, warm, plan, created)
            log(f"bench 2 warm-up ({warm} docs): pipeline {seconds:.2f} s")
        for run in range(plan.runs):
            seconds_raw = await run_raw_round_trip(
                bootstrap, database_url, plan.documents, plan.doc_chars, created
            )
            seconds_pipeline, chunks = await run_pipeline(
                bootstrap, database_url, store, plan.documents, plan, created
            )
            raw.add(seconds_raw)
            pipeline.add(seconds_pipeline)
            log(
                f"bench 2 run {run + 1}/{plan.runs}: raw {seconds_raw:.2f} s,"
                f" pipeline {seconds_pipeline:.2f} s ({chunks} chunks)"
            )
    finally:
        # Deleting topics makes the broker work in the background: only after the last run.
        await delete_topics(Settings(kafka_bootstrap=bootstrap), created)
    return Section(
        title="2 pipeline end to end",
        measurements=[pipeline, raw],
        comparisons=[Comparison("ours / raw Kafka", pipeline, raw, "docs/s over docs/s")],
        notes=[
            f"one job, text/plain docs of ~{plan.doc_chars:,} chars,"
            f" {chunks / plan.documents:.1f} chunks each; counters and KB checked after every run",
            "one job = one key = one partition of each topic: per-job ordering caps parallelism",
        ],
    )
