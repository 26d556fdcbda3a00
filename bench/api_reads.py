"""P3: read latency of the three listing endpoints on a big database, through waitress.

A SQLite jobs database with `p3_roots` × (`p3_children_per_root` + 1) jobs and `p3_logs`
log rows is seeded in bulk (bench/seed.py) and, in full runs, cached under
bench/results/cache/ keyed by sizes and migrations. `run.py web` serves it; a keep-alive
`requests.Session` times `p3_requests` requests per endpoint, the endpoints interleaved
and each cycling through a few offsets and filters, after a warm-up.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import requests

from bench.common import (
    CACHE_DIR,
    REPO_ROOT,
    BenchError,
    Quaero,
    free_port,
    percentile,
    write_config,
)
from bench.harness import Context
from bench.seed import SeedSizes, fingerprint, seed

WARMUP = 10  # untimed requests per endpoint first


def seeded_database(ctx: Context, sizes: SeedSizes) -> Path:
    """The seeded database: from the cache when allowed and present, else built."""
    name = f"p3-{fingerprint(sizes, REPO_ROOT / 'migrations')}.db"
    if ctx.sizes["p3_cache"]:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        path = CACHE_DIR / name
        if path.exists():
            print(f"  using the cached database {path.name}", flush=True)
            ctx.detail("P3", seeded_from_cache=True)
            return path
        for old in CACHE_DIR.glob("p3-*.db*"):  # other sizes or an older schema
            old.unlink()
    else:  # seeded once per run: P3 and P10 read the same database
        path = ctx.scratch / "p3-db" / name
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
    print(f"  seeding {sizes.jobs:,} jobs and {sizes.logs:,} log rows", flush=True)
    building = path.with_name(path.name + ".tmp")
    for leftover in path.parent.glob(building.name + "*"):
        leftover.unlink()
    timings = seed(building, sizes)
    building.replace(path)
    ctx.detail("P3", seeded_from_cache=False, seed_timings=timings)
    return path


def web_on(ctx: Context, name: str, db_path: Path) -> Quaero:
    """A `run.py web` (not started) serving the seeded database, from folder `name`."""
    config = write_config(
        ctx.folder(name),
        server={"port": free_port()},
        queue={"path": "queue.db"},
        database={"url": f"sqlite:///{db_path}"},
        jobs={"demo_types": True},
    )
    return Quaero(ctx.procs, "web", config)


def endpoints(sizes: SeedSizes, rng: random.Random) -> dict[str, Callable[[int], str]]:
    """Each endpoint's URL for the i-th request: a few offsets and filters in turn."""
    roots = [r * (sizes.children_per_root + 1) + 1 for r in range(sizes.roots)]
    last_offset = max(0, sizes.roots - 50)
    root_variants = [
        "limit=50",
        "limit=50&offset=50",
        f"limit=50&offset={min(500, last_offset)}",
        f"limit=50&offset={last_offset // 2}",
        "limit=50&status=completed",
        "limit=50&status=running",
        "limit=50&status=failed&offset=50",
        "limit=50&type=crawler&offset=100",
    ]
    child_variants = ["limit=50", "limit=50&offset=50", "limit=50&status=completed"]
    log_variants = ["limit=200", "limit=200&level=warning", "limit=200&after_id=0"]
    parents = [rng.choice(roots) for _ in range(64)] + [roots[-1]]  # the running, newest one
    log_jobs = [rng.randrange(1, sizes.jobs // 2) for _ in range(32)] + [sizes.heavy_job] * 32

    def roots_url(i: int) -> str:
        return f"/api/jobs?{root_variants[i % len(root_variants)]}"

    def children_url(i: int) -> str:
        parent = parents[i % len(parents)]
        return f"/api/jobs/{parent}/children?{child_variants[i % len(child_variants)]}"

    def logs_url(i: int) -> str:
        job = log_jobs[i % len(log_jobs)]
        return f"/api/jobs/{job}/logs?{log_variants[i % len(log_variants)]}"

    return {"roots": roots_url, "children": children_url, "logs": logs_url}


def run(ctx: Context) -> None:
    """P3."""
    s = ctx.sizes
    sizes = SeedSizes(s["p3_roots"], s["p3_children_per_root"], s["p3_logs"], s["p3_heavy_logs"])
    db_path = seeded_database(ctx, sizes)
    server = web_on(ctx, "p3", db_path)
    try:
        base = server.wait_ready()
        session = requests.Session()
        urls = endpoints(sizes, random.Random(7))
        timings: dict[str, list[float]] = {name: [] for name in urls}
        sizes_seen: dict[str, list[int]] = {name: [] for name in urls}
        for i in range(WARMUP + s["p3_requests"]):
            for name, url_for in urls.items():
                url = base + url_for(i)
                started = time.perf_counter()
                response = session.get(url, timeout=30)
                body = response.content
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise BenchError(f"GET {url}: {response.status_code} {body[:200]!r}")
                if i >= WARMUP:
                    timings[name].append(elapsed * 1000)
                    sizes_seen[name].append(len(body))
        for name, values in timings.items():
            p50, p95 = percentile(values, 50), percentile(values, 95)
            ctx.record(f"P3.{name}_p50_ms", round(p50, 1))
            ctx.record(f"P3.{name}_p95_ms", round(p95, 1))
            print(f"  {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
        ctx.detail(
            "P3",
            jobs=sizes.jobs,
            logs=sizes.logs,
            requests_per_endpoint=s["p3_requests"],
            max_ms={name: round(max(v), 1) for name, v in timings.items()},
            mean_response_bytes={
                name: round(sum(v) / len(v)) for name, v in sizes_seen.items() if v
            },
        )
    finally:
        server.stop()
