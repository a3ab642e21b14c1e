-- Jobs, phases, per-document truth, the KB, the aggregator's offsets and the outbox.

CREATE TABLE ingestion_jobs (
    job_id              text PRIMARY KEY,
    kb_id               text,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    derived_status      text NOT NULL DEFAULT 'pending'
                        CHECK (derived_status IN ('pending', 'running', 'paused', 'completed', 'failed')),
    current_phase       text,
    options             jsonb NOT NULL DEFAULT '{}'::jsonb,
    source              jsonb,
    sealed              boolean NOT NULL DEFAULT false,
    expected_documents  integer CHECK (expected_documents >= 0),
    version             bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    status_emitted_at   timestamptz,
    -- progress not yet published (status events for progress alone are rate limited)
    status_dirty        boolean NOT NULL DEFAULT false
);
CREATE INDEX ingestion_jobs_status_idx ON ingestion_jobs (derived_status, job_id);
CREATE INDEX ingestion_jobs_kb_idx ON ingestion_jobs (kb_id, job_id);

CREATE TABLE ingestion_phase_status (
    job_id            text NOT NULL REFERENCES ingestion_jobs (job_id) ON DELETE CASCADE,
    phase             text NOT NULL,
    position          smallint NOT NULL,
    status            text NOT NULL DEFAULT 'not_started'
                      CHECK (status IN ('not_started', 'running', 'paused', 'completed', 'failed')),
    total             integer NOT NULL DEFAULT 0,
    processed         integer NOT NULL DEFAULT 0,
    failed            integer NOT NULL DEFAULT 0,
    parked            integer NOT NULL DEFAULT 0,
    started_at        timestamptz,
    paused_at         timestamptz,
    completed_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    last_progress_at  timestamptz,
    last_error        text,
    stalled           boolean NOT NULL DEFAULT false,
    -- set by a pause command; becomes status 'paused' once the workers' in-flight work is counted
    pause_requested   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, phase)
);

-- Arrival order of outcomes: parked and failed documents re-enter in this order.
CREATE SEQUENCE ingestion_document_seq;

CREATE TABLE ingestion_document_status (
    job_id         text NOT NULL REFERENCES ingestion_jobs (job_id) ON DELETE CASCADE,
    doc_id         text NOT NULL,
    phase          text NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('processed', 'failed', 'parked', 'retrying')),
    reason         text,
    error          text,
    attempts       integer NOT NULL DEFAULT 1,
    retry_topic    text,
    retry_value    bytea,
    seq            bigint NOT NULL DEFAULT nextval('ingestion_document_seq'),
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, doc_id, phase)
);
CREATE INDEX ingestion_document_status_outcome_idx
    ON ingestion_document_status (job_id, phase, outcome);

CREATE TABLE kb_documents (
    kb_id         text NOT NULL,
    doc_id        text NOT NULL,
    job_id        text NOT NULL,
    title         text,
    content_type  text NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    text          text NOT NULL,
    chunk_count   integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kb_id, doc_id)
);

CREATE TABLE kb_chunks (
    kb_id     text NOT NULL,
    doc_id    text NOT NULL,
    chunk_no  integer NOT NULL,
    text      text NOT NULL,
    tsv       tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    PRIMARY KEY (kb_id, doc_id, chunk_no),
    FOREIGN KEY (kb_id, doc_id) REFERENCES kb_documents (kb_id, doc_id) ON DELETE CASCADE
);
CREATE INDEX kb_chunks_tsv_idx ON kb_chunks USING gin (tsv);

-- The aggregator keeps its Kafka offsets here, in the same transaction as its rows.
CREATE TABLE consumer_offsets (
    group_id     text NOT NULL,
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Messages decided inside a transaction and published after it commits.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    key         bytea,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
