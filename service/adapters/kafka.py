"""aiokafka clients and topic administration, configured from Settings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from service.config import Settings

# Errors that mean "the broker is not there right now": back off and retry, never count them.
TRANSIENT_KAFKA_ERRORS: tuple[type[BaseException], ...] = (KafkaError, OSError, TimeoutError)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the service uses, with its configured partition count."""
    t = settings.topics
    big = {"max.message.bytes": str(settings.max_message_bytes)}
    return [
        TopicSpec(t.documents, settings.partitions_documents, big),
        TopicSpec(t.control, settings.partitions_default),
        TopicSpec(t.chunks, settings.partitions_chunks, big),
        TopicSpec(t.phase_events, settings.partitions_default, big),
        TopicSpec(t.status, settings.partitions_default),
        TopicSpec(t.dlq, settings.partitions_default, big),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the service's topics that do not exist yet; returns the names created.

    Never deletes or alters an existing topic.
    """
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in topic_specs(settings) if s.name not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=settings.kafka_replication_factor,
                topic_configs=s.config,
            )
            for s in missing
        ]
        try:
            response = await admin.create_topics(new)
        except TopicAlreadyExistsError:
            return []  # another process created them between list and create
        created = []
        for name, code, *_ in getattr(response, "topic_errors", []):
            if code == 0:
                created.append(name)
            elif code != TopicAlreadyExistsError.errno:
                raise KafkaError(f"could not create topic {name}: error code {code}")
        return created
    finally:
        await admin.close()


async def partition_counts(settings: Settings, topics: Iterable[str]) -> dict[str, int]:
    """How many partitions each named topic has."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """An idempotent producer (acks=all) able to send the largest configured message."""
    return AIOKafkaProducer(
        **settings.kafka_client_options(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.max_message_bytes,
        linger_ms=5,
        compression_type="gzip",
        request_timeout_ms=30000,
    )


def make_consumer(
    settings: Settings, topics: Sequence[str], group_id: str | None, client_id: str
) -> AIOKafkaConsumer:
    """A manually committed consumer that starts from the earliest offset of a new group."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.max_message_bytes,
        fetch_max_bytes=max(settings.max_message_bytes, 52428800),
        isolation_level="read_committed",
        session_timeout_ms=30000,
        heartbeat_interval_ms=3000,
        max_poll_interval_ms=300000,
    )
    if topics:
        consumer.subscribe(list(topics))
    return consumer


__all__ = [
    "TRANSIENT_KAFKA_ERRORS",
    "KafkaConnectionError",
    "TopicSpec",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "partition_counts",
    "topic_specs",
]
