"""Settings read from `KB_INGEST_*` environment variables."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Topics(BaseSettings):
    """Topic names; each is configurable (`KB_INGEST_TOPIC_DOCUMENTS`, ...)."""

    model_config = SettingsConfigDict(env_prefix="KB_INGEST_TOPIC_", extra="ignore")

    documents: str = "kb.documents"
    control: str = "kb.control"
    chunks: str = "kb.chunks"
    phase_events: str = "kb.phase-events"
    status: str = "kb.status"
    dlq: str = "kb.dlq"

    @classmethod
    def prefixed(cls, prefix: str) -> Topics:
        """The default names under a prefix (`PREFIX.kb.documents`, ...): one namespace per
        deployment sharing a cluster, or per test run."""
        names = {name: f"{prefix}.{field.default}" for name, field in cls.model_fields.items()}
        return cls.model_validate(names)


class Settings(BaseSettings):
    """Every knob of the service; secrets are `SecretStr` so they never reach a log line."""

    model_config = SettingsConfigDict(env_prefix="KB_INGEST_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_replication_factor: int = Field(default=1, ge=1)
    database_url: SecretStr = SecretStr("postgresql://kb:kb@127.0.0.1:5433/kb")
    database_pool_size: int = Field(default=10, ge=1)

    topics: Topics = Field(default_factory=Topics)
    partitions_documents: int = Field(default=12, ge=1)
    partitions_chunks: int = Field(default=12, ge=1)
    partitions_default: int = Field(default=6, ge=1)

    group_producer: str = "kb-ingest-producer"
    group_consumer: str = "kb-ingest-consumer"
    group_aggregator: str = "kb-ingest-aggregator"

    batch_max_records: int = Field(default=500, ge=1)
    batch_timeout_ms: int = Field(default=500, ge=1)
    max_document_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    max_message_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    chunk_size: int = Field(default=1000, ge=1)
    chunk_overlap: int = Field(default=100, ge=0)
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    fetch_attempts: int = Field(default=3, ge=1)
    stall_after_s: float = Field(default=60.0, gt=0)
    status_progress_interval_s: float = Field(default=1.0, ge=0)
    shutdown_grace_s: float = Field(default=20.0, gt=0)

    api_host: str = "0.0.0.0"
    api_port: int = 8080
    health_port: int = 8081
    api_token: SecretStr | None = None
    log_level: str = "INFO"

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection and security options shared by every aiokafka client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(cafile=self.kafka_ssl_cafile)
        return options
