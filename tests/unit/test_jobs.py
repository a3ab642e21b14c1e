"""Job status derivation, legacy mapping and current phase (DESIGN §2)."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.jobs import (
    JobStatus,
    LegacyStatus,
    current_phase,
    derive_job_status,
    legacy_status,
    new_phases,
)
from service.domain.phases import PHASES, Phase, PhaseState, PhaseStatus

NS = PhaseStatus.NOT_STARTED
RUN = PhaseStatus.RUNNING
PAU = PhaseStatus.PAUSED
DONE = PhaseStatus.COMPLETED
FAIL = PhaseStatus.FAILED

ALL_COMBINATIONS = list(itertools.product(list(PhaseStatus), repeat=4))


def ordered_rules(statuses: tuple[PhaseStatus, ...]) -> JobStatus:
    """DESIGN §2's ordered rules, restated over the set of statuses present."""
    present = set(statuses)
    if FAIL in present:
        return JobStatus.FAILED
    if present == {DONE}:
        return JobStatus.COMPLETED
    if present == {NS}:
        return JobStatus.PENDING
    if PAU in present and RUN not in present:
        return JobStatus.PAUSED
    return JobStatus.RUNNING


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param((NS, NS, NS, NS), JobStatus.PENDING, id="all-not-started"),
        pytest.param((DONE, DONE, DONE, DONE), JobStatus.COMPLETED, id="all-completed"),
        pytest.param((DONE, DONE, DONE, FAIL), JobStatus.FAILED, id="one-failed"),
        pytest.param((PAU, PAU, PAU, FAIL), JobStatus.FAILED, id="failed-beats-paused"),
        pytest.param((RUN, NS, NS, NS), JobStatus.RUNNING, id="first-running"),
        pytest.param((DONE, NS, NS, NS), JobStatus.RUNNING, id="between-phases"),
        pytest.param((PAU, NS, NS, NS), JobStatus.PAUSED, id="paused-before-start"),
        pytest.param((DONE, PAU, PAU, PAU), JobStatus.PAUSED, id="paused-after-done"),
        pytest.param((DONE, RUN, PAU, NS), JobStatus.RUNNING, id="running-beats-paused"),
        pytest.param((DONE, DONE, DONE, NS), JobStatus.RUNNING, id="last-not-started"),
    ],
)
def test_derive_job_status_examples(statuses: tuple[PhaseStatus, ...], expected: JobStatus) -> None:
    assert derive_job_status(statuses) == expected


def test_derive_job_status_matches_ordered_rules_for_every_combination() -> None:
    for statuses in ALL_COMBINATIONS:
        assert derive_job_status(statuses) == ordered_rules(statuses), statuses


def test_derive_job_status_distribution_over_every_combination() -> None:
    # Counted by hand: failed = 5**4 - 4**4; paused = 3**4 - 2**4 (from {ns, paused, done} with a
    # paused); completed and pending one each; running the rest.
    counts = Counter(derive_job_status(statuses) for statuses in ALL_COMBINATIONS)

    assert counts == {
        JobStatus.FAILED: 369,
        JobStatus.PAUSED: 65,
        JobStatus.COMPLETED: 1,
        JobStatus.PENDING: 1,
        JobStatus.RUNNING: 189,
    }


@given(st.lists(st.sampled_from(list(PhaseStatus)), min_size=1, max_size=8), st.randoms())
def test_derive_job_status_ignores_order_and_accepts_any_iterable(
    statuses: list[PhaseStatus], rnd: random.Random
) -> None:
    shuffled = list(statuses)
    rnd.shuffle(shuffled)

    expected = ordered_rules(tuple(statuses))
    assert derive_job_status(shuffled) == expected
    assert derive_job_status(iter(statuses)) == expected


@pytest.mark.parametrize(
    ("status", "legacy"),
    [
        pytest.param(JobStatus.PENDING, LegacyStatus.PENDING, id="pending"),
        pytest.param(JobStatus.RUNNING, LegacyStatus.RUNNING, id="running"),
        pytest.param(JobStatus.PAUSED, LegacyStatus.RUNNING, id="paused-as-running"),
        pytest.param(JobStatus.COMPLETED, LegacyStatus.COMPLETED, id="completed"),
        pytest.param(JobStatus.FAILED, LegacyStatus.FAILED, id="failed"),
    ],
)
def test_legacy_status(status: JobStatus, legacy: LegacyStatus) -> None:
    assert legacy_status(status) == legacy


def test_status_values_are_the_contract() -> None:
    assert [s.value for s in JobStatus] == ["pending", "running", "paused", "completed", "failed"]
    assert [s.value for s in LegacyStatus] == ["pending", "running", "completed", "failed"]
    assert [p.value for p in PHASES] == ["load", "extract", "chunk", "index"]
    assert [s.value for s in PhaseStatus] == [
        "not_started",
        "running",
        "paused",
        "completed",
        "failed",
    ]


def with_statuses(*statuses: PhaseStatus) -> list[PhaseState]:
    return [PhaseState(phase=p, status=s) for p, s in zip(PHASES, statuses, strict=True)]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param((NS, NS, NS, NS), Phase.LOAD, id="fresh-job"),
        pytest.param((DONE, RUN, NS, NS), Phase.EXTRACT, id="second-running"),
        pytest.param((DONE, DONE, PAU, NS), Phase.CHUNK, id="paused-is-current"),
        pytest.param((DONE, FAIL, DONE, NS), Phase.EXTRACT, id="first-not-completed-wins"),
        pytest.param((DONE, DONE, DONE, FAIL), Phase.INDEX, id="last-failed"),
        pytest.param((DONE, DONE, DONE, DONE), None, id="all-completed"),
    ],
)
def test_current_phase(statuses: tuple[PhaseStatus, ...], expected: Phase | None) -> None:
    assert current_phase(with_statuses(*statuses)) == expected


def test_current_phase_of_no_phases_is_none() -> None:
    assert current_phase([]) is None


def test_new_phases_default() -> None:
    phases = new_phases()

    assert phases == [PhaseState(phase=p) for p in PHASES]
    assert [p.phase for p in phases] == [Phase.LOAD, Phase.EXTRACT, Phase.CHUNK, Phase.INDEX]
    assert all(p.status == NS and p.total == 0 and p.started_at is None for p in phases)
    assert derive_job_status(p.status for p in phases) == JobStatus.PENDING


def test_new_phases_custom_order_and_independent_states() -> None:
    phases = new_phases([Phase.LOAD, Phase.INDEX])
    phases[0].total = 7

    assert [p.phase for p in phases] == [Phase.LOAD, Phase.INDEX]
    assert phases[1].total == 0
    assert new_phases()[0].total == 0
