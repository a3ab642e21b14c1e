"""SQL of the benchmark baselines: not product code, only what the service is compared with.

The naive baseline is how a first version would keep phase counters: one transaction per
outcome, which upserts the document's row and then recounts its (job, phase) from
`ingestion_document_status`. The COPY limit writes the same rows into an index-free temporary
table, the most a single Postgres round trip can take in.
"""

from __future__ import annotations

# $1 job_id, $2 doc_id, $3 phase, $4 outcome
NAIVE_UPSERT_OUTCOME = """
INSERT INTO ingestion_document_status (job_id, doc_id, phase, outcome, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (job_id, doc_id, phase) DO UPDATE
SET outcome = EXCLUDED.outcome, updated_at = EXCLUDED.updated_at
"""

# $1 job_id, $2 phase
NAIVE_RECOUNT_PHASE = """
UPDATE ingestion_phase_status AS p
SET total = c.total,
    processed = c.processed,
    failed = c.failed,
    parked = c.parked,
    last_progress_at = now(),
    updated_at = now()
FROM (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE outcome = 'processed') AS processed,
           count(*) FILTER (WHERE outcome = 'failed') AS failed,
           count(*) FILTER (WHERE outcome = 'parked') AS parked
    FROM ingestion_document_status
    WHERE job_id = $1 AND phase = $2
) AS c
WHERE p.job_id = $1 AND p.phase = $2
"""

COPY_TABLE = "bench_copy_limit"

# A temporary table (never WAL-logged) with the columns and NOT NULLs of the real one, but no
# primary key, no other index and no defaults: the COPY writes every column itself.
CREATE_COPY_TABLE = f"""
CREATE TEMPORARY TABLE {COPY_TABLE} (LIKE ingestion_document_status)
"""

COPY_COLUMNS = (
    "job_id",
    "doc_id",
    "phase",
    "outcome",
    "reason",
    "error",
    "attempts",
    "retry_topic",
    "retry_value",
    "seq",
    "first_seen_at",
    "updated_at",
)

TRUNCATE_COPY_TABLE = f"TRUNCATE {COPY_TABLE}"

# Per (job, phase) counts of what the COPY wrote, to check it like the other variants.
COUNT_COPIED = f"""
SELECT job_id, phase,
       count(*) AS total,
       count(*) FILTER (WHERE outcome = 'processed') AS processed
FROM {COPY_TABLE}
GROUP BY job_id, phase
"""

# Between runs: every variant starts from empty tables.
RESET_TABLES = """
TRUNCATE ingestion_jobs, ingestion_phase_status, ingestion_document_status, outbox,
         consumer_offsets
"""

# What every variant's counters are checked against after a run.
PHASE_COUNTERS = """
SELECT job_id, phase, total, processed, failed, parked
FROM ingestion_phase_status
ORDER BY job_id, position
"""

DOCUMENT_ROWS = "SELECT count(*) FROM ingestion_document_status"
