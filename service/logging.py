"""structlog set-up: JSON lines on stderr, context bound per job/doc/phase."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

SECRET_KEYS = frozenset({"password", "token", "api_token", "database_url", "authorization"})


def _redact_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in SECRET_KEYS.intersection(event):
        event[key] = "**********"
    return event


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to JSON lines on `stream` (default: stderr)."""
    stream = sys.stderr if stream is None else stream
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING) if numeric < logging.WARNING else numeric)
    # aiokafka is chatty at INFO about group membership; warnings and errors still show.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    """A structlog logger named after its module."""
    return structlog.get_logger(name)
