-- Issue 15, points 5-7: scheduled roots, per-type limits and failure policies.
-- Portable SQL for SQLite and PostgreSQL.

-- What a descendant's failure means for a job: 'ignore' (it completes, failures are
-- counted) or 'fail' (it fails once a descendant failed for good; the rest is cancelled).
ALTER TABLE jobs ADD COLUMN on_child_failure TEXT NOT NULL DEFAULT 'ignore';
-- Why a pending job waits (a type's max_running or rate); cleared by its claim.
ALTER TABLE jobs ADD COLUMN waiting_reason TEXT;

-- One row per schedule and tick: the primary key lets exactly one process (of any
-- number of workers) create the tick's root, in the same transaction as the root.
CREATE TABLE schedule_ticks (
    schedule TEXT NOT NULL,               -- [[schedules]] name
    tick DOUBLE PRECISION NOT NULL,       -- the planned time (epoch seconds)
    root_id BIGINT NOT NULL,              -- the root the tick created
    created_at DOUBLE PRECISION NOT NULL, -- when it was created (tick jitter = created_at - tick)
    PRIMARY KEY (schedule, tick)
);

-- One row per limited type ([types.<name>]): claims of that type lock it (PostgreSQL:
-- the upsert's row lock; SQLite: BEGIN IMMEDIATE), count the type's running jobs and
-- take a token of its rate's bucket, so limits hold across every worker process.
CREATE TABLE type_limits (
    type TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,     -- the rate's token bucket
    refilled_at DOUBLE PRECISION NOT NULL
);
