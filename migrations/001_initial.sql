-- The metadata store: jobs, their logs, and the workers that run them.
-- Portable SQL for SQLite and PostgreSQL; {{pk}} becomes each dialect's auto id.
-- Times are seconds since the epoch (UTC), as DOUBLE PRECISION.

CREATE TABLE jobs (
    id {{pk}},
    parent_id BIGINT,                     -- NULL for a root
    root_id BIGINT NOT NULL,              -- the top of the tree (itself for a root)
    path TEXT NOT NULL,                   -- ancestor ids, "/1/5/" (a root: "/")
    depth INTEGER NOT NULL DEFAULT 0,     -- 0 for a root
    type TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,                 -- pending, running, completed, failed, cancelled
    outcome TEXT,                         -- own work's result while descendants still run
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    payload TEXT NOT NULL DEFAULT '{}',   -- JSON
    result TEXT,                          -- JSON
    error TEXT,
    traceback TEXT,
    dedup_key TEXT,                       -- unique within a tree when set
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    priority INTEGER NOT NULL DEFAULT 0,
    timeout DOUBLE PRECISION,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,   -- own progress, 0..1
    n_pending INTEGER NOT NULL DEFAULT 0,           -- descendants by status
    n_running INTEGER NOT NULL DEFAULT 0,
    n_completed INTEGER NOT NULL DEFAULT 0,
    n_failed INTEGER NOT NULL DEFAULT 0,
    n_cancelled INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    run_after DOUBLE PRECISION,           -- not before this time (retry back-off)
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    worker_id TEXT,                       -- lease holder
    lease_expires_at DOUBLE PRECISION
);

-- The roots page: newest first, optionally by status or type.
CREATE INDEX jobs_roots ON jobs (id) WHERE parent_id IS NULL;
CREATE INDEX jobs_roots_status ON jobs (status, id) WHERE parent_id IS NULL;
CREATE INDEX jobs_roots_type ON jobs (type, id) WHERE parent_id IS NULL;
-- Children of a job, optionally by status.
CREATE INDEX jobs_parent ON jobs (parent_id, id);
CREATE INDEX jobs_parent_status ON jobs (parent_id, status, id);
-- Whole-tree operations (cancel, delete, recount) and crawl de-duplication.
CREATE INDEX jobs_root_status ON jobs (root_id, status);
CREATE UNIQUE INDEX jobs_root_dedup ON jobs (root_id, dedup_key);
-- Stats, the reaper (expired leases) and the orphan sweep (pending, not queued).
CREATE INDEX jobs_status ON jobs (status, type);
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_pending ON jobs (updated_at) WHERE status = 'pending';

CREATE TABLE job_logs (
    id {{pk}},
    job_id BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX job_logs_job ON job_logs (job_id, id);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    threads INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    last_heartbeat DOUBLE PRECISION NOT NULL,
    stopped_at DOUBLE PRECISION
);
