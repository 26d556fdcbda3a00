-- Failure triage (issue 16): a tree's jobs at one depth (GET /api/jobs/<id>/descendants
-- ?depth=N), in id order, and their number, as a range of this index rather than a
-- walk of the whole tree on jobs_root_id (100,000 rows for a level of 999). Depth
-- first: no query without a depth can use it, so SQLite's plans for those stay as
-- they were even before ANALYZE has seen it.
CREATE INDEX jobs_depth_root ON jobs (depth, root_id, id);
