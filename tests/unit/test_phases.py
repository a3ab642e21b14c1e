"""Phase transitions and the completion, failure and stall rules of DESIGN §2."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from service.domain.phases import (
    PHASES,
    JobFacts,
    Phase,
    PhaseState,
    PhaseStatus,
    TransitionError,
    apply_rules,
    pending_work,
)

S = PhaseStatus
T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
STALL_S = 60.0

ACTIONS = ("start", "pause", "resume", "complete", "fail", "retry")

# The refusals of the transition table, written out independently of the implementation.
REFUSED: dict[str, frozenset[PhaseStatus]] = {
    "start": frozenset({S.COMPLETED}),
    "pause": frozenset({S.COMPLETED, S.FAILED}),
    "resume": frozenset({S.COMPLETED, S.FAILED}),
    "complete": frozenset({S.PAUSED, S.FAILED}),
    "fail": frozenset({S.COMPLETED}),
    "retry": frozenset({S.NOT_STARTED, S.PAUSED, S.COMPLETED}),
}


def state_in(
    status: PhaseStatus, *, started: bool = True, phase: Phase = Phase.INDEX
) -> PhaseState:
    """Build a phase state in `status` with the fields the transitions would have left."""
    state = PhaseState(phase=phase, status=status, total=3, processed=1, updated_at=T0)
    if status != S.NOT_STARTED and started:
        state.started_at = T0
    if status == S.PAUSED:
        state.paused_at = T0
    if status == S.COMPLETED:
        state.completed_at = T0
    if status == S.FAILED:
        state.last_error = "boom"
    return state


def call(state: PhaseState, action: str, now: datetime, error: str | None = None) -> bool:
    """Invoke one transition by name."""
    if action == "fail":
        return state.fail(now, error)
    method: Callable[[datetime], bool] = getattr(state, action)
    return method(now)


# --- transition table -------------------------------------------------------------------------

# fmt: off
ALLOWED = [
    # start
    pytest.param(
        "start", state_in(S.NOT_STARTED), None, True,
        {"status": S.RUNNING, "started_at": NOW}, id="start-not_started-runs",
    ),
    pytest.param("start", state_in(S.RUNNING), None, False, {}, id="start-running-noop"),
    pytest.param(
        "start", state_in(S.PAUSED, started=False), None, True,
        {"started_at": NOW}, id="start-paused-never-started-records-start",
    ),
    pytest.param("start", state_in(S.PAUSED), None, False, {}, id="start-paused-started-noop"),
    pytest.param("start", state_in(S.FAILED), None, False, {}, id="start-failed-noop"),
    # pause
    pytest.param(
        "pause", state_in(S.NOT_STARTED), None, True,
        {"status": S.PAUSED, "paused_at": NOW}, id="pause-not_started",
    ),
    pytest.param(
        "pause", state_in(S.RUNNING), None, True,
        {"status": S.PAUSED, "paused_at": NOW}, id="pause-running",
    ),
    pytest.param("pause", state_in(S.PAUSED), None, False, {}, id="pause-paused-noop"),
    # resume
    pytest.param(
        "resume", state_in(S.PAUSED), None, True,
        {"status": S.RUNNING, "paused_at": None}, id="resume-paused-started-runs",
    ),
    pytest.param(
        "resume", state_in(S.PAUSED, started=False), None, True,
        {"status": S.NOT_STARTED, "paused_at": None}, id="resume-paused-never-started",
    ),
    pytest.param("resume", state_in(S.RUNNING), None, False, {}, id="resume-running-noop"),
    pytest.param("resume", state_in(S.NOT_STARTED), None, False, {}, id="resume-not_started-noop"),
    # complete
    pytest.param(
        "complete", replace(state_in(S.RUNNING), stalled=True), None, True,
        {"status": S.COMPLETED, "completed_at": NOW, "stalled": False}, id="complete-running",
    ),
    pytest.param(
        "complete", state_in(S.NOT_STARTED), None, True,
        {"status": S.COMPLETED, "completed_at": NOW}, id="complete-not_started-zero-docs",
    ),
    pytest.param("complete", state_in(S.COMPLETED), None, False, {}, id="complete-completed-noop"),
    # fail
    pytest.param(
        "fail", state_in(S.NOT_STARTED), "bad", True,
        {"status": S.FAILED, "last_error": "bad"}, id="fail-not_started",
    ),
    pytest.param(
        "fail", state_in(S.RUNNING), None, True, {"status": S.FAILED}, id="fail-running-no-error",
    ),
    pytest.param(
        "fail", state_in(S.PAUSED), "bad", True,
        {"status": S.FAILED, "last_error": "bad", "paused_at": None}, id="fail-paused",
    ),
    pytest.param("fail", state_in(S.FAILED), None, False, {}, id="fail-failed-noop"),
    pytest.param("fail", state_in(S.FAILED), "boom", False, {}, id="fail-failed-same-error-noop"),
    pytest.param(
        "fail", state_in(S.FAILED), "worse", True,
        {"last_error": "worse"}, id="fail-failed-new-error-recorded",
    ),
    # retry
    pytest.param(
        "retry", state_in(S.FAILED), None, True,
        {"status": S.RUNNING}, id="retry-failed-runs-keeps-error",
    ),
    pytest.param(
        "retry", state_in(S.FAILED, started=False), None, True,
        {"status": S.RUNNING, "started_at": NOW}, id="retry-failed-never-started",
    ),
    pytest.param("retry", state_in(S.RUNNING), None, False, {}, id="retry-running-noop"),
]
# fmt: on


@pytest.mark.parametrize(("action", "before", "error", "changed", "fields"), ALLOWED)
def test_allowed_transition(
    action: str, before: PhaseState, error: str | None, changed: bool, fields: dict[str, Any]
) -> None:
    state = replace(before)

    result = call(state, action, NOW, error)

    assert result is changed
    expected = replace(before, **fields, updated_at=NOW) if changed else before
    assert state == expected


REFUSALS = [
    pytest.param(action, status, id=f"{action}-{status}")
    for action, statuses in REFUSED.items()
    for status in sorted(statuses)
]


@pytest.mark.parametrize(("action", "status"), REFUSALS)
def test_refused_transition_raises_and_changes_nothing(action: str, status: PhaseStatus) -> None:
    before = state_in(status)
    state = replace(before)

    with pytest.raises(TransitionError) as caught:
        call(state, action, NOW, "err")

    assert state == before
    assert (caught.value.phase, caught.value.status, caught.value.action) == (
        Phase.INDEX,
        status,
        action,
    )


def test_refusal_table_covers_eleven_cases() -> None:
    assert len(REFUSALS) == 11


def test_transition_error_message_and_code() -> None:
    state = state_in(S.COMPLETED, phase=Phase.INDEX)

    with pytest.raises(TransitionError) as caught:
        state.resume(NOW)

    assert str(caught.value) == "cannot resume phase 'index' while it is completed"
    assert caught.value.code == "invalid_transition"
    assert TransitionError.code == "invalid_transition"


def test_paused_phase_that_started_meanwhile_resumes_to_running() -> None:
    state = PhaseState(phase=Phase.EXTRACT)
    state.pause(T0)
    state.start(T0 + timedelta(seconds=1))

    assert (state.status, state.started_at) == (S.PAUSED, T0 + timedelta(seconds=1))
    resumed = state.resume(NOW)
    assert (resumed, state.status, state.started_at) == (True, S.RUNNING, T0 + timedelta(seconds=1))


# --- transition properties --------------------------------------------------------------------

steps = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.sampled_from([None, "e1", "e2"])), max_size=25
)


def reach(history: list[tuple[str, str | None]]) -> PhaseState:
    """Replay a history of transitions from a fresh state, ignoring the refused ones."""
    state = PhaseState(phase=Phase.CHUNK)
    for i, (action, error) in enumerate(history):
        with contextlib.suppress(TransitionError):
            call(state, action, T0 + timedelta(seconds=i), error)
    return state


@given(history=steps)
def test_each_transition_raises_iff_refused_and_refusal_changes_nothing(
    history: list[tuple[str, str | None]],
) -> None:
    state = PhaseState(phase=Phase.CHUNK)
    for i, (action, error) in enumerate(history):
        before = replace(state)
        now = T0 + timedelta(seconds=i)
        try:
            changed = call(state, action, now, error)
        except TransitionError as exc:
            assert before.status in REFUSED[action]
            assert state == before
            assert (exc.phase, exc.status, exc.action) == (Phase.CHUNK, before.status, action)
            continue
        assert before.status not in REFUSED[action]
        if changed:
            assert state.updated_at == now
        else:
            assert state == before


@given(history=steps, action=st.sampled_from(ACTIONS), error=st.sampled_from([None, "e1"]))
def test_repeating_a_successful_transition_is_a_noop(
    history: list[tuple[str, str | None]], action: str, error: str | None
) -> None:
    state = reach(history)
    assume(state.status not in REFUSED[action])
    call(state, action, NOW, error)
    after_first = replace(state)

    again = call(state, action, NOW + timedelta(seconds=5), error)

    assert again is False
    assert state == after_first


@given(history=steps)
def test_pause_then_resume_restores_the_prior_status(
    history: list[tuple[str, str | None]],
) -> None:
    state = reach(history)
    assume(state.status in (S.NOT_STARTED, S.RUNNING))
    prior = state.status

    assert state.pause(NOW) is True
    assert state.resume(NOW + timedelta(seconds=1)) is True

    assert state.status == prior
    assert state.paused_at is None


@given(before=steps, after=steps)
def test_nothing_leaves_completed(
    before: list[tuple[str, str | None]], after: list[tuple[str, str | None]]
) -> None:
    state = reach(before)
    if state.status in (S.NOT_STARTED, S.RUNNING):
        state.complete(NOW)
    assume(state.status == S.COMPLETED)
    frozen = replace(state)

    for i, (action, error) in enumerate(after):
        try:
            changed = call(state, action, NOW + timedelta(seconds=i + 1), error)
        except TransitionError:
            changed = False
        assert changed is False
        assert state == frozen


# --- rules: helpers ---------------------------------------------------------------------------


def ph(
    status: PhaseStatus = S.NOT_STARTED,
    total: int = 0,
    processed: int = 0,
    failed: int = 0,
    parked: int = 0,
    *,
    started_at: datetime | None = None,
    last_progress_at: datetime | None = None,
    stalled: bool = False,
) -> PhaseState:
    """A phase state; the phase name is set by `job()` from its position."""
    if started_at is None and status not in (S.NOT_STARTED, S.PAUSED):
        started_at = T0
    if last_progress_at is None and status != S.NOT_STARTED:
        # Recent progress by default, so that stall detection stays out of the way.
        last_progress_at = NOW
    return PhaseState(
        phase=Phase.LOAD,
        status=status,
        total=total,
        processed=processed,
        failed=failed,
        parked=parked,
        started_at=started_at,
        last_progress_at=last_progress_at,
        stalled=stalled,
    )


def job(*states: PhaseState) -> list[PhaseState]:
    """Name the given states after the default phases; missing later phases are fresh."""
    named = [replace(s, phase=p) for s, p in zip(states, PHASES, strict=False)]
    return named + [PhaseState(phase=p) for p in PHASES[len(named) :]]


OPEN = JobFacts(sealed=False, expected_documents=None)


def sealed(expected: int, max_failed: int = 0) -> JobFacts:
    return JobFacts(sealed=True, expected_documents=expected, max_failed_documents=max_failed)


L, E, C, X = Phase.LOAD, Phase.EXTRACT, Phase.CHUNK, Phase.INDEX
NS, RUN, PAU, DONE, FAIL = S.NOT_STARTED, S.RUNNING, S.PAUSED, S.COMPLETED, S.FAILED


# --- rules: start, failure, completion --------------------------------------------------------

# fmt: off
RULE_CASES = [
    pytest.param(
        OPEN, job(ph(NS, total=3)),
        [RUN, NS, NS, NS], [L], id="start-phase-with-documents",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 3, 3), ph(NS, total=0)),
        [RUN, NS, NS, NS], [], id="empty-phase-does-not-start",
    ),
    pytest.param(
        OPEN, job(ph(PAU, total=2)),
        [PAU, NS, NS, NS], [], id="paused-phase-with-documents-stays-paused",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 3, 3), ph(RUN, 3, 2, failed=1)),
        [RUN, FAIL, NS, NS], [E], id="fail-over-zero-tolerance",
    ),
    pytest.param(
        OPEN, job(ph(NS, 3, 0, failed=1)),
        [FAIL, NS, NS, NS], [L], id="fail-not_started-with-failures",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 3, 3), ph(PAU, 3, 1, failed=1, parked=1)),
        [RUN, FAIL, NS, NS], [E], id="fail-paused-over-tolerance",
    ),
    pytest.param(
        sealed(5, max_failed=2), job(ph(RUN, 5, 3, failed=2)),
        [DONE, NS, NS, NS], [L], id="complete-load-failures-within-tolerance",
    ),
    pytest.param(
        sealed(5, max_failed=1), job(ph(RUN, 5, 3, failed=2)),
        [FAIL, NS, NS, NS], [L], id="failure-wins-over-completion",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 5, 5)),
        [RUN, NS, NS, NS], [], id="load-needs-seal",
    ),
    pytest.param(
        JobFacts(sealed=True, expected_documents=None), job(ph(RUN, 5, 5)),
        [RUN, NS, NS, NS], [], id="load-needs-expected-count",
    ),
    pytest.param(
        sealed(5), job(ph(RUN, 4, 4)),
        [RUN, NS, NS, NS], [], id="load-waits-for-expected-count",
    ),
    pytest.param(
        sealed(5), job(ph(RUN, 6, 5, parked=1)),
        [RUN, NS, NS, NS], [], id="load-waits-for-parked",
    ),
    pytest.param(
        sealed(5), job(ph(RUN, 5, 5), ph(RUN, 5, 4)),
        [DONE, RUN, NS, NS], [L], id="later-waits-for-all-upstream-output",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 5, 5), ph(RUN, 5, 5)),
        [RUN, RUN, NS, NS], [], id="later-waits-for-upstream-completed",
    ),
    pytest.param(
        sealed(4), job(ph(DONE, 4, 4), ph(RUN, 4, 4, parked=1)),
        [DONE, RUN, NS, NS], [], id="later-waits-for-parked",
    ),
    pytest.param(
        sealed(4, max_failed=1), job(ph(DONE, 4, 4), ph(RUN, 4, 3, failed=1)),
        [DONE, DONE, NS, NS], [E], id="later-completes-failures-within-tolerance",
    ),
    pytest.param(
        sealed(2), job(ph(RUN, 2, 2), ph(RUN, 2, 2), ph(RUN, 2, 2), ph(RUN, 2, 2)),
        [DONE, DONE, DONE, DONE], [L, E, C, X], id="cascade-load-to-index",
    ),
    pytest.param(
        sealed(2), job(ph(RUN, 2, 2), ph(RUN, 2, 2), ph(PAU, 2, 2), ph(RUN, 2, 2)),
        [DONE, DONE, PAU, RUN], [L, E], id="cascade-stops-at-paused-phase",
    ),
    pytest.param(
        sealed(2), job(ph(RUN, 2, 2), ph(FAIL, 2, 2), ph(RUN, 2, 2), ph(RUN, 2, 2)),
        [DONE, FAIL, RUN, RUN], [L], id="failed-phase-does-not-complete",
    ),
    pytest.param(
        sealed(0), job(),
        [DONE, DONE, DONE, DONE], [L, E, C, X], id="zero-documents-complete-everything",
    ),
    pytest.param(
        sealed(2, max_failed=2), job(ph(RUN, 2, 0, failed=2)),
        [DONE, DONE, DONE, DONE], [L, E, C, X], id="every-document-failed-within-tolerance",
    ),
    pytest.param(
        sealed(3), job(ph(DONE, 3, 3), ph(DONE, 3, 3), ph(NS, 3, 0), ph(NS)),
        [DONE, DONE, RUN, NS], [C], id="downstream-starts-when-documents-arrive",
    ),
    pytest.param(
        sealed(3, max_failed=5),
        job(ph(DONE, 3, 3), ph(DONE, 3, 3), ph(DONE, 3, 3), ph(NS, 3, 3)),
        [DONE, DONE, DONE, DONE], [X], id="start-and-complete-in-one-call",
    ),
]
# fmt: on


@pytest.mark.parametrize(("facts", "phases", "statuses", "changed"), RULE_CASES)
def test_apply_rules(
    facts: JobFacts,
    phases: list[PhaseState],
    statuses: list[PhaseStatus],
    changed: list[Phase],
) -> None:
    result = apply_rules(phases, facts, NOW, STALL_S)

    assert [s.status for s in phases] == statuses
    assert result == changed


def test_failure_rule_records_the_reason_and_time() -> None:
    phases = job(ph(RUN, 3, 3), ph(RUN, 3, 1, failed=2))

    apply_rules(phases, sealed(3, max_failed=1), NOW, STALL_S)

    assert phases[1].last_error == "2 failed documents exceed max_failed_documents=1"
    assert phases[1].updated_at == NOW


def test_completion_records_the_time() -> None:
    phases = job(ph(RUN, 2, 2))

    apply_rules(phases, sealed(2), NOW, STALL_S)

    assert phases[0].completed_at == NOW
    assert phases[0].updated_at == NOW


def test_start_rule_records_start_of_paused_phase_so_resume_runs() -> None:
    phases = job(ph(PAU, total=2))

    apply_rules(phases, OPEN, NOW, STALL_S)
    phases[0].resume(NOW)

    assert phases[0].started_at == NOW
    assert phases[0].status == RUN


def test_rules_are_idempotent_on_a_cascade() -> None:
    phases = job(ph(RUN, 2, 2), ph(RUN, 2, 2), ph(RUN, 2, 2), ph(RUN, 2, 2))
    apply_rules(phases, sealed(2), NOW, STALL_S)
    snapshot = [replace(s) for s in phases]

    assert apply_rules(phases, sealed(2), NOW + timedelta(seconds=1), STALL_S) == []
    assert phases == snapshot


# --- rules: stall flag ------------------------------------------------------------------------

AGO_61 = NOW - timedelta(seconds=61)
AGO_60 = NOW - timedelta(seconds=60)
AGO_120 = NOW - timedelta(seconds=120)

# fmt: off
STALL_CASES = [
    pytest.param(
        OPEN, job(ph(RUN, 5, 3, last_progress_at=AGO_61)),
        True, [L], id="stalled-after-61s-with-pending",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 5, 3, last_progress_at=AGO_60)),
        False, [], id="not-stalled-at-exactly-60s",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 5, 3, last_progress_at=NOW - timedelta(seconds=5))),
        False, [], id="not-stalled-with-recent-progress",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 5, 5, last_progress_at=AGO_120)),
        False, [], id="not-stalled-without-pending-work",
    ),
    pytest.param(
        sealed(10), job(ph(RUN, 5, 5, last_progress_at=AGO_120)),
        True, [L], id="stalled-waiting-for-expected-documents",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 5, 3, started_at=AGO_120)),
        False, [], id="progress-time-wins-over-start-time",
    ),
    pytest.param(
        OPEN, [replace(ph(RUN, 5, 3, started_at=AGO_120), phase=L, last_progress_at=None)],
        True, [L], id="start-time-used-without-progress",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 5, 3, last_progress_at=NOW, stalled=True)),
        False, [L], id="progress-clears-stalled",
    ),
    pytest.param(
        OPEN, job(ph(PAU, 5, 3, started_at=AGO_120, last_progress_at=AGO_120, stalled=True)),
        False, [L], id="paused-clears-stalled",
    ),
    pytest.param(
        OPEN, job(ph(PAU, 5, 3, started_at=AGO_120, last_progress_at=AGO_120)),
        False, [], id="paused-is-not-stalled",
    ),
    pytest.param(
        OPEN, job(ph(RUN, 5, 3, last_progress_at=AGO_120, stalled=True)),
        True, [], id="still-stalled-is-no-change",
    ),
    pytest.param(
        sealed(2), job(ph(RUN, 2, 2, last_progress_at=AGO_120, stalled=True)),
        False, [L], id="completion-clears-stalled",
    ),
]
# fmt: on


@pytest.mark.parametrize(("facts", "phases", "stalled", "changed"), STALL_CASES)
def test_stall_flag(
    facts: JobFacts, phases: list[PhaseState], stalled: bool, changed: list[Phase]
) -> None:
    result = apply_rules(phases, facts, NOW, STALL_S)

    assert phases[0].stalled is stalled
    assert result == changed


def test_later_phase_stalls_on_upstream_output() -> None:
    phases = job(ph(RUN, 5, 5), ph(RUN, 5, 2, last_progress_at=AGO_120))

    assert apply_rules(phases, OPEN, NOW, STALL_S) == [E]
    assert [s.stalled for s in phases] == [False, True, False, False]


# --- pending work -----------------------------------------------------------------------------

PENDING_CASES = [
    pytest.param(OPEN, job(ph(RUN, 5, 3)), 0, 2, id="load-open-in-flight"),
    pytest.param(OPEN, job(ph(RUN, 5, 3, failed=2)), 0, 0, id="load-open-all-done"),
    pytest.param(OPEN, job(ph(PAU, 5, 1, parked=4)), 0, 4, id="load-open-parked"),
    pytest.param(sealed(10), job(ph(RUN, 4, 4)), 0, 6, id="load-sealed-not-received"),
    pytest.param(sealed(10), job(ph(RUN, 4, 3, failed=1)), 0, 6, id="load-sealed-failed-done"),
    pytest.param(sealed(3), job(ph(RUN, 5, 3)), 0, 2, id="load-sealed-more-than-expected"),
    pytest.param(sealed(3), job(ph(DONE, 3, 3)), 0, 0, id="load-sealed-done"),
    pytest.param(OPEN, job(ph(RUN, 5, 5), ph(RUN, 4, 2, failed=1)), 1, 2, id="later-in-flight"),
    pytest.param(OPEN, job(ph(RUN, 5, 5), ph(RUN, 5, 5)), 1, 0, id="later-caught-up"),
    pytest.param(
        OPEN, job(ph(RUN, 5, 5), ph(PAU, 5, 2, parked=3)), 1, 3, id="later-parked-is-pending"
    ),
    pytest.param(
        OPEN, job(ph(RUN, 5, 4, failed=1), ph(RUN, 4, 4)), 1, 0, id="later-ignores-upstream-failed"
    ),
]


@pytest.mark.parametrize(("facts", "phases", "index", "expected"), PENDING_CASES)
def test_pending_work(facts: JobFacts, phases: list[PhaseState], index: int, expected: int) -> None:
    assert pending_work(phases, index, facts) == expected


# --- rules: properties ------------------------------------------------------------------------

phase_states = st.builds(
    ph,
    status=st.sampled_from(list(S)),
    total=st.integers(0, 6),
    processed=st.integers(0, 6),
    failed=st.integers(0, 3),
    parked=st.integers(0, 2),
    last_progress_at=st.sampled_from([NOW, AGO_61, AGO_120]),
    stalled=st.booleans(),
)
facts_strategy = st.builds(
    JobFacts,
    sealed=st.booleans(),
    expected_documents=st.one_of(st.none(), st.integers(0, 6)),
    max_failed_documents=st.integers(0, 2),
)


@given(states=st.lists(phase_states, min_size=4, max_size=4), facts=facts_strategy)
def test_rules_invariants(states: list[PhaseState], facts: JobFacts) -> None:
    phases = job(*states)
    before = [replace(s) for s in phases]

    changed = apply_rules(phases, facts, NOW, STALL_S)

    assert changed == [
        b.phase
        for b, a in zip(before, phases, strict=True)
        if (b.status, b.stalled) != (a.status, a.stalled)
    ]
    for i, (b, a) in enumerate(zip(before, phases, strict=True)):
        if b.status == DONE:
            assert a.status == DONE
        if a.status == DONE and b.status != DONE and i > 0:
            assert phases[i - 1].status == DONE
        if a.stalled:
            assert a.status == RUN
        if b.status == FAIL:
            assert a.status == FAIL
    # A second pass finds nothing more to do.
    again = [replace(s) for s in phases]
    assert apply_rules(phases, facts, NOW, STALL_S) == []
    assert phases == again
