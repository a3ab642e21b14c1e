"""The status aggregator: per-document outcomes and commands in, phase rows and status out.

The one place where DESIGN §2's completion, failure and derivation rules are applied.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from service.adapters.postgres import (
    TRANSIENT_DB_ERRORS,
    JobRecord,
    JobUnit,
    OutboxMessage,
    OutcomeRow,
    PostgresStore,
)
from service.config import Settings
from service.contracts import (
    Command,
    ControlMessage,
    JobOptions,
    Message,
    Outcome,
    PhaseEventMessage,
    PhaseMarker,
    PhaseView,
    Reason,
    Rejection,
    StatusMessage,
    decode,
)
from service.domain.jobs import current_phase, legacy_status
from service.domain.phases import (
    JobFacts,
    Phase,
    PhaseStatus,
    TransitionError,
    apply_rules,
)
from service.logging import get_logger
from service.pipeline.deadletter import dlq_value
from service.pipeline.runtime import BatchWorker, next_offsets, record_key, utcnow

log = get_logger(__name__)

_COUNTER_OF = {"processed": "processed", "failed": "failed", "parked": "parked"}


class CommandRefused(Exception):
    """A command that cannot apply to the job as it stands."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class _Snapshot:
    status: tuple[str, ...]
    stalled: tuple[bool, ...]
    counters: tuple[int, ...]
    facts: tuple[object, ...]

    @classmethod
    def of(cls, job: JobRecord) -> _Snapshot:
        return cls(
            status=tuple(p.status.value for p in job.phases),
            stalled=tuple(p.stalled for p in job.phases),
            counters=tuple(
                c for p in job.phases for c in (p.total, p.processed, p.failed, p.parked)
            ),
            facts=(job.kb_id, job.sealed, job.expected_documents, job.options, job.source),
        )


@dataclass
class BatchEffects:
    """What one batch decided: messages to publish after commit, per-job change labels."""

    outbox: list[OutboxMessage] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)

    def note(self, job_id: str, label: str) -> None:
        labels = self.changed.setdefault(job_id, [])
        if label not in labels:
            labels.append(label)


def status_message(job: JobRecord, changed: list[str], now: datetime) -> StatusMessage:
    """The `kb.status` message for a job as it stands."""
    status = job.status
    phase = current_phase(job.phases)
    return StatusMessage(
        job_id=job.job_id,
        kb_id=job.kb_id,
        version=job.version,
        status=status,
        legacy_status=legacy_status(status),
        current_phase=phase,
        phases=[phase_view(job, i) for i in range(len(job.phases))],
        changed=changed,
        emitted_at=now,
    )


def phase_view(job: JobRecord, index: int) -> PhaseView:
    """One phase as published and served."""
    p = job.phases[index]
    return PhaseView(
        phase=p.phase,
        status=p.status,
        position=index,
        total=p.total,
        processed=p.processed,
        failed=p.failed,
        parked=p.parked,
        stalled=p.stalled,
        started_at=p.started_at,
        paused_at=p.paused_at,
        completed_at=p.completed_at,
        updated_at=p.updated_at,
        last_progress_at=p.last_progress_at,
        last_error=p.last_error,
    )


