"""The consumer worker: chunk messages in, the KB updated, `index` outcomes reported."""

from __future__ import annotations

import base64

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from service.adapters.postgres import TRANSIENT_DB_ERRORS, PostgresStore
from service.config import Settings
from service.contracts import (
    ChunkMessage,
    Outcome,
    PhaseEventMessage,
    PhaseOutcome,
    Rejection,
    RetryPayload,
    decode,
)
from service.domain.phases import Phase
from service.logging import get_logger
from service.pipeline.deadletter import Outgoing, dlq_value
from service.pipeline.runtime import BatchWorker, send_all, utcnow

log = get_logger(__name__)


class ConsumerWorker(BatchWorker):
    """Consumes `kb.chunks` and indexes documents into `kb_documents` / `kb_chunks`.

    Per batch, in order: decode → hold the pause gate of the batch's jobs → upsert the
    documents whose `index` phase is not paused in one transaction (park the others) → send
    outcomes and DLQ records and wait for every acknowledgement → release the gate → commit.
    """

    name = "consumer"

    def __init__(
        self,
        settings: Settings,
        store: PostgresStore,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
    ) -> None:
        super().__init__(consumer, settings.batch_max_records, settings.batch_timeout_ms)
        self.settings = settings
        self.store = store
        self.producer = producer

    async def handle(self, records: list[ConsumerRecord]) -> None:
        out: Outgoing = []
        chunks: list[tuple[ConsumerRecord, ChunkMessage]] = []
        for record in records:
            decoded = decode(record.value, ChunkMessage, self.settings.max_message_bytes)
            if isinstance(decoded, Rejection):
                out.extend(
                    self._failed(
                        record,
                        decoded.job_id,
                        decoded.kb_id,
                        decoded.doc_id,
                        decoded.reason.value,
                        decoded.detail,
                    )
                )
            else:
                chunks.append((record, decoded))
        if chunks:
            async with self.store.gate({c.job_id for _, c in chunks}, [Phase.INDEX]) as held:
                ready = [(r, c) for r, c in chunks if (c.job_id, Phase.INDEX) not in held]
                for record, chunk in chunks:
                    if (chunk.job_id, Phase.INDEX) in held:
                        out.append(
                            self._event(
                                record,
                                chunk.job_id,
                                chunk.kb_id,
                                chunk.doc_id,
                                PhaseOutcome(phase=Phase.INDEX, outcome=Outcome.PARKED),
                            )
                        )
                failed = await self._index(ready)
                for record, chunk in ready:
                    if chunk.doc_id in failed.get(chunk.job_id, {}):
                        detail = failed[chunk.job_id][chunk.doc_id]
                        out.extend(
                            self._failed(
                                record,
                                chunk.job_id,
                                chunk.kb_id,
                                chunk.doc_id,
                                "index_failed",
                                detail,
                            )
                        )
                    else:
                        outcome = PhaseOutcome(phase=Phase.INDEX, outcome=Outcome.PROCESSED)
                        out.append(
                            self._event(record, chunk.job_id, chunk.kb_id, chunk.doc_id, outcome)
                        )
                await send_all(self.producer, out)
        elif out:
            await send_all(self.producer, out)

    async def _index(
        self, ready: list[tuple[ConsumerRecord, ChunkMessage]]
    ) -> dict[str, dict[str, str]]:
        """Index the batch in one transaction; if the database refuses it, find who by one-by-one.

        Transient errors propagate (the batch is retried); a document the database refuses for
        good is returned as failed, so it cannot block its partition.
        """
        docs = [c for _, c in ready]
        try:
            await self.store.index_documents(docs)
            return {}
        except TRANSIENT_DB_ERRORS:
            raise
        except asyncpg.PostgresError as exc:
            log.warning("index_batch_refused", error=str(exc), documents=len(docs))
        failed: dict[str, dict[str, str]] = {}
        for doc in docs:
            try:
                await self.store.index_documents([doc])
            except TRANSIENT_DB_ERRORS:
                raise
            except asyncpg.PostgresError as exc:
                failed.setdefault(doc.job_id, {})[doc.doc_id] = f"{type(exc).__name__}: {exc}"
        return failed

    def _event(
        self,
        record: ConsumerRecord,
        job_id: str,
        kb_id: str | None,
        doc_id: str,
        outcome: PhaseOutcome,
    ) -> tuple[str, bytes | None, bytes]:
        topics = self.settings.topics
        event = PhaseEventMessage(
            job_id=job_id,
            kb_id=kb_id,
            doc_id=doc_id,
            outcomes=[outcome],
            # A failed or parked document carries what re-runs it: its chunk message.
            retry=RetryPayload(
                topic=topics.chunks, value_b64=base64.b64encode(record.value or b"").decode()
            )
            if outcome.outcome is not Outcome.PROCESSED
            else None,
            emitted_at=utcnow(),
        )
        return (topics.phase_events, job_id.encode(), event.to_bytes())

    def _failed(
        self,
        record: ConsumerRecord,
        job_id: str | None,
        kb_id: str | None,
        doc_id: str | None,
        reason: str,
        detail: str,
    ) -> Outgoing:
        key = job_id.encode() if job_id else None
        out: Outgoing = [
            (self.settings.topics.dlq, key, dlq_value(record, reason, detail, job_id, doc_id))
        ]
        if job_id and doc_id:
            outcome = PhaseOutcome(
                phase=Phase.INDEX, outcome=Outcome.FAILED, reason=reason, error=detail[:2000]
            )
            out.append(self._event(record, job_id, kb_id, doc_id, outcome))
        return out
