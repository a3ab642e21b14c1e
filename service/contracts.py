"""Pydantic models of every Kafka message (the source of `schemas/`) and the one decoder."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import to_json

from service.domain.documents import ID_PATTERN
from service.domain.jobs import JobStatus, LegacyStatus
from service.domain.phases import Phase, PhaseStatus

Id = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=200)]


def _serialisable(value: dict[str, Any]) -> dict[str, Any]:
    # Free-form JSON must be writable again: a lone surrogate escape or nesting deeper than the
    # serializer allows would otherwise pass decode and then fail `to_bytes` in a worker.
    to_json(value)  # raises ValueError, which validation reports as a schema violation
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_serialisable)]

# Counts are stored as Postgres integers.
MAX_COUNT = 2**31 - 1

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Message(BaseModel):
    """Base of every message: JSON object with `type` and `v`; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_bytes(self) -> bytes:
        """The message as compact UTF-8 JSON; optional fields that are None are left out."""
        # A required field that may be null (status `current_phase` of a completed job) must be
        # written as null: leaving it out would break the message's own schema.
        absent = {
            name
            for name, field in type(self).model_fields.items()
            if not field.is_required() and getattr(self, name) is None
        }
        return self.model_dump_json(exclude=absent).encode()


class DocumentMessage(Message):
    """A document to ingest (`kb.documents`)."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        json_schema_extra={
            "oneOf": [
                {"required": ["text"]},
                {"required": ["content_b64"]},
                {"required": ["source_uri"]},
            ]
        },
    )

    type: Literal["document"] = "document"
    v: Literal[1] = 1
    job_id: Id
    kb_id: Id
    doc_id: Id
    content_type: str = Field(min_length=1, max_length=200)
    text: str | None = None
    content_b64: str | None = None
    source_uri: str | None = Field(default=None, min_length=1, max_length=4096)
    title: str | None = Field(default=None, max_length=1000)
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one_content(self) -> DocumentMessage:
        given = [f for f in ("text", "content_b64", "source_uri") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one of text, content_b64, source_uri is required"
                f" (got {', '.join(given) or 'none'})"
            )
        return self

    def content_bytes(self) -> bytes | None:
        """Inline content as bytes (None for a `source_uri` document).

        Raises:
            ValueError: `content_b64` is not valid base64.
        """
        if self.text is not None:
            return self.text.encode()
        if self.content_b64 is not None:
            try:
                return base64.b64decode(self.content_b64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"content_b64 is not valid base64: {exc}") from exc
        return None


class Command(StrEnum):
    CREATE = "create"
    SEAL = "seal"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"


class JobOptions(BaseModel):
    """Per-job options, set at creation; unknown options from newer clients are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    max_failed_documents: int = Field(default=0, ge=0, le=MAX_COUNT)


class DirectorySource(BaseModel):
    """Every supported file under a directory, read by the service's producer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["directory"] = "directory"
    path: str = Field(min_length=1, max_length=4096)


class UrisSource(BaseModel):
    """A list of `file://` or `http(s)://` URIs, fetched by the service's producer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["uris"] = "uris"
    uris: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        min_length=1, max_length=100_000
    )


Source = Annotated[DirectorySource | UrisSource, Field(discriminator="type")]


class ControlMessage(Message):
    """A job command (`kb.control`)."""

    type: Literal["control"] = "control"
    v: Literal[1] = 1
    command: Command
    job_id: Id
    phase: Phase | None = None
    kb_id: Id | None = None
    options: JobOptions | None = None
    source: Source | None = None
    expected_documents: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    request_id: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _fields_fit_command(self) -> ControlMessage:
        if self.command is Command.SEAL and self.expected_documents is None:
            raise ValueError("seal requires expected_documents")
        if self.phase is not None and self.command in (Command.CREATE, Command.SEAL):
            raise ValueError(f"{self.command} does not take a phase")
        return self


class PhaseView(BaseModel):
    """A phase's state as published and served."""

    model_config = ConfigDict(frozen=True)

    phase: Phase
    status: PhaseStatus
    position: int
    total: int
    processed: int
    failed: int
    parked: int
    stalled: bool
    started_at: datetime | None = None
    paused_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    last_progress_at: datetime | None = None
    last_error: str | None = None


class StatusMessage(Message):
    """An authoritative job status change (`kb.status`)."""

    type: Literal["status"] = "status"
    v: Literal[1] = 1
    job_id: Id
    kb_id: Id | None
    version: int = Field(ge=1)
    status: JobStatus
    legacy_status: LegacyStatus
    current_phase: Phase | None
    phases: list[PhaseView]
    changed: list[str]
    emitted_at: datetime


class DlqMessage(Message):
    """Rejected input with its reason and original bytes (`kb.dlq`)."""

    type: Literal["dlq"] = "dlq"
    v: Literal[1] = 1
    reason: str
    detail: str
    source_topic: str
    partition: int
    offset: int
    original_b64: str
    job_id: str | None = None
    doc_id: str | None = None