class JobFolding:
    """Applies one batch of outcomes and commands to the locked jobs of one transaction."""

    def __init__(self, settings: Settings, unit: JobUnit, now: datetime) -> None:
        self.settings = settings
        self.unit = unit
        self.now = now
        self.jobs: dict[str, JobRecord] = {}
        self.before: dict[str, _Snapshot] = {}
        self.effects = BatchEffects()

    async def load(self, job_ids: set[str]) -> None:
        """Lock the jobs the batch touches."""
        self.jobs = await self.unit.lock_jobs(job_ids)
        self.before = {j: _Snapshot.of(job) for j, job in self.jobs.items()}

    async def job(self, job_id: str, kb_id: str | None) -> JobRecord:
        """The locked job, created with default options if it does not exist yet."""
        job = self.jobs.get(job_id)
        if job is None:
            job = await self.unit.insert_job(job_id, kb_id, JobOptions(), None, self.now)
            self.jobs[job_id] = job
            self.effects.note(job_id, "created")
        if job.kb_id is None and kb_id is not None:
            job.kb_id = kb_id
        return job

    # -- outcomes -------------------------------------------------------------------------

    async def apply_events(self, events: Sequence[PhaseEventMessage]) -> None:
        """Record per-document outcomes; counters move by what actually changed."""
        keys = [(e.job_id, e.doc_id, o.phase.value) for e in events for o in e.outcomes]
        current = await self.unit.current_outcomes(keys)
        rows: dict[tuple[str, str, str], OutcomeRow] = {}
        for event in events:
            job = await self.job(event.job_id, event.kb_id)
            for o in event.outcomes:
                key = (event.job_id, event.doc_id, o.phase.value)
                old = current.get(key)
                new = o.outcome.value
                if old == Outcome.PROCESSED.value or old == new:
                    continue  # a redelivered or stale outcome: the stored one stands
                retry_topic = retry_value = None
                # Keep what a re-run needs only where one can happen: failed or parked.
                if event.retry is not None and new in (Outcome.FAILED, Outcome.PARKED):
                    retry_topic = event.retry.topic
                    retry_value = base64.b64decode(event.retry.value_b64)
                if new == Outcome.PARKED.value and not self._holds(job, o.phase):
                    # Resumed before this parked document was counted: send it straight back.
                    new = "retrying"
                    if retry_topic and retry_value is not None:
                        self.effects.outbox.append(
                            OutboxMessage(retry_topic, event.job_id.encode(), retry_value)
                        )
                current[key] = new
                rows[key] = OutcomeRow(
                    event.job_id,
                    event.doc_id,
                    o.phase,
                    new,
                    o.reason,
                    o.error,
                    retry_topic,
                    retry_value,
                )
                self._move(job, o.phase, old, new, o.error)
        await self.unit.upsert_outcomes(list(rows.values()), self.now)

    def _holds(self, job: JobRecord, phase: Phase) -> bool:
        return phase in job.pause_requested or job.phase(phase).status == PhaseStatus.PAUSED

    def _move(
        self, job: JobRecord, phase: Phase, old: str | None, new: str, error: str | None
    ) -> None:
        state = job.phase(phase)
        if old is None:
            state.total += 1
        if old in _COUNTER_OF:
            setattr(state, _COUNTER_OF[old], getattr(state, _COUNTER_OF[old]) - 1)
        if new in _COUNTER_OF:
            setattr(state, _COUNTER_OF[new], getattr(state, _COUNTER_OF[new]) + 1)
        if new in ("processed", "failed"):
            state.last_progress_at = self.now
        if new == "failed" and error:
            state.last_error = error

    # -- markers and commands -------------------------------------------------------------

    async def apply_marker(self, marker: PhaseMarker) -> None:
        """A pause marker came back: everything sent before it is counted, so pause now."""
        job = self.jobs.get(marker.job_id)
        if job is None or marker.phase not in job.pause_requested:
            return  # resumed (or unknown) meanwhile
        job.pause_requested.discard(marker.phase)
        state = job.phase(marker.phase)
        if state.status in (PhaseStatus.NOT_STARTED, PhaseStatus.RUNNING):
            state.pause(self.now)
            self.effects.note(job.job_id, f"{marker.phase}:paused")

    async def apply_command(self, command: ControlMessage) -> None:
        """Apply one control command.

        Raises:
            CommandRefused: unknown job, conflicting facts, or an impossible transition.
        """
        match command.command:
            case Command.CREATE:
                await self._create(command)
            case Command.SEAL:
                await self._seal(command)
            case Command.PAUSE:
                await self._pause(self._existing(command), command)
            case Command.RESUME:
                await self._resume(self._existing(command), command)
            case Command.RETRY:
                await self._retry(self._existing(command), command)

    def _existing(self, command: ControlMessage) -> JobRecord:
        job = self.jobs.get(command.job_id)
        if job is None:
            raise CommandRefused(Reason.UNKNOWN_JOB, f"job {command.job_id!r} does not exist")
        return job

    async def _create(self, command: ControlMessage) -> None:
        existing = self.jobs.get(command.job_id)
        if existing is not None and command.kb_id and existing.kb_id not in (None, command.kb_id):
            raise CommandRefused(
                Reason.INVALID_COMMAND,
                f"job {command.job_id!r} already belongs to kb {existing.kb_id!r}",
            )
        job = await self.job(command.job_id, command.kb_id)
        if command.options is not None and command.options != job.options:
            job.options = command.options
            self.effects.note(job.job_id, "options")
            # Options and documents travel on different topics: a raised tolerance that
            # arrives after the failures it tolerates lifts the count-based failure.
            for state in job.phases:
                if state.status == PhaseStatus.FAILED and (
                    state.failed <= job.options.max_failed_documents
                ):
                    state.retry(self.now)
        if command.source is not None:
            job.source = command.source.model_dump()

    async def _seal(self, command: ControlMessage) -> None:
        job = await self.job(command.job_id, command.kb_id)
        if job.sealed and job.expected_documents != command.expected_documents:
            raise CommandRefused(
                Reason.INVALID_COMMAND,
                f"job {command.job_id!r} is already sealed with"
                f" expected_documents={job.expected_documents}",
            )
        if not job.sealed:
            job.sealed = True
            job.expected_documents = command.expected_documents
            self.effects.note(job.job_id, "sealed")

    def _targets(self, job: JobRecord, command: ControlMessage) -> list[Phase]:
        if command.phase is not None:
            return [command.phase]
        # A whole-job command leaves completed phases alone.
        return [p.phase for p in job.phases if p.status != PhaseStatus.COMPLETED]

    async def _pause(self, job: JobRecord, command: ControlMessage) -> None:
        targets = self._targets(job, command)
        if command.phase is None:
            targets = [p for p in targets if job.phase(p).status != PhaseStatus.FAILED]
        if not targets:
            raise CommandRefused(
                Reason.INVALID_TRANSITION, f"job {job.job_id!r} has no phase to pause"
            )
        for phase in targets:
            replace(job.phase(phase)).pause(self.now)  # check on a copy: raises, changes nothing
        await self.unit.lock_phases_for_pause(job.job_id, targets)
        for phase in targets:
            state = job.phase(phase)
            if state.status == PhaseStatus.PAUSED or phase in job.pause_requested:
                continue
            job.pause_requested.add(phase)
            self.effects.note(job.job_id, f"{phase}:pause_requested")
            marker = PhaseMarker(job_id=job.job_id, phase=phase, request_id=command.request_id)
            self.effects.outbox.append(
                OutboxMessage(
                    self.settings.topics.phase_events, job.job_id.encode(), marker.to_bytes()
                )
            )

    async def _resume(self, job: JobRecord, command: ControlMessage) -> None:
        targets = self._targets(job, command)
        if command.phase is None:
            targets = [p for p in targets if job.phase(p).status != PhaseStatus.FAILED]
        for phase in targets:
            state = job.phase(phase)
            if phase in job.pause_requested:
                job.pause_requested.discard(phase)  # its marker will find nothing to pause
                self.effects.note(job.job_id, f"{phase}:pause_cancelled")
            if state.resume(self.now):
                # The pause is not the phase's fault: do not flag it stalled for it.
                state.last_progress_at = self.now
                self.effects.note(job.job_id, f"{phase}:resumed")
            await self._rerun(job, [phase], "parked")

    async def _retry(self, job: JobRecord, command: ControlMessage) -> None:
        if all(p.status == PhaseStatus.COMPLETED for p in job.phases):
            raise CommandRefused(
                Reason.INVALID_TRANSITION, f"job {job.job_id!r} is completed: nothing to retry"
            )
        targets = self._targets(job, command)
        for phase in targets:
            state = job.phase(phase)
            if command.phase is None and state.status in (
                PhaseStatus.NOT_STARTED,
                PhaseStatus.PAUSED,
            ):
                continue
            if state.retry(self.now):  # raises TransitionError unless failed or running
                self.effects.note(job.job_id, f"{phase}:retried")
            await self._rerun(job, [phase], "failed")

    async def _rerun(self, job: JobRecord, phases: list[Phase], outcome: str) -> None:
        again = await self.unit.take_for_rerun(job.job_id, phases, outcome, self.now)
        for item in again:
            self._move(job, item.phase, outcome, "retrying", None)
            self.effects.outbox.append(OutboxMessage(item.topic, job.job_id.encode(), item.value))
        if again:
            self.effects.note(job.job_id, f"rerun:{len(again)}")

    # -- rules, versions, status ----------------------------------------------------------

    async def finish(self, force_publish: bool = False) -> None:
        """Apply the rules, bump versions, queue status messages and save every touched job."""
        for job_id, job in self.jobs.items():
            facts = JobFacts(
                sealed=job.sealed,
                expected_documents=job.expected_documents,
                max_failed_documents=job.options.max_failed_documents,
            )
            apply_rules(job.phases, facts, self.now, self.settings.stall_after_s)
            before = self.before.get(job_id)
            after = _Snapshot.of(job)
            labels = self.effects.changed.get(job_id, [])
            if before is not None and after == before and not labels:
                if job.status_dirty and self._due(job):
                    self._publish(job, ["progress"])
                    await self.unit.save_job(job)
                continue
            job.version += 1
            job.updated_at = self.now
            labels = list(labels)
            if before is None or after.status != before.status:
                labels.append("status")
            if before is not None:
                for i, p in enumerate(job.phases):
                    if after.status[i] != before.status[i]:
                        labels.append(f"{p.phase}:{p.status}")
                    if after.stalled[i] != before.stalled[i]:
                        labels.append(f"{p.phase}:{'stalled' if p.stalled else 'unstalled'}")
            structural = (
                before is None
                or after.status != before.status
                or (after.stalled != before.stalled or after.facts != before.facts or bool(labels))
            )
            if structural or force_publish or self._due(job):
                self._publish(job, labels or ["progress"])
            else:
                job.status_dirty = True
            await self.unit.save_job(job)

    def _due(self, job: JobRecord) -> bool:
        last = job.status_emitted_at
        interval = self.settings.status_progress_interval_s
        return last is None or (self.now - last).total_seconds() >= interval

    def _publish(self, job: JobRecord, labels: list[str]) -> None:
        message = status_message(job, labels, self.now)
        self.effects.outbox.append(
            OutboxMessage(self.settings.topics.status, job.job_id.encode(), message.to_bytes())
        )
        job.status_emitted_at = self.now
        job.status_dirty = False
        log.info(
            "status_changed",
            job_id=job.job_id,
            version=job.version,
            status=message.status.value,
            changed=labels,
        )


