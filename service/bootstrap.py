"""The composition root: builds settings, pools, clients and use cases, and runs the roles."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.adapters.kafka import ensure_topics, make_consumer, make_producer
from service.adapters.migrations import migrate
from service.adapters.postgres import PostgresStore, create_pool
from service.adapters.sources import Fetcher
from service.api.app import create_app, health_app
from service.config import Settings
from service.logging import get_logger
from service.pipeline.aggregator import Aggregator
from service.pipeline.consumer import ConsumerWorker
from service.pipeline.control import JobCommands
from service.pipeline.producer import ProducerWorker
from service.pipeline.runtime import TRANSIENT_ERRORS, BatchWorker

log = get_logger(__name__)

T = TypeVar("T")

ROLES = ("producer", "consumer", "aggregator", "api")


async def _with_attempts(
    action: Callable[[], Awaitable[T]],
    attempts: int,
    errors: tuple[type[BaseException], ...],
    event: str,
) -> T:
    """Run `action` up to `attempts` times, backing off while it fails with `errors`."""
    delay = 0.5
    for attempt in range(1, attempts):
        try:
            return await action()
        except errors as exc:
            log.warning(event, attempt=attempt, error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    return await action()  # the last attempt: its error is the caller's


async def connect_store(settings: Settings, attempts: int = 1) -> PostgresStore:
    """A store on a fresh pool, with migrations applied (waiting for the database if asked).

    Raises:
        OSError, asyncpg.PostgresError: the database is unreachable after `attempts` tries.
    """

    async def connect() -> PostgresStore:
        pool = await create_pool(
            settings.database_url.get_secret_value(), settings.database_pool_size
        )
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return PostgresStore(pool)

    errors = (*TRANSIENT_ERRORS, asyncpg.PostgresError)
    return await _with_attempts(connect, attempts, errors, "database_unavailable")


async def prepare_topics(settings: Settings, attempts: int = 1) -> None:
    """Create missing topics, waiting for the broker if asked."""
    created = await _with_attempts(
        lambda: ensure_topics(settings), attempts, TRANSIENT_ERRORS, "broker_unavailable"
    )
    if created:
        log.info("topics_created", topics=created)


@contextlib.asynccontextmanager
async def started_producer(settings: Settings, client_id: str) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer, stopped (flushed) on exit."""
    producer = make_producer(settings, client_id)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service's shutdown drives it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Service:
    """Every requested role of one process, sharing one pool and one producer."""

    settings: Settings
    roles: tuple[str, ...]
    workers: list[BatchWorker] = field(default_factory=list)
    consumers: list[AIOKafkaConsumer] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    store: PostgresStore | None = None
    producer: AIOKafkaProducer | None = None
    install_signals: bool = True

    def stop(self) -> None:
        """Begin a graceful shutdown (SIGTERM/SIGINT)."""
        if not self.stopping.is_set():
            log.info("shutdown_requested")
        self.stopping.set()
        for worker in self.workers:
            worker.stop()

    async def run(self) -> None:
        """Run until stopped: wait for backends, start the roles, then shut down in order.

        Shutdown order: stop fetching → finish or hand back the batch in hand (commit) →
        leave the consumer groups → flush and close producers → close the pool; all within
        `shutdown_grace_s`.
        """
        if self.install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        settings = self.settings
        if not await self._until_stopped(self._connect()):
            log.info("stopped_before_start")
            return
        assert self.store is not None
        fetcher = Fetcher(
            settings.fetch_timeout_s, settings.max_document_bytes, settings.fetch_attempts
        )
        try:
            async with started_producer(settings, "kb-ingest") as producer:
                self.producer = producer
                self._build_workers(producer, fetcher)
                for worker in self.workers:
                    await worker.consumer.start()
                servers = self._servers(producer)
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(w.run(), name=f"{w.name}-loop") for w in self.workers
                    ]
                    server_tasks = [
                        group.create_task(s.serve(), name="http-server") for s in servers
                    ]
                    await self.stopping.wait()
                    try:
                        async with asyncio.timeout(settings.shutdown_grace_s):
                            await asyncio.gather(*tasks)
                    except TimeoutError:
                        log.warning("shutdown_grace_exceeded")
                        for task in tasks:
                            task.cancel()
                    for server in servers:
                        server.should_exit = True
                    await asyncio.gather(*server_tasks, return_exceptions=True)
                for consumer in reversed(self.consumers):
                    await consumer.stop()
        finally:
            await fetcher.close()
            await self.store.pool.close()
            log.info("shutdown_complete")

    async def _connect(self) -> None:
        self.store = await connect_store(self.settings, attempts=60)
        try:
            await prepare_topics(self.settings, attempts=60)
        except BaseException:
            await self.store.pool.close()
            raise

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` unless a stop comes first (SIGTERM while waiting for the backends)."""
        task = asyncio.create_task(work, name="wait-for-backends")
        stopped = asyncio.create_task(self.stopping.wait(), name="wait-for-stop")
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            stopped.cancel()
            task.result()
            return True
        task.cancel()
        await asyncio.wait({task})  # let it unwind; its CancelledError stays inside it
        if self.store is not None:
            await self.store.pool.close()
        return False

    def _build_workers(self, producer: AIOKafkaProducer, fetcher: Fetcher) -> None:
        settings, store, topics = self.settings, self.store, self.settings.topics
        assert store is not None
        for role in self.roles:
            if role == "producer":
                consumer = make_consumer(settings, [], settings.group_producer, "kb-producer")
                worker: BatchWorker = ProducerWorker(settings, store, consumer, producer, fetcher)
                consumer.subscribe([topics.documents, topics.control])
            elif role == "consumer":
                consumer = make_consumer(settings, [], settings.group_consumer, "kb-consumer")
                worker = ConsumerWorker(settings, store, consumer, producer)
                consumer.subscribe([topics.chunks])
            elif role == "aggregator":
                consumer = make_consumer(settings, [], settings.group_aggregator, "kb-aggregator")
                worker = Aggregator(settings, store, consumer, producer)
                consumer.subscribe(
                    [topics.phase_events, topics.control], listener=worker.rebalance_listener()
                )
            else:
                continue
            self.consumers.append(consumer)
            self.workers.append(worker)

    def _servers(self, producer: AIOKafkaProducer) -> list[uvicorn.Server]:
        settings, store = self.settings, self.store
        assert store is not None
        if "api" in self.roles:
            app = create_app(
                settings, store, JobCommands(settings, store, producer), self.readiness
            )
            port = settings.api_port
        elif settings.health_port:
            app = health_app(self.readiness)
            port = settings.health_port
        else:
            return []
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        return [_Server(config)]

    async def readiness(self) -> dict[str, Any]:
        """Kafka and Postgres reachable, every consume loop turning."""
        checks: dict[str, Any] = {}
        try:
            assert self.store is not None
            async with asyncio.timeout(2):
                await self.store.ping()
            checks["postgres"] = "ok"
        except Exception as exc:
            checks["postgres"] = f"unreachable: {type(exc).__name__}"
        try:
            assert self.producer is not None
            async with asyncio.timeout(2):
                await self.producer.client.fetch_all_metadata()
            checks["kafka"] = "ok"
        except Exception as exc:
            checks["kafka"] = f"unreachable: {type(exc).__name__}"
        for worker in self.workers:
            idle = worker.progress.seconds_since_loop()
            checks[worker.name] = "ok" if idle < 60 else f"loop stuck for {idle:.0f}s"
        return checks


async def run_service(settings: Settings, roles: tuple[str, ...]) -> None:
    """Run the given roles in this process until SIGTERM/SIGINT.

    Raises:
        Exception: the first error that stopped a role, after it was logged with its traceback.
    """
    try:
        await Service(settings, roles).run()
    except ExceptionGroup as group:
        for exc in group.exceptions:
            log.error("service_crashed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        raise group.exceptions[0] from None
