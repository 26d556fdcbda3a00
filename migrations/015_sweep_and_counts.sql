-- Issue 17: a million jobs cost nothing at the top. Portable SQL (SQLite, PostgreSQL).

-- The orphan sweep (quaero/recovery.py requeue_orphans) never reads the queue: it asks
-- for the unpaused pending jobs of one priority last written before the queue's head
-- was created, a range of this index however many messages wait.
DROP INDEX jobs_pending;
CREATE INDEX jobs_sweep ON jobs (paused, priority, updated_at) WHERE status = 'pending';
-- /api/stats' oldest pending age: the first entry, not a scan of every pending job.
CREATE INDEX jobs_pending_created ON jobs (created_at) WHERE status = 'pending';

-- Jobs stored by type and status without a GROUP BY over every job (quaero/counts.py):
-- with `job_totals` (every pending/running -> final move, written as jobs finish) this
-- ledger of the other moves gives them: jobs created and retried (+ open), retried away
-- and deleted (- their status). So a claim or a finish writes nothing more than before.
CREATE TABLE job_counts (
    type TEXT NOT NULL,
    state TEXT NOT NULL,              -- open (pending or running), completed, failed, cancelled
    shard INTEGER NOT NULL,           -- the writing process's pid mod 16, as job_totals
    jobs BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (type, state, shard)
);
-- What is stored now, less what job_totals already counts (quaero/counts.py RECOUNT_SQL).
INSERT INTO job_counts (type, state, shard, jobs)
SELECT type, state, 0, SUM(n) FROM (
    SELECT type, CASE WHEN status IN ('pending', 'running') THEN 'open' ELSE status END AS state,
        COUNT(*) AS n
    FROM jobs GROUP BY type, status
    UNION ALL SELECT type, 'open', SUM(jobs) FROM job_totals GROUP BY type
    UNION ALL SELECT type, status, -SUM(jobs) FROM job_totals GROUP BY type, status
) AS moves GROUP BY type, state;
