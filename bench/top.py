"""P10: a million jobs cost nothing at the top (issue 17).

Reads: P3's seeded database (bench/seed.py, the same cache) is served by `run.py web`;
a keep-alive session times `p10_requests` requests each of `GET /api/stats`, `GET /jobs`
(the HTML page) and `GET /metrics`, interleaved, after a warm-up.

Upkeep: in this process, on a SQLite store of its own with `p10_jobs` pending jobs and
a few running ones, one orphan sweep (quaero.recovery requeue_orphans, with orphans to
find each round) and one reaper round (expire_dead_workers_leases + reap_expired_leases,
with expired leases to reap) are timed `p10_rounds` times on a queue of 10 messages and
on one of `p10_queued` (a million), the two queue files taking turns round by round.
The figures are the ratios of the medians: ≤ 2× means neither reads the queue.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from pathlib import Path

import requests

from bench.api_reads import WARMUP, seeded_database, web_on
from bench.common import BenchError, percentile, write_config
from bench.harness import Context
from bench.seed import SeedSizes

ENDPOINTS = {"stats": "/api/stats", "page": "/jobs", "metrics": "/metrics"}
ORPHANS = 5  # pending jobs whose message is lost, made again before each sweep
EXPIRED = 5  # running jobs whose lease expired, made again before each reaper round
QUEUE_CHUNK = 50_000  # messages per enqueue transaction while filling the queue


def time_reads(ctx: Context, db_path: Path) -> None:
    """The p50/p95 of the three endpoints on the seeded database."""
    s = ctx.sizes
    server = web_on(ctx, "p10", db_path)
    try:
        base = server.wait_ready()
        session = requests.Session()
        timings: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
        for i in range(WARMUP + s["p10_requests"]):
            for name, path in ENDPOINTS.items():
                started = time.perf_counter()
                response = session.get(base + path, timeout=30)
                body = response.content
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise BenchError(f"GET {path}: {response.status_code} {body[:200]!r}")
                if i >= WARMUP:
                    timings[name].append(elapsed * 1000)
        for name, values in timings.items():
            p50, p95 = percentile(values, 50), percentile(values, 95)
            ctx.record(f"P10.{name}_p50_ms", round(p50, 1))
            ctx.record(f"P10.{name}_p95_ms", round(p95, 1))
            print(f"  GET {ENDPOINTS[name]}: p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
        ctx.detail("P10", max_ms={name: round(max(v), 1) for name, v in timings.items()})
    finally:
        server.stop()


def upkeep_costs(folder: Path, pending: int, queued_sizes: list[int], rounds: int) -> dict:
    """Median ms of one orphan sweep and one reaper round at each queue length."""
    from quaero import config as config_mod
    from quaero.models import Job
    from quaero.services import build_services

    config_path = write_config(
        folder,
        queue={"path": "queue.db"},
        database={"url": "sqlite:///quaero.db"},
        jobs={"demo_types": True},
    )
    services = build_services(config_mod.load(config_path))
    quaero_logger = logging.getLogger("quaero")
    level = quaero_logger.level
    quaero_logger.setLevel(logging.ERROR)  # each round re-queues on purpose: no warnings
    try:
        manager, recovery, queue = services.manager, services.recovery, services.queue
        storage = queue.huey.storage
        now = services.store.now()
        roots = [manager.create_root("noop", {}).id for _ in range(pending // 1000 + 1)]
        storage.flush_queue()
        # the pending jobs: created an hour ago, their messages (the first ones) queued
        db = services.store.db
        with db.atomic():
            Job.update(created_at=now - 3600, updated_at=now - 3600).execute()
            rows = [
                {
                    "parent_id": None,
                    "root_id": 0,
                    "path": "/",
                    "type": "noop",
                    "status": "pending",
                    "created_at": now - 3600 + i * 1e-3,
                    "updated_at": now - 3600 + i * 1e-3,
                }
                for i in range(pending - len(roots))
            ]
            for start in range(0, len(rows), 5000):
                Job.insert_many(rows[start : start + 5000]).execute()
            Job.update(root_id=Job.id).where(Job.root_id == 0).execute()
        ids = [i for (i,) in Job.select(Job.id).order_by(Job.id).tuples()]
        messages = [
            (queue.huey.serialize_task(queue.task.s(job_id, priority=0)), 0) for job_id in ids
        ]
        worker = "bench-host:1:abcdef"
        # one queue file per length, swapped in turn under the same store, so that the
        # machine's load drifting during the run weighs on both lengths alike
        storages = {}
        for size in queued_sizes:
            other = type(storage)(
                storage.name, filename=str(folder / f"queue-{size}.db"), timeout=30
            )
            left = size
            while left > 0:  # the pending jobs' messages, over and over (duplicates)
                chunk = min(left, QUEUE_CHUNK)
                other.enqueue_many([messages[i % len(messages)] for i in range(chunk)])
                left -= chunk
            storages[size] = other
        timings = {size: {"sweep": [], "reaper": [], "depth": []} for size in queued_sizes}
        rng = random.Random(7)
        for _ in range(rounds):
            for size in queued_sizes:
                queue.huey.storage = storages[size]
                times = timings[size]
                lost = rng.sample(ids[: len(ids) // 2], ORPHANS)  # older than the head
                Job.update(updated_at=now - 7200).where(Job.id.in_(lost)).execute()
                started = time.perf_counter()
                recovery.requeue_orphans()
                times["sweep"].append((time.perf_counter() - started) * 1000)
                held = rng.sample(ids[len(ids) // 2 :], EXPIRED)
                for job_id in held:
                    manager.claim(job_id, worker)
                Job.update(lease_expires_at=now - 1).where(Job.id.in_(held)).execute()
                started = time.perf_counter()
                recovery.expire_dead_workers_leases()
                recovery.reap_expired_leases()
                times["reaper"].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()  # what /api/stats and /metrics read of it
                queue.depth()
                queue.scheduled()
                times["depth"].append((time.perf_counter() - started) * 1000)
        results: dict[str, dict[str, float]] = {}
        for size in queued_sizes:
            queue.huey.storage = storages[size]
            times = timings[size]
            results[str(size)] = {
                "queued": queue.depth(),
                "depth_ms": round(statistics.median(times["depth"]), 3),
                "sweep_ms": round(statistics.median(times["sweep"]), 2),
                "reaper_ms": round(statistics.median(times["reaper"]), 2),
            }
            print(
                f"  {size:,} queued: sweep {results[str(size)]['sweep_ms']:.2f} ms, "
                f"reaper round {results[str(size)]['reaper_ms']:.2f} ms (medians)",
                flush=True,
            )
        queue.huey.storage = storage
        for other in storages.values():
            other.close()
        return results
    finally:
        quaero_logger.setLevel(level)
        services.close()


def run(ctx: Context) -> None:
    """P10."""
    s = ctx.sizes
    sizes = SeedSizes(s["p3_roots"], s["p3_children_per_root"], s["p3_logs"], s["p3_heavy_logs"])
    time_reads(ctx, seeded_database(ctx, sizes))
    few, many = 10, s["p10_queued"]
    costs = upkeep_costs(ctx.folder("p10-upkeep"), s["p10_jobs"], [few, many], s["p10_rounds"])
    small, big = costs[str(few)], costs[str(many)]
    ctx.record("P10.sweep_ms", big["sweep_ms"])
    ctx.record("P10.sweep_ratio", round(big["sweep_ms"] / max(small["sweep_ms"], 1e-3), 2))
    ctx.record("P10.reaper_ms", big["reaper_ms"])
    ctx.record("P10.reaper_ratio", round(big["reaper_ms"] / max(small["reaper_ms"], 1e-3), 2))
    ctx.detail("P10", jobs=sizes.jobs, requests=s["p10_requests"], upkeep=costs)
