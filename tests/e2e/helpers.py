"""What the end-to-end tests share: kcat in and out, message schemas, expected KB rows, polling.

Everything here talks to the service the way a client would: `kcat` for Kafka, HTTP for the
API, plain SQL on the tables DESIGN §3 makes a contract. Expectations are recomputed with the
service's own pure domain functions, from the very bytes that were sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from jsonschema import Draft202012Validator

from service.domain.chunking import ChunkingParams, chunk_text
from service.domain.documents import normalize_content_type
from service.domain.extraction import extract_text

KCAT = "/usr/bin/kcat"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
# kcat splits each input line at the first tab into key and value. Compact JSON escapes every
# control character inside strings, so neither a tab nor a newline can occur in a value.
KEY_SEPARATOR = "\t"
PHASE_NAMES = ("load", "extract", "chunk", "index")

T = TypeVar("T")


# -- message schemas -------------------------------------------------------------------------


def schema_validator(name: str) -> Draft202012Validator:
    """A validator for one committed schema, e.g. ``document`` → schemas/document.v1.json."""
    schema = json.loads((SCHEMAS / f"{name}.v1.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def assert_valid(validator: Draft202012Validator, message: dict[str, Any]) -> None:
    """Fail with every schema error of `message`, not just the first."""
    errors = sorted(validator.iter_errors(message), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


def compact_json(message: dict[str, Any]) -> str:
    """One message as a single line of compact UTF-8 JSON."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


