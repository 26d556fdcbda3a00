"""Bulk seeding of a big jobs database for P3, in quaero's own schema.

The schema comes from quaero's migrations (`quaero.db.open_database`); the rows are
generated inside SQLite by `INSERT … SELECT` over recursive CTEs, in one transaction
per table, so a million jobs take seconds rather than minutes. The data looks like
finished crawls: `roots` crawler roots (ids 1, G+1, 2G+1, … with G = children + 1), each
followed by its `crawl_page` children with payloads, results (links included), errors
on a few; the newest roots are still running with pending and running children; each
root's descendant counters match its children, and the ledger of jobs by type
and status (quaero/counts.py) matches the rows. Logs: two lines per job for the first
jobs, then `heavy_logs` lines on the newest root (the job whose log a user tails).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SEED_VERSION = 1  # bump when the generated data changes, to rebuild cached databases
DAY = 86_400.0

JOBS_SQL = """
WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < :n),
numbered AS (
    SELECT x, (x - 1) / :g AS r, (x - 1) % :g AS k FROM seq
),
shaped AS (
    SELECT x, r, k,
        'https://site-' || r || '.example/' || CASE WHEN k = 0 THEN '' ELSE 'p/' || k END
            AS url,
        CASE
            WHEN k = 0 AND r >= :running_from THEN 'running'
            WHEN k = 0 AND r % 97 = 13 THEN 'failed'
            WHEN k = 0 THEN 'completed'
            WHEN r >= :running_from AND k <= 40 THEN 'completed'
            WHEN r >= :running_from AND k <= 45 THEN 'running'
            WHEN r >= :running_from THEN 'pending'
            WHEN k % 23 = 0 THEN 'failed'
            ELSE 'completed'
        END AS status,
        :t0 + r * :spacing + k * 0.05 AS created
    FROM numbered
)
INSERT INTO jobs (
    id, parent_id, root_id, path, depth, type, name, status, outcome, payload, result,
    error, traceback, dedup_key, attempts, max_attempts, priority, progress,
    created_at, updated_at, started_at, finished_at, worker_id, lease_expires_at
)
SELECT
    x,
    CASE WHEN k = 0 THEN NULL ELSE r * :g + 1 END,
    r * :g + 1,
    CASE WHEN k = 0 THEN '/' ELSE '/' || (r * :g + 1) || '/' END,
    CASE WHEN k = 0 THEN 0 ELSE 1 END,
    CASE WHEN k = 0 THEN 'crawler' ELSE 'crawl_page' END,
    url,
    status,
    CASE WHEN k = 0 AND status = 'running' THEN 'completed' END,
    CASE WHEN k = 0
        THEN '{"url": "' || url || '", "depth": 1, "max_pages": 1000, "same_host": true, '
             || '"include": [], "exclude": [], "delay": 0.0, "respect_robots": null}'
        ELSE '{"url": "' || url || '", "depth": 1, "crawl": {"max_depth": 1, '
             || '"max_pages": 1000, "same_host": true, "include": [], "exclude": [], '
             || '"delay": 0.0, "respect_robots": true, "start_host": "site-' || r
             || '.example:443"}}'
    END,
    CASE
        WHEN k = 0 AND status = 'completed' THEN '{"pages": ' || (:g - 1) || '}'
        WHEN status = 'completed' THEN
            '{"url": "' || url || '", "status_code": 200, "content_type": "text/html", '
            || '"title": "Page ' || k || ' of site ' || r || '", "bytes": ' || (8000 + k * 37)
            || ', "links": ["https://site-' || r || '.example/", "https://site-' || r
            || '.example/p/' || (k % 9 + 1) || '", "https://site-' || r || '.example/about", '
            || '"https://site-' || r || '.example/contact", "https://other.example/x/' || k
            || '", "https://site-' || r || '.example/p/' || (k % 17 + 1) || '"], '
            || '"depth": 1, "elapsed_ms": ' || (40 + k % 60) || ', "final_url": "' || url
            || '", "truncated": false}'
    END,
    CASE WHEN status = 'failed' THEN 'HTTPError: HTTP 503 for ' || url END,
    CASE WHEN status = 'failed' THEN
        'Traceback (most recent call last):' || char(10)
        || '  File "quaero/worker.py", line 58, in _execute' || char(10)
        || '    result = executor.run(ctx)' || char(10)
        || '  File "quaero/executors/crawler.py", line 161, in run' || char(10)
        || '    raise requests.HTTPError(f"HTTP {page.status_code} for {url}")' || char(10)
        || 'requests.exceptions.HTTPError: HTTP 503 for ' || url
    END,
    CASE WHEN k = 0 THEN NULL ELSE url END,
    CASE WHEN status = 'pending' THEN 0 WHEN status = 'failed' THEN 3 ELSE 1 END,
    3,
    0,
    CASE WHEN status IN ('completed', 'failed') THEN 1.0 ELSE 0.0 END,
    created,
    created + 1.5,
    CASE WHEN status = 'pending' THEN NULL ELSE created + 0.2 END,
    CASE WHEN status IN ('completed', 'failed') THEN created + 1.5 END,
    CASE WHEN status = 'running' AND k > 0 THEN 'bench-host:1:abcdef' END,
    CASE WHEN status = 'running' AND k > 0 THEN :t0 + 400 * 86400.0 END
