"""P2: start latency of a job on an idle `serve`, and the CPU an idle `serve` burns.

`run.py serve` runs on the default config (only its files and port are changed). Once
it has settled, its user+system CPU time is read from /proc over `p2_idle_seconds` of
idleness. Then `p2_jobs` no-op jobs are POSTed `p2_spacing` seconds apart, and each
one's latency is its `started_at` (set by the worker that claims it) minus the wall-clock
time just before its POST was sent: HTTP, the insert, the enqueue and the poll wait.
"""

from __future__ import annotations

import time

import requests

from bench.common import (
    BenchError,
    Quaero,
    cpu_seconds,
    median,
    parse_iso,
    percentile,
    sqlite_config,
    submit,
    wait_until,
)
from bench.harness import Context

SETTLE_SECONDS = 2.0  # start-up work (migrations, recovery) is not idleness


def run(ctx: Context) -> None:
    """P2."""
    s = ctx.sizes
    folder = ctx.folder("p2")
    server = Quaero(ctx.procs, "serve", sqlite_config(folder))  # 5 workers, poll 0.1
    try:
        base = server.wait_ready()
        session = requests.Session()
        session.get(base + "/api/jobs?limit=1", timeout=10).raise_for_status()
        time.sleep(SETTLE_SECONDS)

        cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
        time.sleep(s["p2_idle_seconds"])
        cpu_after, wall_after = cpu_seconds(server.pid), time.monotonic()
        if cpu_before is None or cpu_after is None:
            raise BenchError("serve exited while idle")
        idle_pct = 100 * (cpu_after - cpu_before) / (wall_after - wall_before)
        ctx.record("P2.idle_cpu_pct", round(idle_pct, 2))
        print(f"  idle CPU {idle_pct:.2f} % of one core", flush=True)

        sent: dict[int, float] = {}
        post_ms: list[float] = []
        first = time.monotonic()
        for i in range(s["p2_jobs"]):
            pause = first + i * s["p2_spacing"] - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            job, at = submit(session, base, {"type": "noop", "payload": {"i": i}})
            post_ms.append(1000 * (time.time() - at))
            sent[job["id"]] = at

        def started(job_id: int) -> dict | None:
            job = session.get(f"{base}/api/jobs/{job_id}", timeout=10).json()
            return job if job["started_at"] else None

        jobs = [
            wait_until(lambda j=job_id: started(j), timeout=60, interval=0.1, what="a job to start")
            for job_id in sent
        ]
        latencies = sorted(1000 * (parse_iso(j["started_at"]) - sent[j["id"]]) for j in jobs)
        # the part spent between the insert and a worker's claim: queue and polling
        waits = [1000 * (parse_iso(j["started_at"]) - parse_iso(j["created_at"])) for j in jobs]
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        ctx.record("P2.p50_ms", round(p50, 1))
        ctx.record("P2.p95_ms", round(p95, 1))
        print(f"  start latency p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
        ctx.detail(
            "P2",
            jobs=len(latencies),
            spacing_seconds=s["p2_spacing"],
            idle_seconds=s["p2_idle_seconds"],
            idle_cpu_seconds=round(cpu_after - cpu_before, 3),
            latency_ms={
                "min": round(latencies[0], 1),
                "median": round(median(latencies), 1),
                "p99": round(percentile(latencies, 99), 1),
                "max": round(latencies[-1], 1),
            },
            post_round_trip_ms_median=round(median(post_ms), 1),
            created_to_started_ms_median=round(median(waits), 1),
        )
    finally:
        server.stop()
