"""Phases of an ingestion job: their states, transitions and completion rules (DESIGN §2).

Pure: no I/O, no clock. Every time is passed in by the caller as a tz-aware UTC datetime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import assert_never


class Phase(StrEnum):
    """A step of the ingestion pipeline."""

    LOAD = "load"
    EXTRACT = "extract"
    CHUNK = "chunk"
    INDEX = "index"


PHASES: tuple[Phase, ...] = (Phase.LOAD, Phase.EXTRACT, Phase.CHUNK, Phase.INDEX)


class PhaseStatus(StrEnum):
    """Status of one phase of one job."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class TransitionError(Exception):
    """The one domain error for an impossible transition."""

    code = "invalid_transition"

    def __init__(self, phase: Phase, status: PhaseStatus, action: str) -> None:
        self.phase = phase
        self.status = status
        self.action = action
        super().__init__(f"cannot {action} phase '{phase}' while it is {status}")


@dataclass
class PhaseState:
    """Status, document counters and timestamps of one phase of one job.

    Each transition method returns True when it changed the state and False when it was an
    idempotent repeat; an impossible transition raises TransitionError and changes nothing.
    """

    phase: Phase
    status: PhaseStatus = PhaseStatus.NOT_STARTED
    total: int = 0
    processed: int = 0
    failed: int = 0
    parked: int = 0
    started_at: datetime | None = None
    paused_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    last_progress_at: datetime | None = None
    last_error: str | None = None
    stalled: bool = False

    def _refuse(self, action: str) -> TransitionError:
        return TransitionError(self.phase, self.status, action)

    def start(self, now: datetime) -> bool:
        """Start the phase; a paused phase stays paused but remembers that it has started."""
        match self.status:
            case PhaseStatus.NOT_STARTED:
                self.status = PhaseStatus.RUNNING
                if self.started_at is None:
                    self.started_at = now
            case PhaseStatus.PAUSED:
                # Recording the start lets a later resume go to running, not back to not_started.
                if self.started_at is not None:
                    return False
                self.started_at = now
            case PhaseStatus.RUNNING | PhaseStatus.FAILED:
                # A failed phase keeps processing the remaining documents: nothing to start.
                return False
            case PhaseStatus.COMPLETED:
                raise self._refuse("start")
            case _:
                assert_never(self.status)
        self.updated_at = now
        return True

    def pause(self, now: datetime) -> bool:
        """Pause the phase (allowed from not_started and running)."""
        match self.status:
            case PhaseStatus.NOT_STARTED | PhaseStatus.RUNNING:
                self.status = PhaseStatus.PAUSED
                self.paused_at = now
            case PhaseStatus.PAUSED:
                return False
            case PhaseStatus.COMPLETED | PhaseStatus.FAILED:
                raise self._refuse("pause")
            case _:
                assert_never(self.status)
        self.updated_at = now
        return True

    def resume(self, now: datetime) -> bool:
        """Resume a paused phase: to running, or to not_started if it had never started."""
        match self.status:
            case PhaseStatus.PAUSED:
                started = self.started_at is not None
                self.status = PhaseStatus.RUNNING if started else PhaseStatus.NOT_STARTED
                self.paused_at = None
            case PhaseStatus.RUNNING | PhaseStatus.NOT_STARTED:
                return False
            case PhaseStatus.COMPLETED | PhaseStatus.FAILED:
                raise self._refuse("resume")
            case _:
                assert_never(self.status)
        self.updated_at = now
        return True

    def complete(self, now: datetime) -> bool:
        """Mark the phase completed (from running, or from not_started when it had no documents)."""
        match self.status:
            case PhaseStatus.RUNNING | PhaseStatus.NOT_STARTED:
                self.status = PhaseStatus.COMPLETED
                self.completed_at = now
                self.stalled = False
            case PhaseStatus.COMPLETED:
                return False
            case PhaseStatus.PAUSED | PhaseStatus.FAILED:
                raise self._refuse("complete")
            case _:
                assert_never(self.status)
        self.updated_at = now
        return True

    def fail(self, now: datetime, error: str | None = None) -> bool:
        """Mark the phase failed, recording the error when one is given."""
        match self.status:
            case PhaseStatus.NOT_STARTED | PhaseStatus.RUNNING | PhaseStatus.PAUSED:
                self.status = PhaseStatus.FAILED
                self.paused_at = None
            case PhaseStatus.FAILED:
                if error is None or error == self.last_error:
                    return False
            case PhaseStatus.COMPLETED:
                raise self._refuse("fail")
            case _:
                assert_never(self.status)
        if error is not None:
            self.last_error = error
        self.updated_at = now
        return True

    def retry(self, now: datetime) -> bool:
        """Send a failed phase back to running; last_error is kept for the record."""
        match self.status:
            case PhaseStatus.FAILED:
                self.status = PhaseStatus.RUNNING
                if self.started_at is None:
                    self.started_at = now
            case PhaseStatus.RUNNING:
                return False
            case PhaseStatus.NOT_STARTED | PhaseStatus.PAUSED | PhaseStatus.COMPLETED:
                raise self._refuse("retry")
            case _:
                assert_never(self.status)
        self.updated_at = now
        return True


