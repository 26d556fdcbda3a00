-- Descendant counters: `n_open` (pending + running) replaces n_pending and n_running.
-- A claim (pending -> running) then touches no ancestor row; how many descendants run is
-- read from the rows themselves (few: at most the busy workers plus waiting parents).
ALTER TABLE jobs ADD COLUMN n_open INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET n_open = n_pending + n_running;
ALTER TABLE jobs DROP COLUMN n_pending;
ALTER TABLE jobs DROP COLUMN n_running;
