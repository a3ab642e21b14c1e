"""Job commands from the API and the CLI: checked against the job, sent through `kb.control`.

The check runs the aggregator's own command logic on a copy of the job, so the API refuses
exactly what the aggregator would refuse; the aggregator stays the one place that applies it.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from service.adapters.postgres import JobRecord, OutboxMessage, PostgresStore, Republish
from service.config import Settings
from service.contracts import Command, ControlMessage, JobOptions, Reason, Source
from service.domain.phases import Phase, TransitionError
from service.pipeline.aggregator import CommandRefused, JobFolding
from service.pipeline.runtime import utcnow


class JobNotFound(Exception):
    """No job has this id."""


class CommandConflict(Exception):
    """The command cannot apply to the job as it stands (HTTP 409)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _DryRunUnit:
    """Reads in place of writing, so a command can be tried on a copy of a job."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def take_for_rerun(
        self, job_id: str, phases: Sequence[Phase], outcome: str, now: datetime
    ) -> list[Republish]:
        found = await self.store.documents_with_outcome(job_id, phases, outcome)
        return [Republish(doc_id, phase, "", b"") for doc_id, phase in found]

    async def insert_job(self, *args: Any, **kwargs: Any) -> JobRecord:
        raise CommandRefused(Reason.UNKNOWN_JOB, "job does not exist")

    async def add_outbox(self, messages: Sequence[OutboxMessage]) -> None:
        return None

    async def lock_phases_for_pause(self, job_id: str, phases: Sequence[Phase]) -> None:
        return None


class JobCommands:
    """The use case behind every door (HTTP, CLI) that changes a job."""

    def __init__(
        self, settings: Settings, store: PostgresStore, producer: AIOKafkaProducer
    ) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer

    async def create(
        self,
        job_id: str | None,
        kb_id: str,
        options: JobOptions | None,
        source: Source | None,
        wait_s: float = 10.0,
    ) -> tuple[str, JobRecord | None]:
        """Create a job (or set its options); returns its id and its row once it exists.

        Raises:
            CommandConflict: the job exists under another KB.
        """
        job_id = job_id or str(uuid.uuid4())
        existing = await self.store.get_job(job_id)
        if existing is not None and existing.kb_id not in (None, kb_id):
            raise CommandConflict(
                "job_conflict", f"job {job_id!r} already belongs to kb {existing.kb_id!r}"
            )
        command = ControlMessage(
            command=Command.CREATE,
            job_id=job_id,
            kb_id=kb_id,
            options=options,
            source=source,
            request_id=str(uuid.uuid4()),
        )
        if existing is not None and not await self._check(existing, command):
            return job_id, existing  # the job already is what was asked
        await self._send(command)
        after = -1 if existing is None else existing.version
        return job_id, await self._wait_for_version(job_id, after, wait_s)

    async def seal(self, job_id: str, expected_documents: int, wait_s: float = 10.0) -> JobRecord:
        """Seal a job with its expected document count."""
        job = await self._job(job_id)
        command = ControlMessage(
            command=Command.SEAL,
            job_id=job_id,
            expected_documents=expected_documents,
            request_id=str(uuid.uuid4()),
        )
        if not await self._check(job, command):
            return job
        await self._send(command)
        return await self._wait_for_version(job_id, job.version, wait_s) or job

    async def phase_command(
        self, command_name: Command, job_id: str, phase: Phase | None, wait_s: float = 10.0
    ) -> JobRecord:
        """Pause, resume or retry one phase (or every phase) of a job.

        Raises:
            JobNotFound: no such job.
            CommandConflict: the transition is impossible (e.g. resuming a completed phase).
        """
        job = await self._job(job_id)
        command = ControlMessage(
            command=command_name, job_id=job_id, phase=phase, request_id=str(uuid.uuid4())
        )
        if not await self._check(job, command):
            return job  # an idempotent repeat: nothing to send, nothing to wait for
        await self._send(command)
        return await self._wait_for_version(job_id, job.version, wait_s) or job

    async def _job(self, job_id: str) -> JobRecord:
        job = await self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def _check(self, job: JobRecord, command: ControlMessage) -> bool:
        """Try the command on a copy of the job; True when it would change something.

        Raises:
            CommandConflict: the aggregator would refuse it.
        """
        unit = _DryRunUnit(self.store)
        folding = JobFolding(self.settings, unit, utcnow())  # type: ignore[arg-type]
        folding.jobs = {job.job_id: copy.deepcopy(job)}
        try:
            await folding.apply_command(command)
        except TransitionError as exc:
            raise CommandConflict(exc.code, str(exc)) from exc
        except CommandRefused as exc:
            raise CommandConflict(str(exc.reason), exc.detail) from exc
        return bool(folding.effects.changed.get(job.job_id) or folding.effects.outbox)

    async def _send(self, command: ControlMessage) -> None:
        await self.producer.send_and_wait(
            self.settings.topics.control, key=command.job_id.encode(), value=command.to_bytes()
        )

    async def _wait_for_version(self, job_id: str, after: int, wait_s: float) -> JobRecord | None:
        """The job once the aggregator has applied something new to it (None on timeout)."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            job = await self.store.get_job(job_id)
            if job is not None and job.version > after:
                return job
            if asyncio.get_running_loop().time() >= deadline:
                return job if after < 0 and job is not None else None
            await asyncio.sleep(0.05)