def dlq_for(record: ConsumerRecord, rejection: Rejection, topic: str) -> OutboxMessage:
    """The `kb.dlq` message for a rejected record, queued in the outbox."""
    key = rejection.job_id.encode() if rejection.job_id else None
    value = dlq_value(
        record, rejection.reason.value, rejection.detail, rejection.job_id, rejection.doc_id
    )
    return OutboxMessage(topic, key, value)


class Aggregator(BatchWorker):
    """Consumes `kb.phase-events` and `kb.control`; persists, derives, then publishes.

    Per batch, in order: decode → one transaction (lock jobs, upsert outcomes, apply commands
    and rules, queue status/retry/DLQ messages in the outbox, store the next offsets) → commit →
    drain the outbox (send, wait for acks, delete) → best-effort offset commit to Kafka.
    Offsets live in Postgres, so a crash after the commit neither loses nor repeats an effect.
    """

    name = "aggregator"

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
        self._last_tick = 0.0

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _SeekToStoredOffsets(self)

    async def handle(self, records: list[ConsumerRecord]) -> None:
        """Fold the batch; if the database refuses it for good, fold record by record.

        A record the database still refuses on its own goes to `kb.dlq` (reason
        `unprocessable`) with its offset stored, so one bad record never stops the partition.
        """
        try:
            await self.fold(records)
        except TRANSIENT_DB_ERRORS:
            raise
        except asyncpg.PostgresError as exc:
            log.error("batch_refused", error=f"{type(exc).__name__}: {exc}", records=len(records))
            for record in records:
                try:
                    await self.fold([record])
                except TRANSIENT_DB_ERRORS:
                    raise
                except asyncpg.PostgresError as one:
                    await self.dead_letter(record, f"{type(one).__name__}: {one}")

    async def dead_letter(self, record: ConsumerRecord, detail: str) -> None:
        """Send one record the database refuses to the DLQ, storing its offset."""
        log.error("record_unprocessable", topic=record.topic, offset=record.offset, error=detail)
        rejection = Rejection(Reason.UNPROCESSABLE, detail[:1000], record_key(record))
        async with self.store.unit() as unit:
            await unit.add_outbox([dlq_for(record, rejection, self.settings.topics.dlq)])
            await unit.store_offsets(self.settings.group_aggregator, next_offsets([record]))

    async def fold(self, records: list[ConsumerRecord]) -> None:
        """One transaction for the batch (see the class docstring for the order)."""
        now = utcnow()
        topics = self.settings.topics
        events: list[PhaseEventMessage] = []
        markers: list[PhaseMarker] = []
        commands: list[tuple[ConsumerRecord, ControlMessage]] = []
        dead: list[OutboxMessage] = []
        limit = self.settings.max_message_bytes
        for record in records:
            decoded: Message | Rejection
            if record.topic == topics.control:
                decoded = decode(record.value, ControlMessage, limit)
                if isinstance(decoded, ControlMessage):
                    commands.append((record, decoded))
            else:
                decoded = decode(record.value, PhaseMarker, limit)
                if isinstance(decoded, Rejection):
                    decoded = decode(record.value, PhaseEventMessage, limit)
                if isinstance(decoded, PhaseMarker):
                    markers.append(decoded)
                elif isinstance(decoded, PhaseEventMessage):
                    events.append(decoded)
            if isinstance(decoded, Rejection):
                dead.append(dlq_for(record, decoded, topics.dlq))
        async with self.store.unit() as unit:
            folding = JobFolding(self.settings, unit, now)
            job_ids = {e.job_id for e in events} | {c.job_id for _, c in commands}
            await folding.load(job_ids | {m.job_id for m in markers})
            await folding.apply_events(events)
            for marker in markers:
                await folding.apply_marker(marker)
            for record, command in commands:
                try:
                    await folding.apply_command(command)
                except TransitionError as exc:
                    rejection = Rejection(Reason.INVALID_TRANSITION, str(exc), command.job_id)
                    dead.append(dlq_for(record, rejection, topics.dlq))
                except CommandRefused as exc:
                    rejection = Rejection(exc.reason, exc.detail, command.job_id)
                    dead.append(dlq_for(record, rejection, topics.dlq))
            await folding.finish()
            await unit.add_outbox(folding.effects.outbox + dead)
            await unit.store_offsets(self.settings.group_aggregator, next_offsets(records))

    async def commit(self, records: list[ConsumerRecord]) -> None:
        """Publish what the batch queued; offsets are already stored in Postgres.

        Retried on its own when the broker is away, so the batch is not folded twice. Kafka's
        copy of the offsets only feeds lag metrics (and KEDA).
        """
        await self.drain_outbox()
        try:
            await super().commit(records)
        except Exception as exc:  # a rebalance may have moved the partition: harmless here
            log.info("kafka_offset_commit_skipped", error=str(exc))

    async def idle(self) -> None:
        """Publish rate-limited progress, refresh stall flags, and drain leftovers."""
        if time.monotonic() - self._last_tick < self.settings.status_progress_interval_s:
            return
        self._last_tick = time.monotonic()
        await self.tick()
        await self.drain_outbox()

    async def tick(self) -> None:
        """One transaction over jobs with unpublished progress or a stall to check."""
        now = utcnow()
        async with self.store.unit() as unit:
            ids = await unit.dirty_or_running_jobs()
            if not ids:
                return
            folding = JobFolding(self.settings, unit, now)
            await folding.load(set(ids))
            await folding.finish()
            await unit.add_outbox(folding.effects.outbox)

    async def drain_outbox(self) -> None:
        """Publish queued messages in order, deleting them only once the broker has them."""
        while True:
            async with self.store.outbox_batch() as batch:
                if not batch:
                    return
                futures = [
                    await self.producer.send(m.topic, key=m.key, value=m.value) for _, m in batch
                ]
                await asyncio.gather(*futures)


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the offsets stored with the aggregator's rows."""

    def __init__(self, worker: Aggregator) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        stored = await self.worker.store.stored_offsets(self.worker.settings.group_aggregator)
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            if offset is not None:
                self.worker.consumer.seek(tp, offset)
