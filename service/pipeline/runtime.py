"""The consume loop every worker shares: fetch a batch, handle it, commit, stop cleanly."""

from __future__ import annotations

import asyncio
import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import Counter, Histogram

from service.adapters.kafka import TRANSIENT_KAFKA_ERRORS
from service.adapters.postgres import TRANSIENT_DB_ERRORS
from service.logging import get_logger

RECORDS = Counter("kb_ingest_records_total", "Kafka records handled", ["worker"])
BATCHES = Counter("kb_ingest_batches_total", "Batches handled and committed", ["worker"])
BATCH_SECONDS = Histogram(
    "kb_ingest_batch_seconds",
    "Time to handle and commit one batch",
    ["worker"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TRANSIENT = Counter("kb_ingest_transient_errors_total", "Transient errors backed off", ["what"])

TRANSIENT_ERRORS = TRANSIENT_KAFKA_ERRORS + TRANSIENT_DB_ERRORS

T = TypeVar("T")

log = get_logger(__name__)


def utcnow() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(UTC)


class Stopped(Exception):
    """The worker was asked to stop while waiting."""


async def retry_transient(
    action: Callable[[], Awaitable[T]],
    stop: asyncio.Event,
    what: str,
    first_delay: float = 0.2,
    max_delay: float = 5.0,
) -> T:
    """Run `action` until it succeeds, backing off on transient broker/database errors.

    Raises:
        Stopped: `stop` was set while backing off.
    """
    delay = first_delay
    attempt = 0
    while True:
        try:
            return await action()
        except TRANSIENT_ERRORS as exc:
            attempt += 1
            TRANSIENT.labels(what).inc()
            log.warning(
                "transient_error", what=what, attempt=attempt, error=f"{type(exc).__name__}: {exc}"
            )
        if stop.is_set():
            raise Stopped(what)
        try:
            async with asyncio.timeout(delay):
                await stop.wait()
            raise Stopped(what)
        except TimeoutError:
            pass
        delay = min(delay * 2, max_delay)


async def send_all(
    producer: AIOKafkaProducer, messages: Sequence[tuple[str, bytes | None, bytes]]
) -> None:
    """Send every (topic, key, value) and wait until all are acknowledged."""
    futures = [await producer.send(topic, key=key, value=value) for topic, key, value in messages]
    if futures:
        await asyncio.gather(*futures)


class Progress:
    """Liveness of a consume loop, read by /readyz."""

    def __init__(self) -> None:
        self.last_loop_at = time.monotonic()
        self.batches = 0
        self.records = 0

    def beat(self, records: int) -> None:
        self.last_loop_at = time.monotonic()
        if records:
            self.batches += 1
            self.records += records

    def seconds_since_loop(self) -> float:
        return time.monotonic() - self.last_loop_at


class BatchWorker(ABC):
    """Fetch with `getmany`, handle the batch (retrying transient errors), then commit.

    Order per batch: handle (make effects durable and flush what it produced) → commit offsets.
    A crash anywhere before the commit re-delivers the batch; every effect is idempotent.
    """

    name: str = "worker"

    def __init__(self, consumer: AIOKafkaConsumer, max_records: int, timeout_ms: int) -> None:
        self.consumer = consumer
        self.max_records = max_records
        self.timeout_ms = timeout_ms
        self.stop_event = asyncio.Event()
        self.progress = Progress()

    def rebalance_listener(self) -> ConsumerRebalanceListener | None:
        """A listener to pass to `subscribe`, when the worker needs one."""
        return None

    @abstractmethod
    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Make the batch's effects durable."""

    async def commit(self, records: list[ConsumerRecord]) -> None:
        """Commit the next offsets of the batch to Kafka.

        After a rebalance the commit is refused for good: the partitions' new owner gets the
        batch again, and every effect is idempotent, so the worker moves on.
        """
        offsets = next_offsets(records)
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit_refused_after_rebalance", worker=self.name, error=str(exc))

    async def idle(self) -> None:
        """Periodic work between batches (default: none)."""
        return None

    async def run(self) -> None:
        """Consume until `stop()`; then return, leaving the consumer to be stopped."""
        log.info("worker_started", worker=self.name)
        while not self.stop_event.is_set():
            try:
                batches = await self.consumer.getmany(
                    timeout_ms=self.timeout_ms, max_records=self.max_records
                )
            except TRANSIENT_KAFKA_ERRORS as exc:
                log.warning("fetch_failed", worker=self.name, error=str(exc))
                await asyncio.sleep(0.5)
                continue
            records = [
                r
                for tp in sorted(batches, key=lambda t: (t.topic, t.partition))
                for r in batches[tp]
            ]
            started = time.monotonic()
            committed = not records
            try:
                if records:
                    await retry_transient(
                        functools.partial(self.handle, records), self.stop_event, "handle"
                    )
                    await retry_transient(
                        functools.partial(self.commit, records), self.stop_event, "commit"
                    )
                    committed = True
                await retry_transient(self.idle, self.stop_event, "idle")
            except Stopped:
                if not committed:
                    # The batch comes back to whoever owns the partitions next.
                    log.info("worker_stopping_mid_batch", worker=self.name, records=len(records))
                    self._rewind(records)
                break
            self.progress.beat(len(records))
            if records:
                RECORDS.labels(self.name).inc(len(records))
                BATCHES.labels(self.name).inc()
                BATCH_SECONDS.labels(self.name).observe(time.monotonic() - started)
        log.info("worker_stopped", worker=self.name)

    def _rewind(self, records: list[ConsumerRecord]) -> None:
        first: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
        for tp, offset in first.items():
            try:
                self.consumer.seek(tp, offset)
            except Exception:  # partition revoked meanwhile: nothing to rewind
                continue

    def stop(self) -> None:
        """Ask the loop to return after the batch in hand."""
        self.stop_event.set()


def next_offsets(records: Sequence[ConsumerRecord]) -> dict[tuple[str, int], int]:
    """The offset to read next per (topic, partition) after `records`."""
    out: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        out[key] = max(out.get(key, 0), r.offset + 1)
    return out


def record_key(record: ConsumerRecord) -> Any:
    """A record's key as text, when it has one."""
    key = record.key
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key
