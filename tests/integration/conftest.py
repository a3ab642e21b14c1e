"""Factories for integration tests: isolated settings, an in-process service, Kafka readers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from service.adapters.postgres import JobRecord, PostgresStore
from service.bootstrap import Service, connect_store, started_producer
from service.config import Settings, Topics
from service.contracts import Command, ControlMessage, DocumentMessage, JobOptions
from service.domain.jobs import JobStatus

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_factory(kafka_bootstrap: str, database_url: str) -> SettingsFactory:
    """Settings with topics and consumer groups of their own, so tests never share a stream."""

    def make(**overrides: Any) -> Settings:
        tag = uuid.uuid4().hex[:10]
        values: dict[str, Any] = {
            "kafka_bootstrap": kafka_bootstrap,
            "database_url": database_url,
            "topics": Topics.prefixed(f"t{tag}"),
            "partitions_documents": 3,
            "partitions_chunks": 3,
            "partitions_default": 2,
            "group_producer": f"g{tag}.producer",
            "group_consumer": f"g{tag}.consumer",
            "group_aggregator": f"g{tag}.aggregator",
            "batch_timeout_ms": 100,
            "health_port": 0,
            "status_progress_interval_s": 0.5,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PostgresStore]:
    """A migrated store on the session database."""
    s = Settings(database_url=database_url)
    store = await connect_store(s)
    try:
        yield store
    finally:
        await store.pool.close()


@asynccontextmanager
async def running(
    settings: Settings, roles: tuple[str, ...] = ("producer", "consumer", "aggregator")
) -> AsyncIterator[Service]:
    """The service's worker roles running in this event loop until the block exits."""
    service = Service(settings, roles, install_signals=False)
    task = asyncio.create_task(service.run(), name="service-under-test")
    try:
        async with asyncio.timeout(60):
            # Ready once every worker owns partitions of its topics.
            while len(service.workers) < len([r for r in roles if r != "api"]) or not all(
                w.consumer.assignment() for w in service.workers
            ):
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        yield service
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)


class Feeder:
    """Writes documents and commands to a test's topics with the service's own producer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, topic: str, key: str | None, values: list[bytes]) -> None:
        async with started_producer(self.settings, "test-feeder") as producer:
            futures = [
                await producer.send(topic, key=key.encode() if key else None, value=v)
                for v in values
            ]
            await asyncio.gather(*futures)

    async def documents(self, docs: list[DocumentMessage]) -> None:
        by_job: dict[str, list[bytes]] = {}
        for d in docs:
            by_job.setdefault(d.job_id, []).append(d.to_bytes())
        for job, values in by_job.items():
            await self.send(self.settings.topics.documents, job, values)

    async def command(self, command: ControlMessage) -> None:
        await self.send(self.settings.topics.control, command.job_id, [command.to_bytes()])

    async def create(self, job_id: str, kb_id: str, max_failed: int = 0, **extra: Any) -> None:
        await self.command(
            ControlMessage(
                command=Command.CREATE,
                job_id=job_id,
                kb_id=kb_id,
                options=JobOptions(max_failed_documents=max_failed),
                **extra,
            )
        )

    async def seal(self, job_id: str, expected: int) -> None:
        await self.command(
            ControlMessage(command=Command.SEAL, job_id=job_id, expected_documents=expected)
        )


def text_doc(job_id: str, kb_id: str, doc_id: str, text: str, **extra: Any) -> DocumentMessage:
    """A text/plain document."""
    return DocumentMessage(
        job_id=job_id, kb_id=kb_id, doc_id=doc_id, content_type="text/plain", text=text, **extra
    )


async def wait_for_job(
    store: PostgresStore,
    job_id: str,
    until: Callable[[JobRecord], bool] = lambda j: (
        j.status in (JobStatus.COMPLETED, JobStatus.FAILED)
    ),
    deadline_s: float = 60,
) -> JobRecord:
    """Poll the job until `until` holds; fail the test with its last state on timeout."""
    job = None
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                job = await store.get_job(job_id)
                if job is not None and until(job):
                    return job
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"job {job_id} did not reach the expected state; last: {job}")


async def read_topic(settings: Settings, topic: str, idle_s: float = 1.5) -> list[dict[str, Any]]:
    """Every JSON value on a topic from the beginning, read until `idle_s` passes with nothing."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not batch:
                return out
            for records in batch.values():
                out.extend(json.loads(r.value) for r in records)
    finally:
        await consumer.stop()


def counters(job: JobRecord) -> dict[str, tuple[str, int, int, int, int]]:
    """phase → (status, total, processed, failed, parked)."""
    return {
        p.phase.value: (p.status.value, p.total, p.processed, p.failed, p.parked)
        for p in job.phases
    }
