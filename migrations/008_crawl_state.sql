-- The crawler's crawl-wide state (issue 14), shared by every worker of every process:
-- per page its shortest known link depth, per host the politeness schedule. Rows belong
-- to one crawl (root_id) and are deleted with its tree. Portable SQL (SQLite, PostgreSQL).

CREATE TABLE crawl_pages (
    root_id BIGINT NOT NULL,
    url TEXT NOT NULL,            -- normalised, as the page job's dedup_key
    depth INTEGER NOT NULL,       -- the shortest link distance from the start page found so far
    links TEXT,                   -- JSON list of the links the crawl may follow, once fetched
    expanded INTEGER,             -- the depth its links were last followed from
    PRIMARY KEY (root_id, url)
);

CREATE TABLE crawl_hosts (
    root_id BIGINT NOT NULL,
    host TEXT NOT NULL,           -- scheme://host:port
    slot_at DOUBLE PRECISION NOT NULL,  -- the time (epoch s) of the last request slot taken
    PRIMARY KEY (root_id, host)
);
