-- Fencing: every claim (pending -> running) takes a new lease epoch, never reused, so a
-- stale attempt (its lease taken over, or the job cancelled and retried) can be told
-- apart from the live one even on the same worker. Each write of an attempt (spawn,
-- log, progress, finish, lease renewal) names its epoch in its WHERE clause.
ALTER TABLE jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
-- A tree's jobs by id: retention deletes a tree in bounded batches, highest ids first.
CREATE INDEX jobs_root_id ON jobs (root_id, id);
