"""P12: failure triage of a huge tree, on SQLite and on PostgreSQL.

One stored crawl tree of `p12_descendants` descendants (root → start page → 999 pages
→ the rest, three levels), of which `p12_failed` failed with 5 causes, each cause's
messages varying in numbers, URLs, addresses and quoted values; one log line per page.
It is seeded in SQL (`INSERT … SELECT` over a recursive sequence, as bench/seed.py) in
quaero's own migrated schema; the error groups are computed by `quaero.triage` from the
stored errors, as a failing job gets it. On each store `run.py web` serves it and a
keep-alive session times, interleaved after a warm-up, `p12_requests` requests each of:
a descendants page (offsets, status, depth, error group, sort), the failure groups (the
tree's and all roots'), and the tree log's tail (levels, after_id). Then the JSON-lines
export is streamed whole (rows/s, and the server's RSS growth meanwhile), and Chromium
opens the root's dialog and its Failures view until the 5 groups show.
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from bench.common import (
    BenchError,
    Quaero,
    RssSampler,
    free_port,
    percentile,
    proc_status_kib,
    write_config,
)
from bench.harness import Context

WARMUP = 5
CAUSES = 5
MIDDLE = 999  # pages at depth 2; the rest hang under them at depth 3
DIALOG_REPS = 5
CHROMIUM = "/usr/bin/chromium"

# {last}: the last id; {step}: every step-th page fails; {t0}: the seed's start time.
JOBS_SQL = """
INSERT INTO jobs (
    id, parent_id, root_id, path, depth, type, name, status, outcome, payload, result,
    error, attempts, max_attempts, priority, progress,
    created_at, updated_at, started_at, finished_at
)
WITH RECURSIVE seq(x) AS (SELECT 3 UNION ALL SELECT x + 1 FROM seq WHERE x < {last}),
pages AS (
    SELECT x, x - 3 AS k,
        CASE WHEN x < 3 + {middle} THEN 2 ELSE 3 + (x % {middle}) END AS parent,
        CASE WHEN x < 3 + {middle} THEN 2 ELSE 3 END AS d,
        CASE WHEN (x - 3) % {step} = 0 THEN 'failed' ELSE 'completed' END AS status,
        'https://site-' || ((x - 3) % 50) || '.example/p/' || (x - 3) AS url
    FROM seq
)
SELECT
    x, parent, 1,
    CASE WHEN d = 2 THEN '/1/2/' ELSE '/1/2/' || parent || '/' END,
    d, 'crawl_page', url, status, status,
    '{{"url": "' || url || '", "depth": ' || d || '}}',
    CASE WHEN status = 'completed' THEN
        '{{"url": "' || url || '", "status_code": 200, "content_type": "text/html", '
        || '"title": "Page ' || k || '", "bytes": ' || (8000 + k % 997) || ', "links": '
        || '["https://site.example/", "https://site.example/p/' || (k % 97) || '"], '
        || '"depth": ' || d || ', "elapsed_ms": ' || (40 + k % 60) || '}}'
    END,
    CASE WHEN status = 'failed' THEN
        CASE (k / {step}) % 5
            WHEN 0 THEN 'HTTPError: HTTP ' || (500 + k % 4) || ' for ' || url
            WHEN 1 THEN 'ConnectionError: connection to ' || (10 + k % 200) || '.0.'
                || (k % 250) || '.7:' || (8000 + k % 100) || ' refused'
            WHEN 2 THEN 'Timeout: read timed out after ' || (5 + k % 30) || ' s for '
                || url || '?page=' || (k % 9)
            WHEN 3 THEN 'TooLarge: ' || (5000001 + k * 13) || ' bytes exceed the cap for '''
                || '/p/' || k || ''''
            ELSE 'RobotsDenied: robots.txt of https://site-' || (k % 50)
                || '.example/ forbids this page (rule ' || (k % 17) || ')'
        END
    END,
    CASE WHEN status = 'failed' THEN 3 ELSE 1 END, 3, 0, 1.0,
    {t0} + x * 0.01 - 1, {t0} + x * 0.01, {t0} + x * 0.01 - 0.5, {t0} + x * 0.01
FROM pages
"""
TOP_SQL = """
INSERT INTO jobs (id, parent_id, root_id, path, depth, type, name, status, outcome,
    payload, result, attempts, max_attempts, progress, created_at, updated_at, started_at,
    finished_at)
VALUES
    (1, NULL, 1, '/', 0, 'crawler', 'https://site.example/', 'completed', 'completed',
     '{{"url": "https://site.example/", "depth": 3}}', '{{"pages": {n}}}', 1, 3, 1.0,
     {t0} - 5, {t0} + {last} * 0.01 + 1, {t0} - 4, {t0} + {last} * 0.01 + 1),
    (2, 1, 1, '/1/', 1, 'crawl_page', 'https://site.example/', 'completed', 'completed',
     '{{"url": "https://site.example/", "depth": 0}}', '{{"title": "Start"}}', 1, 3, 1.0,
     {t0} - 4, {t0} + {last} * 0.01 + 1, {t0} - 3, {t0} + {last} * 0.01 + 1)
"""
LOGS_SQL = """
INSERT INTO job_logs (id, job_id, level, message, created_at)
SELECT id - 2, id, CASE WHEN status = 'failed' THEN 'error' ELSE 'info' END,
    CASE WHEN status = 'failed' THEN 'failed (attempt 3/3): ' || error
         ELSE 'GET ' || name || ' -> 200 text/html, ' || (8000 + id % 997) || ' bytes' END,
    finished_at
FROM jobs WHERE id > 2
"""
COUNTERS_SQL = [
    """UPDATE jobs SET
        n_completed = (SELECT COUNT(*) FROM jobs c WHERE c.parent_id = jobs.id
                       AND c.status = 'completed'),
        n_failed = (SELECT COUNT(*) FROM jobs c WHERE c.parent_id = jobs.id
                    AND c.status = 'failed')
    WHERE depth = 2""",
    """UPDATE jobs SET
        n_completed = (SELECT COUNT(*) FROM jobs c WHERE c.root_id = 1 AND c.id > 2
                       AND c.status = 'completed'),
        n_failed = (SELECT COUNT(*) FROM jobs c WHERE c.root_id = 1 AND c.id > 2
                    AND c.status = 'failed')
    WHERE id = 2""",
    """UPDATE jobs SET n_completed = (SELECT n_completed + 1 FROM jobs WHERE id = 2),
        n_failed = (SELECT n_failed FROM jobs WHERE id = 2)
    WHERE id = 1""",
]


def seed_tree(conn: Any, postgres: bool, descendants: int, failed: int) -> dict[str, Any]:
    """Fill an empty migrated schema through a DB-API connection (in one transaction);
    returns what was made."""
    from quaero import counts, triage

    started = time.monotonic()
    last = descendants + 1  # ids 2..last are the descendants of root 1
    step = max(1, descendants // max(1, failed))
    values = {"last": last, "step": step, "middle": MIDDLE, "t0": time.time() - 86_400}
    values["n"] = descendants
    cur = conn.cursor()
    cur.execute(TOP_SQL.format(**values))
    cur.execute(JOBS_SQL.format(**values))
    for sql in COUNTERS_SQL:
        cur.execute(sql)
    cur.execute(counts.RECOUNT_SQL)  # jobs by type and status, as quaero keeps them
    cur.execute(LOGS_SQL)
    # the groups as quaero computes them when a job fails for good
    cur.execute("SELECT id, error FROM jobs WHERE status = 'failed'")
    keyed = [(triage.group_key(error), job_id) for job_id, error in cur.fetchall()]
    param = "%s" if postgres else "?"
    cur.executemany(f"UPDATE jobs SET error_group = {param} WHERE id = {param}", keyed)
    if postgres:
        for table in ("jobs", "job_logs"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT MAX(id) FROM {table}))"
            )
    conn.commit()
    cur.execute("ANALYZE")
    keys = sorted({key for key, _ in keyed})
    if len(keys) != CAUSES:
        raise BenchError(f"the seeded failures fall in {len(keys)} groups, not {CAUSES}")
    return {
        "descendants": descendants,
        "failed": len(keyed),
        "groups": keys,
        "seed_seconds": round(time.monotonic() - started, 1),
    }


def seed_sqlite(path: Path, descendants: int, failed: int) -> dict[str, Any]:
    """A new SQLite database at `path` with the tree."""
    from quaero.db import open_database

    open_database(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        info = seed_tree(conn, False, descendants, failed)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return info
    finally:
        conn.close()


def seed_postgres(url: str, descendants: int, failed: int) -> dict[str, Any]:
    """The tree in the (new, empty) PostgreSQL schema that `url` selects."""
    import psycopg

    from quaero.db import open_database

    open_database(url).close()
    with psycopg.connect(url) as conn:
        return seed_tree(conn, True, descendants, failed)


def endpoint_urls(info: dict[str, Any], rng: random.Random) -> dict[str, list[str]]:
    """Each timed endpoint's request variants (cycled through)."""
    n, failed = info["descendants"], info["failed"]
    key = info["groups"][0]
    base = "/api/jobs/1"
    return {
        "descendants": [
            f"{base}/descendants?limit=50",
            f"{base}/descendants?limit=50&offset=50",
            f"{base}/descendants?limit=50&offset={rng.randrange(n // 2, n - 50)}",
            f"{base}/descendants?limit=50&status=failed",
            f"{base}/descendants?limit=50&status=failed&offset={max(0, failed - 100)}",
            f"{base}/descendants?limit=50&error_group={key}",
            f"{base}/descendants?limit=50&depth=2&offset=100",
            f"{base}/descendants?limit=50&status=failed&sort=-finished_at",
        ],
        "failures": [f"{base}/failures", "/api/failures"],
        "logs": [
            f"{base}/logs?tree=1&limit=200",
            f"{base}/logs?tree=1&limit=200&level=error",
            f"{base}/logs?tree=1&limit=200&after_id={max(0, n - 300)}",
        ],
    }


def time_reads(base: str, info: dict[str, Any], requests_each: int) -> dict[str, list[float]]:
    """Milliseconds of each request, per endpoint, after a warm-up."""
    session = requests.Session()
    urls = endpoint_urls(info, random.Random(12))
    timings: dict[str, list[float]] = {name: [] for name in urls}
    for i in range(WARMUP + requests_each):
        for name, variants in urls.items():
            url = base + variants[i % len(variants)]
            started = time.perf_counter()
            response = session.get(url, timeout=30)
            body = response.content
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise BenchError(f"GET {url}: {response.status_code} {body[:200]!r}")
            if i >= WARMUP:
                timings[name].append(elapsed)
    return timings


def time_export(base: str, pid: int, fmt: str = "jsonl") -> dict[str, Any]:
    """Stream the export once: rows, rows/s, and the server's RSS growth meanwhile."""
    before = proc_status_kib(pid, "VmRSS") or 0
    rows = 0
    with RssSampler(pid, interval=0.02) as rss:
        started = time.perf_counter()
        with requests.get(f"{base}/api/jobs/1/export?format={fmt}", stream=True, timeout=120) as r:
            if r.status_code != 200:
                raise BenchError(f"export: {r.status_code} {r.text[:200]}")
            for chunk in r.iter_content(chunk_size=65536):
                rows += chunk.count(b"\n")
        seconds = time.perf_counter() - started
    rows -= 1 if fmt == "csv" else 0
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rate": round(rows / seconds, 1),
        "rss_growth_mb": round(max(0, rss.max_sampled_kib - before) / 1024, 1),
    }


def time_dialog(base: str, groups: int) -> list[float]:
    """Milliseconds from a click on the root's row to its dialog's Failures view showing
    every group, in Chromium (the first open shows Children first, the later ones open
    on Failures, the view the dialog keeps)."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        raise BenchError("playwright is not installed (requirements-dev.txt)") from None
    if not Path(CHROMIUM).exists():
        raise BenchError(f"{CHROMIUM} is missing (make test installs Debian's chromium)")
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base}/jobs")
            row = page.locator('#jobs-table tr[data-job-id="1"] td.name a')
            expect(row).to_be_visible(timeout=30_000)
            shown = page.locator("#failure-groups .failure-group")
            for _ in range(DIALOG_REPS):
                started = time.perf_counter()
                row.click()
                page.locator("#view-failures").click()
                expect(shown).to_have_count(groups, timeout=10_000)
                times.append((time.perf_counter() - started) * 1000)
                page.keyboard.press("Escape")
                expect(page.locator("#job-modal")).to_be_hidden()
        finally:
            browser.close()
    return times


def measure(ctx: Context, store: str, config: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Serve the seeded store with `run.py web` and take the store's figures."""
    server = Quaero(ctx.procs, "web", config, log_name=f"web-{store}")
    try:
        base = server.wait_ready()
        timings = time_reads(base, info, ctx.sizes["p12_requests"])
        for name, values in timings.items():
            p95 = percentile(values, 95)
            ctx.record(f"P12.{store}_{name}_p95_ms", round(p95, 1))
            print(f"  {store} {name}: p50 {percentile(values, 50):.1f} ms, p95 {p95:.1f} ms")
        export = time_export(base, server.pid)
        export_csv = time_export(base, server.pid, "csv")
        if export["rows"] != info["descendants"]:
            raise BenchError(f"export gave {export['rows']} rows of {info['descendants']}")
        ctx.record(f"P12.{store}_export_rate", export["rate"])
        ctx.record(f"P12.{store}_export_rss_mb", export["rss_growth_mb"])
        print(f"  {store} export: {export['rate']:,.0f} rows/s, +{export['rss_growth_mb']} MB")
        dialog = time_dialog(base, len(info["groups"]))
        ctx.record(f"P12.{store}_dialog_ms", round(max(dialog), 1))
        print(f"  {store} dialog failure groups: {', '.join(f'{t:.0f}' for t in dialog)} ms")
        return {
            **{k: v for k, v in info.items() if k != "groups"},
            "p50_ms": {k: round(percentile(v, 50), 1) for k, v in timings.items()},
            "max_ms": {k: round(max(v), 1) for k, v in timings.items()},
            "export_jsonl": export,
            "export_csv": export_csv,
            "dialog_ms": [round(t, 1) for t in dialog],
        }
    finally:
        server.stop()


def run(ctx: Context) -> None:
    """P12."""
    from bench.scaleout import postgres_connection

    s = ctx.sizes
    n, failed = s["p12_descendants"], s["p12_failed"]
    folder = ctx.folder("p12-sqlite")
    db_path = folder / "quaero.db"
    print(f"  SQLite: seeding {n:,} descendants, {failed:,} failed", flush=True)
    info = seed_sqlite(db_path, n, failed)
    config = write_config(
        folder,
        server={"port": free_port()},
        queue={"path": "queue.db"},
        database={"url": f"sqlite:///{db_path}"},
    )
    ctx.detail("P12", sqlite=measure(ctx, "sqlite", config, info))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    pg = postgres_connection(s["postgres_url"])
    try:
        pg.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{s['postgres_url']}?options={quote('-csearch_path=' + schema)}"
        print(f"  PostgreSQL: seeding {n:,} descendants, {failed:,} failed", flush=True)
        info = seed_postgres(url, n, failed)
        folder = ctx.folder("p12-postgresql")
        config = write_config(
            folder,
            server={"port": free_port()},
            queue={"path": "queue.db"},
            database={"url": url},
        )
        ctx.detail("P12", postgresql=measure(ctx, "postgresql", config, info))
    finally:
        pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        pg.close()
