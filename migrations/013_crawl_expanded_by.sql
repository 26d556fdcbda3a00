-- The page job that claimed a page's re-expansion: if that job's attempt ends before its
-- spawns commit (a crash, a database restart losing the last asynchronous commits), the
-- job's next attempt claims the same pages again (its spawns are de-duplicated by URL).
ALTER TABLE crawl_pages ADD COLUMN expanded_by BIGINT;
