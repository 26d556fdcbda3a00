-- Idempotency-Key of POST /api/jobs: a client that retries a submission with the same key
-- within 24 hours gets the job the first request created, not a second one. The key is
-- written in the same transaction as that job. Portable SQL for SQLite and PostgreSQL.

CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,                 -- the header's value (printable ASCII, <= 200)
    fingerprint TEXT NOT NULL,            -- SHA-256 of the request body: a reuse with another body is refused
    job_id BIGINT NOT NULL,               -- the job the first request created
    created_at DOUBLE PRECISION NOT NULL  -- keys older than 24 hours are forgotten
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
