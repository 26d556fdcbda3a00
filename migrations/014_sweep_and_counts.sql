-- Issue 17: a million jobs cost nothing at the top. Portable SQL (SQLite, PostgreSQL).

-- The orphan sweep (quaero/recovery.py requeue_orphans) never reads the queue: it asks
-- for the unpaused pending jobs of one priority last written before the queue's head
-- was created, a range of this index however many messages wait.
DROP INDEX jobs_pending;
CREATE INDEX jobs_sweep ON jobs (paused, priority, updated_at) WHERE status = 'pending';
-- /api/stats' oldest pending age: the first entry, not a scan of every pending job.
CREATE INDEX jobs_pending_created ON jobs (created_at) WHERE status = 'pending';
