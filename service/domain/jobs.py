"""Job status, derived from the statuses of the job's phases (DESIGN §2)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

from service.domain.phases import PHASES, Phase, PhaseState, PhaseStatus


class JobStatus(StrEnum):
    """The derived five-value status carried by the API and the status topic."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class LegacyStatus(StrEnum):
    """The four values older readers expect in `ingestion_jobs.status`."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


def derive_job_status(statuses: Iterable[PhaseStatus]) -> JobStatus:
    """Derive the job status from its phase statuses, by the ordered rules of DESIGN §2."""
    seen = list(statuses)
    if PhaseStatus.FAILED in seen:
        return JobStatus.FAILED
    if all(s == PhaseStatus.COMPLETED for s in seen):
        return JobStatus.COMPLETED
    if all(s == PhaseStatus.NOT_STARTED for s in seen):
        return JobStatus.PENDING
    if PhaseStatus.PAUSED in seen and PhaseStatus.RUNNING not in seen:
        return JobStatus.PAUSED
    return JobStatus.RUNNING


_LEGACY: dict[JobStatus, LegacyStatus] = {
    JobStatus.PENDING: LegacyStatus.PENDING,
    # Older readers know no `paused`: a paused job is still an unfinished, live job.
    JobStatus.PAUSED: LegacyStatus.RUNNING,
    JobStatus.RUNNING: LegacyStatus.RUNNING,
    JobStatus.COMPLETED: LegacyStatus.COMPLETED,
    JobStatus.FAILED: LegacyStatus.FAILED,
}


def legacy_status(status: JobStatus) -> LegacyStatus:
    """Map a derived job status to the legacy four-value column (paused is written as running)."""
    return _LEGACY[status]


def current_phase(phases: Sequence[PhaseState]) -> Phase | None:
    """Return the first phase, in order, that is not completed; None when all are completed."""
    for state in phases:
        if state.status != PhaseStatus.COMPLETED:
            return state.phase
    return None


def new_phases(phases: Sequence[Phase] = PHASES) -> list[PhaseState]:
    """Build fresh not-started states for the given phases, in order."""
    return [PhaseState(phase=phase) for phase in phases]
