-- Failure triage (issue 16): a failed job's error group, computed once when it fails for
-- good (quaero/triage.py normalises the error's variable parts and hashes the rest), so
-- grouping a tree's failures is one indexed query. (Descendants pages and the streamed
-- export walk a tree in id order on jobs_root_id, migrations/005_lease_epoch.sql.)
ALTER TABLE jobs ADD COLUMN error_group TEXT;
-- A tree's failures by cause (GET /api/jobs/<id>/failures, error_group= filters).
CREATE INDEX jobs_root_error_group ON jobs (root_id, error_group, finished_at)
    WHERE error_group IS NOT NULL;
-- Failures by cause across every tree (GET /api/failures, `since`).
CREATE INDEX jobs_error_group ON jobs (error_group, finished_at)
    WHERE error_group IS NOT NULL;
-- A tree's failed jobs newest first (descendants?status=failed&sort=-finished_at) without
-- sorting the tree; partial, so only failing writes it (queries spell out the literal).
CREATE INDEX jobs_root_failed ON jobs (root_id, finished_at) WHERE status = 'failed';
