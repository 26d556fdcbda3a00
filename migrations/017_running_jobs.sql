-- Speed at scale (issue 17): every claim and every finish moved each job's entries in
-- jobs_status (status, type) and jobs_root_status (root_id, status), two full indexes
-- over every job ever stored, for readers that only ever ask for running jobs (a type's
-- running count, a tree's running jobs). One partial index over the running jobs serves
-- them; pending and finished jobs are counted by the counters (quaero/counts.py and the
-- n_* columns). Queries send status = 'running' as SQL text (quaero.models.literal), so
-- that PostgreSQL's generic plans can use the partial indexes too.
DROP INDEX jobs_status;
DROP INDEX jobs_root_status;
CREATE INDEX jobs_running ON jobs (root_id, type) WHERE status = 'running';