FROM shaped
"""

COUNTERS_SQL = """
UPDATE jobs SET
    n_open = c.p + c.ru, n_completed = c.co, n_failed = c.f, n_cancelled = 0
FROM (
    SELECT parent_id,
        SUM(status = 'pending') AS p, SUM(status = 'running') AS ru,
        SUM(status = 'completed') AS co, SUM(status = 'failed') AS f
    FROM jobs WHERE parent_id IS NOT NULL GROUP BY parent_id
) AS c
WHERE jobs.id = c.parent_id
"""

LOGS_SQL = """
WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < :n)
INSERT INTO job_logs (id, job_id, level, message, created_at)
SELECT
    x,
    CASE WHEN x <= :spread THEN (x + 1) / 2 ELSE :heavy_job END,
    CASE WHEN x % 50 = 0 THEN 'error' WHEN x % 10 = 0 THEN 'warning'
         WHEN x % 7 = 0 THEN 'debug' ELSE 'info' END,
    CASE WHEN x % 2 = 1
        THEN 'GET https://site.example/p/' || x || ' -> 200 text/html, ' || (8000 + x % 997)
             || ' bytes, ' || (x % 40) || ' links (' || (x % 13) || ' new)'
        ELSE 'fetched in ' || (40 + x % 60) || ' ms; spawned ' || (x % 13) || ' pages'
    END,
    :t0 + x * 0.5
FROM seq
"""


@dataclass(frozen=True)
class SeedSizes:
    """How much to generate."""

    roots: int
    children_per_root: int
    logs: int
    heavy_logs: int

    @property
    def jobs(self) -> int:
        """Jobs in all."""
        return self.roots * (self.children_per_root + 1)

    @property
    def heavy_job(self) -> int:
        """The id of the job with `heavy_logs` log lines: the newest root."""
        return (self.roots - 1) * (self.children_per_root + 1) + 1

    @property
    def running_from(self) -> int:
        """Roots with this index or higher are still running."""
        return self.roots - max(1, self.roots // 500)


def fingerprint(sizes: SeedSizes, migrations: Path) -> str:
    """A short hash of what a cached database depends on: sizes, generator, schema."""
    h = hashlib.sha256(f"{SEED_VERSION}:{sizes}".encode())
    for path in sorted(migrations.glob("*.sql")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:12]


def seed(path: Path, sizes: SeedSizes) -> dict[str, float]:
    """Create the database at `path` (it must not exist) and fill it; returns timings."""
    from quaero import counts
    from quaero.db import open_database  # the schema exactly as quaero migrates it

    db = open_database(f"sqlite:///{path}")
    db.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -512000")
        conn.execute("PRAGMA temp_store = MEMORY")
        t0 = time.time() - 30 * DAY
        params = {
            "n": sizes.jobs,
            "g": sizes.children_per_root + 1,
            "running_from": sizes.running_from,
            "t0": t0,
            "spacing": 29 * DAY / max(1, sizes.roots),
        }
        timings = {}
        started = time.monotonic()
        conn.execute("BEGIN")
        conn.execute(JOBS_SQL, params)
        conn.execute(COUNTERS_SQL)
        conn.execute(counts.RECOUNT_SQL)  # jobs by type and status, as quaero keeps them
        conn.execute("COMMIT")
        timings["jobs_seconds"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        spread = min(sizes.logs - sizes.heavy_logs, 2 * sizes.jobs)
        conn.execute("BEGIN")
        conn.execute(
            LOGS_SQL,
            {"n": sizes.logs, "spread": spread, "heavy_job": sizes.heavy_job, "t0": t0},
        )
        conn.execute("COMMIT")
        timings["logs_seconds"] = round(time.monotonic() - started, 1)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return timings
