"""Message contracts (DESIGN §3): every message type round-trips through its bytes, `decode`
rejects bad input with a stable reason and the ids it could still read, unknown fields are
ignored, and `decode` never raises, whatever the bytes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.contracts import (
    MESSAGE_TYPES,
    ChunkMessage,
    Command,
    ControlMessage,
    DirectorySource,
    DlqMessage,
    DocumentMessage,
    JobOptions,
    Message,
    Outcome,
    PhaseEventMessage,
    PhaseMarker,
    PhaseOutcome,
    PhaseView,
    Reason,
    Rejection,
    RetryPayload,
    StatusMessage,
    UrisSource,
    decode,
)
from service.domain.jobs import JobStatus, LegacyStatus
from service.domain.phases import Phase, PhaseStatus

MAX = 1024 * 1024
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
T1 = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)


def _phase_views(statuses: list[PhaseStatus]) -> list[PhaseView]:
    return [
        PhaseView(
            phase=phase,
            status=status,
            position=i,
            total=3 if status is not PhaseStatus.NOT_STARTED else 0,
            processed=2 if status is not PhaseStatus.NOT_STARTED else 0,
            failed=1 if status is PhaseStatus.FAILED else 0,
            parked=0,
            stalled=False,
            started_at=T0 if status is not PhaseStatus.NOT_STARTED else None,
            completed_at=T1 if status is PhaseStatus.COMPLETED else None,
            updated_at=T1,
            last_progress_at=T1 if status is not PhaseStatus.NOT_STARTED else None,
            last_error="boom" if status is PhaseStatus.FAILED else None,
        )
        for i, (phase, status) in enumerate(zip(Phase, statuses, strict=True))
    ]


def valid_examples() -> dict[str, list[Message]]:
    """Valid messages of every type in MESSAGE_TYPES, keyed by `type` (shared with other tests)."""
    return {
        "document": [
            DocumentMessage(
                job_id="job-1",
                kb_id="kb.main",
                doc_id="docs/intro.md",
                content_type="text/markdown",
                text="# Intro\n\nHello, wörld ✓",
                title="Intro",
                metadata={"lang": "en", "tags": ["a", "b"], "n": 3, "x": None, "f": 1.5},
            ),
            DocumentMessage(
                job_id="job-1",
                kb_id="kb.main",
                doc_id="report@2024:q1",
                content_type="application/pdf",
                content_b64=base64.b64encode(b"%PDF-1.4 binary \x00\xff").decode(),
            ),
            DocumentMessage(
                job_id="job-1",
                kb_id="kb.main",
                doc_id="remote-1",
                content_type="text/html",
                source_uri="https://example.com/page.html",
            ),
        ],
        "control": [
            ControlMessage(
                command=Command.CREATE,
                job_id="job-1",
                kb_id="kb.main",
                options=JobOptions(max_failed_documents=2),
                source=DirectorySource(path="/data/corpus"),
                request_id="req-1",
            ),
            ControlMessage(
                command=Command.CREATE,
                job_id="job-2",
                kb_id="kb.main",
                source=UrisSource(uris=["file:///tmp/a.txt", "https://example.com/b.md"]),
            ),
            ControlMessage(command=Command.SEAL, job_id="job-1", expected_documents=0),
            ControlMessage(command=Command.PAUSE, job_id="job-1", phase=Phase.EXTRACT),
            ControlMessage(command=Command.RESUME, job_id="job-1"),
            ControlMessage(command=Command.RETRY, job_id="job-1", phase=Phase.INDEX),
        ],
        "status": [
            StatusMessage(
                job_id="job-1",
                kb_id="kb.main",
                version=7,
                status=JobStatus.RUNNING,
                legacy_status=LegacyStatus.RUNNING,
                current_phase=Phase.EXTRACT,
                phases=_phase_views(
                    [
                        PhaseStatus.COMPLETED,
                        PhaseStatus.RUNNING,
                        PhaseStatus.NOT_STARTED,
                        PhaseStatus.NOT_STARTED,
                    ]
                ),
                changed=["extract.status", "progress"],
                emitted_at=T1,
            ),
            # A completed job has no current phase; a job created by a document may lack a kb.
            StatusMessage(
                job_id="job-2",
                kb_id=None,
                version=1,
                status=JobStatus.COMPLETED,
                legacy_status=LegacyStatus.COMPLETED,
                current_phase=None,
                phases=_phase_views([PhaseStatus.COMPLETED] * 4),
                changed=["status"],
                emitted_at=T1,
            ),
        ],
        "dlq": [
            DlqMessage(
                reason=Reason.SCHEMA_VIOLATION,
                detail="doc_id: Field required",
                source_topic="kb.documents",
                partition=3,
                offset=41,
                original_b64=base64.b64encode(b'{"job_id": "job-1"}').decode(),
                job_id="job-1",
            ),
            DlqMessage(
                reason=Reason.INVALID_JSON,
                detail="not UTF-8 JSON",
                source_topic="kb.control",
                partition=0,
                offset=0,
                original_b64=base64.b64encode(b"\xff\xfe").decode(),
            ),
        ],
        "chunk": [
            ChunkMessage(
                job_id="job-1",
                kb_id="kb.main",
                doc_id="docs/intro.md",
                content_type="text/markdown",
                title="Intro",
                metadata={"lang": "en"},
                text="Hello world. Second sentence.",
                chunks=["Hello world.", "Second sentence."],
            ),
            ChunkMessage(
                job_id="job-1",
                kb_id="kb.main",
                doc_id="empty",
                content_type="text/plain",
                text="",
                chunks=[],
            ),
        ],
        "phase-event": [
            PhaseEventMessage(
                job_id="job-1",
                kb_id="kb.main",
                doc_id="docs/intro.md",
                outcomes=[
                    PhaseOutcome(phase=Phase.LOAD, outcome=Outcome.PROCESSED),
                    PhaseOutcome(
                        phase=Phase.EXTRACT,
                        outcome=Outcome.FAILED,
                        reason=Reason.EXTRACT_FAILED,
                        error="bad pdf",
                    ),
                ],
                retry=RetryPayload(topic="kb.documents", value_b64="e30="),
                emitted_at=T0,
            ),
            PhaseEventMessage(
                job_id="job-1",
                doc_id="d2",
                outcomes=[PhaseOutcome(phase=Phase.CHUNK, outcome=Outcome.PARKED)],
                emitted_at=T0,
            ),
        ],
        "phase-marker": [
            PhaseMarker(job_id="job-1", phase=Phase.CHUNK, request_id="req-9"),
            PhaseMarker(job_id="job-1", phase=Phase.LOAD),
        ],
    }


EXAMPLES: list[Message] = [m for ms in valid_examples().values() for m in ms]


def _example_id(message: Message) -> str:
    return f"{message.type}-{EXAMPLES.index(message)}"  # type: ignore[attr-defined]


def _doc(**overrides: Any) -> dict[str, Any]:
    """A valid document as a JSON object, with fields replaced (None removes the field)."""
    data: dict[str, Any] = {
        "type": "document",
        "v": 1,
        "job_id": "job-1",
        "kb_id": "kb-1",
        "doc_id": "doc-1",
        "content_type": "text/plain",
        "text": "hello",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _raw(data: Any) -> bytes:
    return json.dumps(data).encode()


# -- round trip ------------------------------------------------------------------------------


def test_examples_cover_every_message_type() -> None:
    assert set(valid_examples()) == set(MESSAGE_TYPES)
    for name, messages in valid_examples().items():
        assert all(type(m) is MESSAGE_TYPES[name] for m in messages)


@pytest.mark.parametrize("message", EXAMPLES, ids=_example_id)
def test_valid_message_round_trips_through_bytes(message: Message) -> None:
    raw = message.to_bytes()

    decoded = decode(raw, type(message), MAX)

    assert decoded == message
    data = json.loads(raw)
    assert data["type"] == message.type  # type: ignore[attr-defined]
    assert data["v"] == 1


@pytest.mark.parametrize("message", EXAMPLES, ids=_example_id)
def test_unknown_extra_fields_are_ignored(message: Message) -> None:
    data = json.loads(message.to_bytes())
    data["added_in_v2"] = {"nested": [1, 2, 3]}
    data["zz_flag"] = True

    assert decode(_raw(data), type(message), MAX) == message


def test_required_nullable_fields_are_written_as_null() -> None:
    # A completed job's status has current_phase null: leaving it out would break the schema.
    completed = valid_examples()["status"][1]

    data = json.loads(completed.to_bytes())

    assert data["current_phase"] is None
    assert data["kb_id"] is None


def test_optional_fields_that_are_none_are_left_out() -> None:
    doc = valid_examples()["document"][0]

    data = json.loads(doc.to_bytes())

    assert "content_b64" not in data
    assert "source_uri" not in data
    assert data["metadata"]["x"] is None  # a null inside metadata is the client's data: kept


# -- rejections ------------------------------------------------------------------------------

REJECTIONS: list[tuple[str, bytes | None, type[Message], Reason]] = [
    ("not-json", b"this is not json", DocumentMessage, Reason.INVALID_JSON),
    ("empty", b"", DocumentMessage, Reason.INVALID_JSON),
    ("truncated", b'{"type": "document", "job_id": "j', DocumentMessage, Reason.INVALID_JSON),
    ("array", b'[{"type": "document"}]', DocumentMessage, Reason.INVALID_JSON),
    ("string", b'"document"', ControlMessage, Reason.INVALID_JSON),
    ("number", b"42", ControlMessage, Reason.INVALID_JSON),
    ("json-null", b"null", StatusMessage, Reason.INVALID_JSON),
    ("tombstone", None, DocumentMessage, Reason.INVALID_JSON),
    ("invalid-utf8", b'{"job_id": "job-\xc3\x28"}', DocumentMessage, Reason.INVALID_JSON),
    ("lone-continuation", b'{"text": "\x80\x80"}', DocumentMessage, Reason.INVALID_JSON),
    ("latin1", '{"text": "café"}'.encode("latin-1"), DocumentMessage, Reason.INVALID_JSON),
    # Nesting deeper than the parser's recursion limit is bad JSON, not a crash.
    ("deep-array", b"[" * 100_000, DocumentMessage, Reason.INVALID_JSON),
    ("deep-object", b'{"a":' * 100_000, ChunkMessage, Reason.INVALID_JSON),
    ("wrong-v", _raw(_doc(v=2)), DocumentMessage, Reason.SCHEMA_VIOLATION),
    ("empty-object", b"{}", DocumentMessage, Reason.SCHEMA_VIOLATION),
    ("text-and-b64", _raw(_doc(content_b64="aGk=")), DocumentMessage, Reason.SCHEMA_VIOLATION),
    (
        "text-and-uri",
        _raw(_doc(source_uri="file:///tmp/a.txt")),
        DocumentMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    (
        "all-three-contents",
        _raw(_doc(content_b64="aGk=", source_uri="file:///tmp/a.txt")),
        DocumentMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    ("no-content", _raw(_doc(text=None)), DocumentMessage, Reason.SCHEMA_VIOLATION),
    ("empty-content-type", _raw(_doc(content_type="")), DocumentMessage, Reason.SCHEMA_VIOLATION),
    ("metadata-not-object", _raw(_doc(metadata=[1])), DocumentMessage, Reason.SCHEMA_VIOLATION),
    # Metadata that could be read but not written again would fail later, in a worker.
    (
        "metadata-lone-surrogate",
        _raw(_doc(metadata={"k": "\ud800"})),
        DocumentMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    (
        "metadata-too-deep",
        b'{"job_id":"job-1","kb_id":"kb-1","doc_id":"doc-1","content_type":"text/plain",'
        b'"text":"x","metadata":{"m":' + b"[" * 300 + b"]" * 300 + b"}}",
        DocumentMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    (
        "seal-without-expected",
        _raw({"type": "control", "v": 1, "command": "seal", "job_id": "job-1"}),
        ControlMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    (
        "seal-negative-expected",
        _raw({"command": "seal", "job_id": "job-1", "expected_documents": -1}),
        ControlMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    (
        "unknown-command",
        _raw({"command": "delete", "job_id": "job-1"}),
        ControlMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    (
        "create-with-phase",
        _raw({"command": "create", "job_id": "job-1", "phase": "load"}),
        ControlMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    (
        "unknown-phase",
        _raw({"command": "pause", "job_id": "job-1", "phase": "embed"}),
        ControlMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    (
        "no-outcomes",
        _raw({"job_id": "job-1", "doc_id": "d", "outcomes": [], "emitted_at": T0.isoformat()}),
        PhaseEventMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    (
        "status-version-zero",
        _raw(
            {
                **json.loads(valid_examples()["status"][0].to_bytes()),
                "version": 0,
            }
        ),
        StatusMessage,
        Reason.SCHEMA_VIOLATION,
    ),
    ("document-as-control", _raw(_doc()), ControlMessage, Reason.WRONG_TYPE),
    ("chunk-as-document", _raw(_doc(type="chunk")), DocumentMessage, Reason.WRONG_TYPE),
    ("type-not-a-string", _raw(_doc(type=["document"])), DocumentMessage, Reason.WRONG_TYPE),
]


@pytest.mark.parametrize(
    ("raw", "model", "reason"), [c[1:] for c in REJECTIONS], ids=[c[0] for c in REJECTIONS]
)
def test_decode_rejects_with_a_stable_reason(
    raw: bytes | None, model: type[Message], reason: Reason
) -> None:
    result = decode(raw, model, MAX)

    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert result.detail


@pytest.mark.parametrize("model", list(MESSAGE_TYPES.values()), ids=list(MESSAGE_TYPES))
def test_every_type_rejects_a_missing_required_field(model: type[Message]) -> None:
    name = model.model_fields["type"].default
    data = json.loads(valid_examples()[name][0].to_bytes())
    required = [f for f, info in model.model_fields.items() if info.is_required()]
    assert required, f"{name} has no required field"

    for field in required:
        broken = {k: v for k, v in data.items() if k != field}
        result = decode(_raw(broken), model, MAX)

        assert isinstance(result, Rejection), field
        assert result.reason is Reason.SCHEMA_VIOLATION
        assert field in result.detail


@pytest.mark.parametrize(
    ("missing", "expected_ids"),
    [
        ("doc_id", {"job_id": "job-1", "kb_id": "kb-1", "doc_id": None}),
        ("job_id", {"job_id": None, "kb_id": "kb-1", "doc_id": "doc-1"}),
        ("content_type", {"job_id": "job-1", "kb_id": "kb-1", "doc_id": "doc-1"}),
    ],
)
def test_schema_violation_carries_the_readable_ids(
    missing: str, expected_ids: dict[str, str | None]
) -> None:
    result = decode(_raw(_doc(**{missing: None})), DocumentMessage, MAX)

    assert isinstance(result, Rejection)
    assert result.reason is Reason.SCHEMA_VIOLATION
    assert missing in result.detail
    assert {k: getattr(result, k) for k in expected_ids} == expected_ids


def test_wrong_type_carries_the_readable_ids() -> None:
    result = decode(_raw(_doc()), ChunkMessage, MAX)

    assert isinstance(result, Rejection)
    assert result.reason is Reason.WRONG_TYPE
    assert (result.job_id, result.kb_id, result.doc_id) == ("job-1", "kb-1", "doc-1")


@pytest.mark.parametrize(
    "bad_id",
    ["job 1", "job#1", "", "x" * 201, "jöb", "job\n", "job?a=b", "a,b", 42, None],
    ids=repr,
)
@pytest.mark.parametrize("field", ["job_id", "kb_id", "doc_id"])
def test_bad_id_is_a_schema_violation_and_is_not_carried(field: str, bad_id: Any) -> None:
    data = _doc()
    data[field] = bad_id

    result = decode(_raw(data), DocumentMessage, MAX)

    assert isinstance(result, Rejection)
    assert result.reason is Reason.SCHEMA_VIOLATION
    assert getattr(result, field) is None
    good = {"job_id": "job-1", "kb_id": "kb-1", "doc_id": "doc-1"}
    del good[field]
    assert {k: getattr(result, k) for k in good} == good


@pytest.mark.parametrize(
    "good_id", ["a", "x" * 200, "A-Z.a_z:0/9@x", "kb.main", "s3://bucket/key.pdf"]
)
def test_every_allowed_id_character_is_accepted(good_id: str) -> None:
    result = decode(_raw(_doc(job_id=good_id, kb_id=good_id, doc_id=good_id)), DocumentMessage, MAX)

    assert isinstance(result, DocumentMessage)
    assert (result.job_id, result.kb_id, result.doc_id) == (good_id, good_id, good_id)


def test_too_large_is_checked_on_the_raw_bytes() -> None:
    raw = _raw(_doc())

    at_limit = decode(raw, DocumentMessage, len(raw))
    over = decode(raw, DocumentMessage, len(raw) - 1)

    assert isinstance(at_limit, DocumentMessage)
    assert isinstance(over, Rejection)
    assert over.reason is Reason.TOO_LARGE
    assert str(len(raw)) in over.detail


def test_too_large_wins_over_invalid_json() -> None:
    # The size check comes first: a huge value is never parsed.
    result = decode(b"\xff" * 100, DocumentMessage, 99)

    assert isinstance(result, Rejection)
    assert result.reason is Reason.TOO_LARGE


def test_seal_with_expected_documents_is_accepted() -> None:
    raw = _raw(
        {"type": "control", "v": 1, "command": "seal", "job_id": "j", "expected_documents": 5}
    )

    result = decode(raw, ControlMessage, MAX)

    assert isinstance(result, ControlMessage)
    assert result.command is Command.SEAL
    assert result.expected_documents == 5


@pytest.mark.parametrize("content", ["text", "content_b64", "source_uri"])
def test_document_with_exactly_one_content_is_accepted(content: str) -> None:
    value = {"text": "hi", "content_b64": "aGk=", "source_uri": "file:///tmp/a.txt"}[content]
    data = _doc(text=None)
    data[content] = value

    result = decode(_raw(data), DocumentMessage, MAX)

    assert isinstance(result, DocumentMessage)
    assert getattr(result, content) == value


# -- content_bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"text": "héllo ✓"}, "héllo ✓".encode()),
        ({"text": ""}, b""),
        ({"content_b64": base64.b64encode(b"\x00\x01\xffbin").decode()}, b"\x00\x01\xffbin"),
        ({"content_b64": ""}, b""),
        ({"source_uri": "https://example.com/a.pdf"}, None),
    ],
    ids=["text", "empty-text", "b64", "empty-b64", "source-uri"],
)
def test_content_bytes(content: dict[str, str], expected: bytes | None) -> None:
    doc = DocumentMessage(job_id="j", kb_id="k", doc_id="d", content_type="text/plain", **content)

    assert doc.content_bytes() == expected


@pytest.mark.parametrize("bad", ["not base64!", "aGk", "aGk=\n", "a===", "@@@@"])
def test_content_bytes_rejects_invalid_base64(bad: str) -> None:
    doc = DocumentMessage(
        job_id="j", kb_id="k", doc_id="d", content_type="application/pdf", content_b64=bad
    )

    with pytest.raises(ValueError, match="content_b64 is not valid base64"):
        doc.content_bytes()


# -- decode never raises ---------------------------------------------------------------------

MODELS = list(MESSAGE_TYPES.values())

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
ALL_FIELD_NAMES = sorted({name for m in MODELS for name in m.model_fields})


def _assert_decoded_or_rejected(raw: bytes, model: type[Message]) -> None:
    result = decode(raw, model, MAX)

    assert isinstance(result, model | Rejection)
    if isinstance(result, Rejection):
        assert isinstance(result.reason, Reason)
        assert isinstance(result.detail, str)
    else:
        # Whatever decode accepts can be written and read again unchanged.
        assert decode(result.to_bytes(), model, MAX) == result


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), model=st.sampled_from(MODELS))
def test_decode_never_raises_on_arbitrary_bytes(raw: bytes, model: type[Message]) -> None:
    _assert_decoded_or_rejected(raw, model)


@settings(max_examples=300, deadline=None)
@given(
    data=st.dictionaries(st.text(max_size=12), json_values, max_size=8),
    model=st.sampled_from(MODELS),
)
def test_decode_never_raises_on_arbitrary_json_objects(
    data: dict[str, Any], model: type[Message]
) -> None:
    _assert_decoded_or_rejected(_raw(data), model)


@settings(max_examples=500, deadline=None)
@given(
    example=st.sampled_from(EXAMPLES),
    overrides=st.dictionaries(
        st.sampled_from(ALL_FIELD_NAMES) | st.text(max_size=8), json_values, max_size=4
    ),
    dropped=st.sets(st.sampled_from(ALL_FIELD_NAMES), max_size=3),
)
def test_decode_never_raises_on_mutated_valid_messages(
    example: Message, overrides: dict[str, Any], dropped: set[str]
) -> None:
    # Starting from a valid message reaches the validators, not only the JSON parser.
    data = json.loads(example.to_bytes())
    data.update(overrides)
    for name in dropped:
        data.pop(name, None)

    _assert_decoded_or_rejected(_raw(data), type(example))
