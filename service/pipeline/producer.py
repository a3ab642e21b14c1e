"""The producer worker: documents in; text extracted, chunked and sent on; outcomes reported."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError

from service.adapters.postgres import PostgresStore
from service.adapters.sources import (
    OCTET_STREAM,
    Fetcher,
    FetchError,
    directory_items,
    uri_items,
)
from service.config import Settings
from service.contracts import (
    ChunkMessage,
    Command,
    ControlMessage,
    DirectorySource,
    DocumentMessage,
    Outcome,
    PhaseEventMessage,
    PhaseOutcome,
    Reason,
    Rejection,
    RetryPayload,
    decode,
)
from service.domain.chunking import ChunkingParams, chunk_text
from service.domain.documents import normalize_content_type
from service.domain.extraction import ExtractionError, extract_text
from service.domain.phases import Phase
from service.logging import get_logger
from service.pipeline.deadletter import Outgoing, dlq_value
from service.pipeline.runtime import TRANSIENT_ERRORS, BatchWorker, send_all, utcnow

log = get_logger(__name__)

PRODUCER_PHASES = (Phase.LOAD, Phase.EXTRACT, Phase.CHUNK)


class DocumentFailed(Exception):
    """A permanent failure of one document in one phase."""

    def __init__(self, reason: Reason | str, detail: str) -> None:
        super().__init__(detail)
        self.reason = str(reason)
        self.detail = detail


@dataclass
class DocumentWork:
    """One document of a batch and what came of it."""

    record: ConsumerRecord
    doc: DocumentMessage
    outcomes: list[PhaseOutcome] = field(default_factory=list)
    chunk: ChunkMessage | None = None
    failure: DocumentFailed | None = None


class ProducerWorker(BatchWorker):
    """Consumes `kb.documents` (and `kb.control` for source-based jobs).

    Per batch, in order: decode → hold the pause gate of the batch's jobs → fetch, extract and
    chunk the documents whose phases are not paused (park the others) → send chunks, outcomes
    and DLQ records and wait for every acknowledgement → release the gate → commit offsets.
    """

    name = "producer"

    def __init__(
        self,
        settings: Settings,
        store: PostgresStore,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        fetcher: Fetcher,
    ) -> None:
        super().__init__(consumer, settings.batch_max_records, settings.batch_timeout_ms)
        self.settings = settings
        self.store = store
        self.producer = producer
        self.fetcher = fetcher
        self.params = ChunkingParams(settings.chunk_size, settings.chunk_overlap)
        self._fetch_slots = asyncio.Semaphore(16)

    async def handle(self, records: list[ConsumerRecord]) -> None:
        topics = self.settings.topics
        out: Outgoing = []
        work: list[DocumentWork] = []
        for record in records:
            if record.topic == topics.control:
                out.extend(self.feed_source(record))
                continue
            decoded = decode(record.value, DocumentMessage, self.settings.max_message_bytes)
            if isinstance(decoded, Rejection):
                out.extend(self.rejected(record, decoded))
            else:
                work.append(DocumentWork(record, decoded))
        if work:
            async with self.store.gate({w.doc.job_id for w in work}, PRODUCER_PHASES) as held:
                await asyncio.gather(*(self.process(w, held) for w in work))
                for w in work:
                    out.extend(self.messages_for(w))
                await send_all(self.producer, out)
        elif out:
            await send_all(self.producer, out)

    # -- per document ---------------------------------------------------------------------

    async def process(self, w: DocumentWork, held: set[tuple[str, Phase]]) -> None:
        """Run load → extract → chunk for one document, stopping at a paused phase."""
        job = w.doc.job_id
        if (job, Phase.LOAD) in held:
            w.outcomes.append(PhaseOutcome(phase=Phase.LOAD, outcome=Outcome.PARKED))
            return
        w.outcomes.append(PhaseOutcome(phase=Phase.LOAD, outcome=Outcome.PROCESSED))
        if (job, Phase.EXTRACT) in held:
            w.outcomes.append(PhaseOutcome(phase=Phase.EXTRACT, outcome=Outcome.PARKED))
            return
        try:
            text = await self.extract(w.doc)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # bad input must fail its document, never the worker
            if isinstance(exc, DocumentFailed):
                w.failure = exc
            else:
                log.exception("extract_crashed", job_id=job, doc_id=w.doc.doc_id)
                w.failure = DocumentFailed(Reason.EXTRACT_FAILED, f"{type(exc).__name__}: {exc}")
            w.outcomes.append(
                PhaseOutcome(
                    phase=Phase.EXTRACT,
                    outcome=Outcome.FAILED,
                    reason=w.failure.reason,
                    error=w.failure.detail[:2000],
                )
            )
            return
        w.outcomes.append(PhaseOutcome(phase=Phase.EXTRACT, outcome=Outcome.PROCESSED))
        if (job, Phase.CHUNK) in held:
            w.outcomes.append(PhaseOutcome(phase=Phase.CHUNK, outcome=Outcome.PARKED))
            return
        chunks = await asyncio.to_thread(chunk_text, text, self.params)
        w.outcomes.append(PhaseOutcome(phase=Phase.CHUNK, outcome=Outcome.PROCESSED))
        w.chunk = ChunkMessage(
            job_id=job,
            kb_id=w.doc.kb_id,
            doc_id=w.doc.doc_id,
            content_type=normalize_content_type(w.doc.content_type),
            title=w.doc.title,
            metadata=w.doc.metadata,
            text=text,
            chunks=chunks,
        )

    async def extract(self, doc: DocumentMessage) -> str:
        """The document's plain text.

        Raises:
            DocumentFailed: content undecodable, too large, unreadable or of an unsupported type.
        """
        content_type = normalize_content_type(doc.content_type)
        try:
            content = doc.content_bytes()
        except ValueError as exc:
            raise DocumentFailed(Reason.INVALID_CONTENT, str(exc)) from exc
        if content is None:
            assert doc.source_uri is not None
            async with self._fetch_slots:
                try:
                    fetched = await self.fetcher.fetch(doc.source_uri)
                except FetchError as exc:
                    raise DocumentFailed(Reason.FETCH_FAILED, exc.detail) from exc
            content = fetched.content
            if content_type == OCTET_STREAM and fetched.content_type:
                content_type = normalize_content_type(fetched.content_type)
        limit = self.settings.max_document_bytes
        if len(content) > limit:
            raise DocumentFailed(Reason.TOO_LARGE, f"{len(content)} bytes exceeds {limit}")
        try:
            return await asyncio.to_thread(extract_text, content, content_type)
        except ExtractionError as exc:
            raise DocumentFailed(exc.reason, exc.detail) from exc

    def messages_for(self, w: DocumentWork) -> Outgoing:
        """The chunk message, the outcome event and any DLQ record of one document."""
        topics = self.settings.topics
        key = w.doc.job_id.encode()
        out: Outgoing = []
        if w.chunk is not None:
            out.append((topics.chunks, key, w.chunk.to_bytes()))
        if w.failure is not None:
            out.append(
                (
                    topics.dlq,
                    key,
                    dlq_value(
                        w.record, w.failure.reason, w.failure.detail, w.doc.job_id, w.doc.doc_id
                    ),
                )
            )
        rerunnable = any(o.outcome is not Outcome.PROCESSED for o in w.outcomes)
        event = PhaseEventMessage(
            job_id=w.doc.job_id,
            kb_id=w.doc.kb_id,
            doc_id=w.doc.doc_id,
            outcomes=w.outcomes,
            # A failed or parked document carries what re-runs it: its original message.
            retry=RetryPayload(
                topic=topics.documents,
                value_b64=base64.b64encode(w.record.value or b"").decode(),
            )
            if rerunnable
            else None,
            emitted_at=utcnow(),
        )
        out.append((topics.phase_events, key, event.to_bytes()))
        return out

    def rejected(self, record: ConsumerRecord, rejection: Rejection) -> Outgoing:
        """A DLQ record and, when the document's job is known, its failure in `extract`."""
        topics = self.settings.topics
        key = rejection.job_id.encode() if rejection.job_id else None
        out: Outgoing = [
            (
                topics.dlq,
                key,
                dlq_value(
                    record,
                    rejection.reason.value,
                    rejection.detail,
                    rejection.job_id,
                    rejection.doc_id,
                ),
            )
        ]
        if rejection.job_id and rejection.doc_id:
            event = PhaseEventMessage(
                job_id=rejection.job_id,
                kb_id=rejection.kb_id,
                doc_id=rejection.doc_id,
                outcomes=[
                    PhaseOutcome(phase=Phase.LOAD, outcome=Outcome.PROCESSED),
                    PhaseOutcome(
                        phase=Phase.EXTRACT,
                        outcome=Outcome.FAILED,
                        reason=rejection.reason.value,
                        error=rejection.detail[:2000],
                    ),
                ],
                retry=RetryPayload(
                    topic=topics.documents,
                    value_b64=base64.b64encode(record.value or b"").decode(),
                ),
                emitted_at=utcnow(),
            )
            out.append((topics.phase_events, key, event.to_bytes()))
        log.info(
            "document_rejected",
            job_id=rejection.job_id,
            doc_id=rejection.doc_id,
            reason=rejection.reason.value,
        )
        return out

    # -- source-based jobs ----------------------------------------------------------------

    def feed_source(self, record: ConsumerRecord) -> Outgoing:
        """For a `create` with a source: one document per item, then a seal with their count.

        Re-delivery re-sends the same documents and seal, which count once.
        """
        command = decode(record.value, ControlMessage, self.settings.max_message_bytes)
        if not isinstance(command, ControlMessage) or command.command is not Command.CREATE:
            return []
        source = command.source
        if source is None:
            return []
        if command.kb_id is None:
            log.warning("source_without_kb", job_id=command.job_id)
            return []
        topics = self.settings.topics
        key = command.job_id.encode()
        try:
            if isinstance(source, DirectorySource):
                items = directory_items(source.path)
            else:
                items = uri_items(source.uris)
            documents = [
                DocumentMessage(
                    job_id=command.job_id,
                    kb_id=command.kb_id,
                    doc_id=item.doc_id,
                    content_type=item.content_type,
                    source_uri=item.uri,
                )
                for item in items
            ]
        except ValidationError as exc:
            log.warning("source_unusable", job_id=command.job_id, error=str(exc))
            return [
                (
                    topics.dlq,
                    key,
                    dlq_value(
                        record,
                        Reason.FETCH_FAILED.value,
                        f"source item not usable: {exc}",
                        command.job_id,
                        None,
                    ),
                )
            ]
        except FetchError as exc:
            log.warning("source_unreadable", job_id=command.job_id, error=exc.detail)
            return [
                (
                    topics.dlq,
                    key,
                    dlq_value(record, Reason.FETCH_FAILED.value, exc.detail, command.job_id, None),
                )
            ]
        out: Outgoing = [(topics.documents, key, doc.to_bytes()) for doc in documents]
        seal = ControlMessage(
            command=Command.SEAL,
            job_id=command.job_id,
            kb_id=command.kb_id,
            expected_documents=len(items),
            request_id=f"source:{command.request_id or ''}",
        )
        out.append((topics.control, key, seal.to_bytes()))
        log.info("source_fed", job_id=command.job_id, documents=len(items))
        return out
