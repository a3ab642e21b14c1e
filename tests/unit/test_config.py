"""Settings from the environment, topic namespaces, and secrets kept out of logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from service.config import Settings, Topics
from service.logging import configure_logging


def test_settings_come_from_kb_ingest_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_INGEST_KAFKA_BOOTSTRAP", "broker:9093")
    monkeypatch.setenv("KB_INGEST_TOPIC_DOCUMENTS", "acme.documents")
    monkeypatch.setenv("KB_INGEST_PARTITIONS_DOCUMENTS", "24")
    monkeypatch.setenv("KB_INGEST_DATABASE_URL", "postgresql://kb:hunter2@db/kb")
    settings = Settings()
    assert settings.kafka_bootstrap == "broker:9093"
    assert settings.topics.documents == "acme.documents"
    assert settings.topics.chunks == "kb.chunks"
    assert settings.partitions_documents == 24
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_prefixed_topics_namespace_every_default_name() -> None:
    topics = Topics.prefixed("team-a")
    assert topics.model_dump() == {
        "documents": "team-a.kb.documents",
        "control": "team-a.kb.control",
        "chunks": "team-a.kb.chunks",
        "phase_events": "team-a.kb.phase-events",
        "status": "team-a.kb.status",
        "dlq": "team-a.kb.dlq",
    }


def test_sasl_password_reaches_the_client_options_only() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="svc",
        kafka_sasl_password="s3cr3t",
    )
    options = settings.kafka_client_options()
    assert options["sasl_plain_password"] == "s3cr3t"
    assert "s3cr3t" not in repr(settings)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The service's logging set-up writing to a buffer, then structlog's and logging's defaults."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("INFO", stream=buffer)
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_log_lines_are_json_with_bound_context_and_no_secrets(json_lines: io.StringIO) -> None:
    log = structlog.get_logger("test").bind(job_id="j1", doc_id="d1", phase="extract")
    log.info("something_happened", password="hunter2", token="abc", count=3)
    logging.getLogger("aiokafka.test").warning("from the standard library")
    first, second = (json.loads(line) for line in json_lines.getvalue().splitlines())
    assert first["event"] == "something_happened"
    assert (first["job_id"], first["doc_id"], first["phase"], first["count"]) == (
        "j1",
        "d1",
        "extract",
        3,
    )
    assert first["password"] == first["token"] == "**********"
    assert (second["event"], second["level"]) == ("from the standard library", "warning")
