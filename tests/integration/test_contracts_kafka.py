"""Topics and messages on a real broker: `ensure_topics` creates the service's topics with the
configured partition counts and only once, and every contract message type survives a trip
through Kafka, keyed by job_id, and decodes back into an equal model."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from service.adapters.kafka import (
    ensure_topics,
    make_consumer,
    make_producer,
    partition_counts,
    topic_specs,
)
from service.config import Settings, Topics
from service.contracts import MESSAGE_TYPES, DlqMessage, Message, decode
from tests.unit.test_contracts import valid_examples

pytestmark = pytest.mark.integration

PARTITIONS = {"documents": 5, "chunks": 4, "default": 3}

# Which topic carries each message type (DESIGN §3, topics table).
TOPIC_OF_TYPE = {
    "document": "documents",
    "control": "control",
    "status": "status",
    "dlq": "dlq",
    "chunk": "chunks",
    "phase-event": "phase_events",
    "phase-marker": "phase_events",
}


@pytest.fixture
async def settings(kafka_bootstrap: str) -> AsyncIterator[Settings]:
    """Settings with topic names of this test only; the topics are deleted afterwards."""
    suffix = uuid.uuid4().hex[:12]
    topics = Topics.prefixed(f"test.{suffix}")
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topics=topics,
        partitions_documents=PARTITIONS["documents"],
        partitions_chunks=PARTITIONS["chunks"],
        partitions_default=PARTITIONS["default"],
    )
    yield settings
    # The service never deletes topics; the test cleans up what it made.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        ours = [s.name for s in topic_specs(settings) if s.name in existing]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


def _all_topics(settings: Settings) -> dict[str, str]:
    t = settings.topics
    return {
        "documents": t.documents,
        "control": t.control,
        "chunks": t.chunks,
        "phase_events": t.phase_events,
        "status": t.status,
        "dlq": t.dlq,
    }


def _key(message: Message) -> bytes:
    job_id = message.job_id  # type: ignore[attr-defined]
    assert job_id is not None, "every message sent here is keyed by its job_id"
    return str(job_id).encode()


async def test_ensure_topics_creates_each_topic_once_with_configured_partitions(
    settings: Settings,
) -> None:
    names = _all_topics(settings)

    created = await ensure_topics(settings)

    assert sorted(created) == sorted(names.values())
    counts = await partition_counts(settings, names.values())
    assert counts == {
        names["documents"]: PARTITIONS["documents"],
        names["chunks"]: PARTITIONS["chunks"],
        names["control"]: PARTITIONS["default"],
        names["phase_events"]: PARTITIONS["default"],
        names["status"]: PARTITIONS["default"],
        names["dlq"]: PARTITIONS["default"],
    }

    again = await ensure_topics(settings)

    assert again == []
    assert await partition_counts(settings, names.values()) == counts


async def test_every_message_type_round_trips_through_kafka(settings: Settings) -> None:
    await ensure_topics(settings)
    topics = _all_topics(settings)
    examples = valid_examples()
    assert set(examples) == set(MESSAGE_TYPES) == set(TOPIC_OF_TYPE)
    # Every example of every type; a dlq record is keyed by job_id only when it has one.
    sent = [
        (topics[TOPIC_OF_TYPE[name]], message)
        for name, messages in examples.items()
        for message in messages
        if not (isinstance(message, DlqMessage) and message.job_id is None)
    ]

    producer = make_producer(settings, client_id="test-contracts-producer")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=_key(message), value=message.to_bytes())
            for topic, message in sent
        ]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    consumer = make_consumer(
        settings,
        list(topics.values()),
        group_id=f"test-contracts-{uuid.uuid4().hex}",
        client_id="test-contracts-consumer",
    )
    await consumer.start()
    received = []
    try:
        async with asyncio.timeout(60):
            while len(received) < len(sent):
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received.extend(records)
    finally:
        await consumer.stop()

    assert len(received) == len(sent)
    # Per topic and key: same partition for one job, and the order it was sent in.
    expected: dict[tuple[str, bytes], list[Message]] = defaultdict(list)
    for topic, message in sent:
        expected[(topic, _key(message))].append(message)
    got: dict[tuple[str, bytes], list[Message]] = defaultdict(list)
    partitions: dict[tuple[str, bytes], set[int]] = defaultdict(set)
    for record in sorted(received, key=lambda r: (r.topic, r.partition, r.offset)):
        model = MESSAGE_TYPES[json.loads(record.value)["type"]]
        decoded = decode(record.value, model, settings.max_message_bytes)
        assert isinstance(decoded, model), decoded
        assert TOPIC_OF_TYPE[decoded.type] == next(  # type: ignore[attr-defined]
            name for name, topic in topics.items() if topic == record.topic
        )
        assert record.key == _key(decoded)
        got[(record.topic, record.key)].append(decoded)
        partitions[(record.topic, record.key)].add(record.partition)

    assert got == expected
    assert all(len(p) == 1 for p in partitions.values()), partitions
    assert {type(m) for ms in got.values() for m in ms} == set(MESSAGE_TYPES.values())