@dataclass(frozen=True)
class JobFacts:
    """What the phase rules need to know about the job itself."""

    sealed: bool
    expected_documents: int | None
    max_failed_documents: int = 0


def pending_work(phases: Sequence[PhaseState], index: int, facts: JobFacts) -> int:
    """Count the documents phase `index` still has to process or fail (parked ones included)."""
    state = phases[index]
    done = state.processed + state.failed
    # Received but not yet done: in flight or parked while paused.
    received = max(state.total - done, 0)
    if index == 0:
        if facts.sealed and facts.expected_documents is not None:
            return max(facts.expected_documents - done, received)
        return received
    return max(phases[index - 1].processed - done, 0)


def _load_is_done(state: PhaseState, facts: JobFacts) -> bool:
    return (
        facts.sealed
        and facts.expected_documents is not None
        and state.processed + state.failed >= facts.expected_documents
        and state.parked == 0
    )


def _later_is_done(state: PhaseState, upstream: PhaseState) -> bool:
    return (
        upstream.status == PhaseStatus.COMPLETED
        and state.processed + state.failed >= upstream.processed
        and state.parked == 0
    )


def _is_stalled(
    phases: Sequence[PhaseState],
    index: int,
    facts: JobFacts,
    now: datetime,
    stall_after_s: float,
) -> bool:
    state = phases[index]
    if state.status != PhaseStatus.RUNNING:
        return False
    last_activity = state.last_progress_at or state.started_at
    if last_activity is None:
        return False
    idle_s = (now - last_activity).total_seconds()
    return idle_s > stall_after_s and pending_work(phases, index, facts) > 0


def apply_rules(
    phases: Sequence[PhaseState],
    facts: JobFacts,
    now: datetime,
    stall_after_s: float,
) -> list[Phase]:
    """Apply the start, failure, completion and stall rules in phase order; return what changed.

    The states are mutated in place. A phase is returned when its status or its stalled flag
    differs from before the call. Phases are evaluated in order so that one call cascades
    completion from load down to index when all counts are there.
    """
    changed: list[Phase] = []
    for index, state in enumerate(phases):
        before = (state.status, state.stalled)

        if state.total > 0 and state.status in (PhaseStatus.NOT_STARTED, PhaseStatus.PAUSED):
            state.start(now)

        if state.failed > facts.max_failed_documents and state.status in (
            PhaseStatus.NOT_STARTED,
            PhaseStatus.RUNNING,
            PhaseStatus.PAUSED,
        ):
            state.fail(
                now,
                f"{state.failed} failed documents exceed "
                f"max_failed_documents={facts.max_failed_documents}",
            )

        if state.status in (PhaseStatus.RUNNING, PhaseStatus.NOT_STARTED):
            done = (
                _load_is_done(state, facts)
                if index == 0
                else _later_is_done(state, phases[index - 1])
            )
            if done:
                state.complete(now)

        state.stalled = _is_stalled(phases, index, facts, now, stall_after_s)

        if (state.status, state.stalled) != before:
            changed.append(state.phase)
    return changed
