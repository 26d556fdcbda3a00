-- How many jobs each worker process finished, written with its heartbeat (shown in /api/stats).
ALTER TABLE workers ADD COLUMN jobs_done INTEGER NOT NULL DEFAULT 0;
