"""Dead letters: what every worker sends to `kb.dlq` for input it cannot take."""

from __future__ import annotations

import base64

from aiokafka import ConsumerRecord

from service.contracts import DlqMessage

# (topic, key, value) as sent by the workers.
Outgoing = list[tuple[str, bytes | None, bytes]]


def dlq_value(
    record: ConsumerRecord, reason: str, detail: str, job_id: str | None, doc_id: str | None
) -> bytes:
    """The `kb.dlq` value for a record: its reason, detail, position and original bytes."""
    return DlqMessage(
        reason=reason,
        detail=detail[:2000],
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        original_b64=base64.b64encode(record.value or b"").decode(),
        job_id=job_id,
        doc_id=doc_id,
    ).to_bytes()