class ChunkMessage(Message):
    """A document's extracted text and chunks, internal (`kb.chunks`)."""

    type: Literal["chunk"] = "chunk"
    v: Literal[1] = 1
    job_id: Id
    kb_id: Id
    doc_id: Id
    content_type: str
    title: str | None = None
    metadata: Metadata = Field(default_factory=dict)
    text: str
    chunks: list[str]


class Outcome(StrEnum):
    PROCESSED = "processed"
    FAILED = "failed"
    PARKED = "parked"


class PhaseOutcome(BaseModel):
    """What happened to one document in one phase."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    phase: Phase
    outcome: Outcome
    reason: str | None = None
    error: str | None = Field(default=None, max_length=2000)


class RetryPayload(BaseModel):
    """What a retry re-publishes to re-run a failed document: a topic and the original value."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    topic: str
    value_b64: str


class PhaseEventMessage(Message):
    """Per-document phase outcomes seen by a worker, internal (`kb.phase-events`)."""

    type: Literal["phase-event"] = "phase-event"
    v: Literal[1] = 1
    job_id: Id
    kb_id: Id | None = None
    doc_id: Id
    outcomes: list[PhaseOutcome] = Field(min_length=1)
    retry: RetryPayload | None = None
    emitted_at: datetime


class PhaseMarker(Message):
    """A marker the aggregator sends itself through `kb.phase-events`, internal.

    A pause becomes `paused` only when its marker comes back: every outcome a worker sent for
    that job before the pause took hold sits ahead of the marker in the job's partition, so it
    is counted before the `paused` status is published.
    """

    type: Literal["phase-marker"] = "phase-marker"
    v: Literal[1] = 1
    job_id: Id
    phase: Phase
    marker: Literal["pause"] = "pause"
    request_id: str | None = None


MESSAGE_TYPES: dict[str, type[Message]] = {
    "document": DocumentMessage,
    "control": ControlMessage,
    "status": StatusMessage,
    "dlq": DlqMessage,
    "chunk": ChunkMessage,
    "phase-event": PhaseEventMessage,
    "phase-marker": PhaseMarker,
}


class Reason(StrEnum):
    """Stable rejection codes, carried by `kb.dlq` records and failed documents."""

    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    TOO_LARGE = "too_large"
    WRONG_TYPE = "wrong_type"
    INVALID_CONTENT = "invalid_content"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    EXTRACT_FAILED = "extract_failed"
    FETCH_FAILED = "fetch_failed"
    INVALID_COMMAND = "invalid_command"
    UNKNOWN_JOB = "unknown_job"
    INVALID_TRANSITION = "invalid_transition"
    UNPROCESSABLE = "unprocessable"


@dataclass(frozen=True)
class Rejection:
    """Why a raw value is not a valid message, with the ids that could still be read."""

    reason: Reason
    detail: str
    job_id: str | None = None
    doc_id: str | None = None
    kb_id: str | None = None


M = TypeVar("M", bound=Message)


def decode(raw: bytes | None, model: type[M], max_bytes: int) -> M | Rejection:
    """Decode a raw Kafka value into `model`, or say why not; never raises."""
    if raw is None:
        return Rejection(Reason.INVALID_JSON, "message has no value (tombstone)")
    if len(raw) > max_bytes:
        return Rejection(Reason.TOO_LARGE, f"message of {len(raw)} bytes exceeds {max_bytes}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # too deep: recursion
        return Rejection(Reason.INVALID_JSON, f"not UTF-8 JSON: {exc}"[:500])
    if not isinstance(data, dict):
        return Rejection(Reason.INVALID_JSON, f"expected a JSON object, got {type(data).__name__}")
    ids = _readable_ids(data)
    expected_type = model.model_fields["type"].default
    if data.get("type", expected_type) != expected_type:
        return Rejection(
            Reason.WRONG_TYPE, f"type {data.get('type')!r} where {expected_type!r} belongs", **ids
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return Rejection(Reason.SCHEMA_VIOLATION, _summarise(exc), **ids)
    except Exception as exc:  # a validator bug must not crash a consume loop
        return Rejection(Reason.SCHEMA_VIOLATION, f"{type(exc).__name__}: {exc}"[:500], **ids)


def _readable_ids(data: dict[str, Any]) -> dict[str, str | None]:
    def ok(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) and re.fullmatch(ID_PATTERN, value) else None

    return {"job_id": ok("job_id"), "doc_id": ok("doc_id"), "kb_id": ok("kb_id")}


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:1000]


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema (draft 2020-12) per message type, keyed by file name."""
    schemas: dict[str, dict[str, Any]] = {}
    for name, model in MESSAGE_TYPES.items():
        schema = model.model_json_schema(mode="validation")
        schemas[f"{name}.v1.json"] = {
            "$schema": SCHEMA_DIALECT,
            "$id": f"kb-ingest/{name}.v1.json",
            **schema,
        }
    return schemas