# -- kcat --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaRecord:
    """One record read back by kcat."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None

    def json(self) -> dict[str, Any]:
        assert self.value is not None, f"null value at {self.partition}/{self.offset}"
        decoded: dict[str, Any] = json.loads(self.value)
        return decoded


def kcat_produce(bootstrap: str, topic: str, records: Sequence[tuple[str, str]]) -> None:
    """Write (key, value) records to `topic` with kcat, one line each, in order.

    Raises:
        AssertionError: a key or value holds the separator or a newline, or kcat failed.
    """
    lines = []
    for key, value in records:
        for part in (key, value):
            assert KEY_SEPARATOR not in part and "\n" not in part, f"unsafe for kcat: {part[:80]}"
        lines.append(f"{key}{KEY_SEPARATOR}{value}\n")
    result = subprocess.run(
        [KCAT, "-P", "-b", bootstrap, "-t", topic, "-K", r"\t", "-X", "acks=all", "-m", "30"],
        input="".join(lines).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kcat -P {topic} failed: {result.stderr.decode()[-2000:]}"
    assert b"ERROR" not in result.stderr.upper(), result.stderr.decode()[-2000:]


def kcat_consume(bootstrap: str, topic: str) -> list[KafkaRecord]:
    """Every record of `topic` from the beginning to the current end, with kcat (-J envelopes).

    Records are returned per partition in offset order.
    """
    result = subprocess.run(
        [KCAT, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kcat -C {topic} failed: {result.stderr.decode()[-2000:]}"
    records = []
    for line in result.stdout.decode().splitlines():
        envelope = json.loads(line)
        records.append(
            KafkaRecord(
                topic=envelope["topic"],
                partition=envelope["partition"],
                offset=envelope["offset"],
                key=envelope["key"],
                value=envelope["payload"],
            )
        )
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


async def akcat_produce(bootstrap: str, topic: str, records: Sequence[tuple[str, str]]) -> None:
    """`kcat_produce` off the event loop."""
    await asyncio.to_thread(kcat_produce, bootstrap, topic, records)


async def akcat_consume(bootstrap: str, topic: str) -> list[KafkaRecord]:
    """`kcat_consume` off the event loop."""
    return await asyncio.to_thread(kcat_consume, bootstrap, topic)


# -- documents and what the KB must hold -------------------------------------------------------


@dataclass(frozen=True)
class SentDocument:
    """A document message as sent, with the raw content the service must extract from it."""

    message: dict[str, Any]
    raw: bytes

    @property
    def job_id(self) -> str:
        return str(self.message["job_id"])

    @property
    def kb_id(self) -> str:
        return str(self.message["kb_id"])

    @property
    def doc_id(self) -> str:
        return str(self.message["doc_id"])

    @property
    def content_type(self) -> str:
        return normalize_content_type(str(self.message["content_type"]))

    def line(self) -> tuple[str, str]:
        """The (key, value) kcat writes: keyed by job_id, like every client must."""
        return self.job_id, compact_json(self.message)


def document(
    job_id: str,
    kb_id: str,
    doc_id: str,
    content_type: str,
    raw: bytes,
    *,
    as_base64: bool,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> SentDocument:
    """A document message carrying `raw` inline, as `text` or as `content_b64`."""
    message: dict[str, Any] = {
        "type": "document",
        "v": 1,
        "job_id": job_id,
        "kb_id": kb_id,
        "doc_id": doc_id,
        "content_type": content_type,
    }
    if as_base64:
        message["content_b64"] = base64.b64encode(raw).decode()
    else:
        message["text"] = raw.decode()
    if title is not None:
        message["title"] = title
    if metadata is not None:
        message["metadata"] = metadata
    return SentDocument(message, raw)


def control(command: str, job_id: str, **fields: Any) -> dict[str, Any]:
    """A control message (create, seal, ...)."""
    return {"type": "control", "v": 1, "command": command, "job_id": job_id, **fields}


@dataclass
class ExpectedKb:
    """The exact rows `kb_documents` and `kb_chunks` must hold for a set of sent documents."""

    documents: set[tuple[str, str, str, str, str | None, str, int]] = field(default_factory=set)
    chunks: set[tuple[str, str, int, str]] = field(default_factory=set)

    @classmethod
    def of(cls, docs: Iterable[SentDocument], params: ChunkingParams) -> ExpectedKb:
        """Recompute with the pure domain: extract_text, then chunk_text, per document."""
        expected = cls()
        for doc in docs:
            text = extract_text(doc.raw, doc.content_type)
            chunks = chunk_text(text, params)
            expected.documents.add(
                (
                    doc.kb_id,
                    doc.doc_id,
                    doc.job_id,
                    doc.content_type,
                    doc.message.get("title"),
                    text,
                    len(chunks),
                )
            )
            expected.chunks.update(
                (doc.kb_id, doc.doc_id, n, chunk) for n, chunk in enumerate(chunks)
            )
        return expected


def assert_same_rows(actual: Sequence[tuple[Any, ...]], expected: set[Any], what: str) -> None:
    """Exact equality of a row multiset with a set, with a readable summary when it differs."""
    found = set(actual)
    missing = expected - found
    extra = found - expected
    duplicates = len(actual) - len(found)
    if missing or extra or duplicates:

        def sample(rows: set[Any]) -> list[str]:
            return [repr(tuple(str(c)[:60] for c in row)) for row in sorted(rows)[:5]]

        raise AssertionError(
            f"{what}: {len(actual)} rows, {len(expected)} expected; "
            f"{len(missing)} missing {sample(missing)}; {len(extra)} unexpected {sample(extra)}; "
            f"{duplicates} duplicates"
        )


# -- phases and status -------------------------------------------------------------------------


def counters(phases: Iterable[dict[str, Any]]) -> dict[str, tuple[str, int, int, int, int]]:
    """phase → (status, total, processed, failed, parked), from rows, API views or events."""
    return {
        str(p["phase"]): (
            str(p["status"]),
            int(p["total"]),
            int(p["processed"]),
            int(p["failed"]),
            int(p["parked"]),
        )
        for p in phases
    }


def all_done(n: int) -> dict[str, tuple[str, int, int, int, int]]:
    """Counters of a job whose `n` documents all went through every phase."""
    return {phase: ("completed", n, n, 0, 0) for phase in PHASE_NAMES}


# -- waiting -----------------------------------------------------------------------------------


async def wait_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    within: float,
    what: str,
    interval: float = 0.25,
) -> T:
    """Poll `probe` until `done(value)`; fail with the last value after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within:.0f}s for {what}; last: {value}")
        await asyncio.sleep(interval)
