-- Roots with failed descendants (issue 14): `GET /api/jobs?has_failures=true` and the
-- page's "with failures" chip read this partial index instead of scanning every root.
-- The condition is spelled as the queries spell it (quaero/queries.py HAS_FAILURES).
CREATE INDEX jobs_roots_failed ON jobs (id) WHERE parent_id IS NULL AND n_failed > 0;
