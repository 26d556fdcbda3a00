-- Monotonic totals of finished jobs for /metrics (issue 14): written in the transaction
-- that finishes the jobs, never lowered (a DELETE of jobs leaves them alone), read by
-- every web process, so a scrape sees what every worker of every machine finished.
CREATE TABLE job_totals (
    type TEXT NOT NULL,
    status TEXT NOT NULL,             -- completed, failed or cancelled
    bucket TEXT NOT NULL,             -- the run time's histogram bucket ("0.1", ..., "+Inf"; "" never ran)
    shard INTEGER NOT NULL,           -- the finishing process's pid mod 16: concurrent finishers
                                      -- (PostgreSQL) seldom wait for one another's row lock
    jobs BIGINT NOT NULL DEFAULT 0,
    seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (type, status, bucket, shard)
);
