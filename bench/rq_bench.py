"""P7: the P1 no-op fan-out through RQ with `p7_workers` workers on the local Redis.

`rq worker --worker-class rq.SimpleWorker --quiet` (jobs run in the worker process, no
fork per job, no per-job log lines) × `p7_workers` on Redis database `p7_redis_db`, which
is emptied before and after. Once every worker has registered, `p7_jobs` no-op jobs are
enqueued with `Queue.enqueue_many` in pipelines of 1,000 (as quaero's fan-out inserts
and enqueues its children in batches); the clock runs from the first enqueue until the
finished-job registry holds them all (polled every 10 ms). The ratio divides quaero's
fan-out rate (P1's median in the same run, or its own quaero runs when P1 is not
selected) by RQ's median rate.
"""

from __future__ import annotations

import sys
import time
import uuid

from bench.common import BenchError, log_tail, median, rounded, wait_until
from bench.harness import Context
from bench.scaleout import redis_client
from bench.throughput import quaero_fanout

BATCH = 1000


def rq_round(ctx: Context, label: str) -> dict:
    """One RQ run: start the workers, enqueue the jobs, wait for them all."""
    try:
        from rq import Queue, Worker
    except ImportError:
        raise BenchError(
            "rq is not installed (`make bench` installs requirements-bench.txt)"
        ) from None
    from bench.rq_tasks import noop

    s = ctx.sizes
    url = f"{s['redis_url']}/{s['p7_redis_db']}"
    conn = redis_client(url)
    conn.flushdb()
    folder = ctx.folder(label)
    queue_name = f"bench-{uuid.uuid4().hex[:8]}"
    queue = Queue(queue_name, connection=conn)
    cmd = [
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        "--worker-class",
        "rq.SimpleWorker",
        "--quiet",
        "--url",
        url,
        queue_name,
    ]
    workers = [ctx.procs.spawn(cmd, folder / f"worker-{n}.log") for n in range(s["p7_workers"])]
    try:

        def registered() -> bool:
            for proc in workers:
                if proc.poll() is not None:
                    raise BenchError(f"rq worker exited with {proc.returncode}:\n{log_tail(proc)}")
            return Worker.count(queue=queue) >= len(workers)

        wait_until(registered, timeout=60, interval=0.1, what="the RQ workers to register")
        jobs = s["p7_jobs"]
        finished_key = queue.finished_job_registry.key
        failed_key = queue.failed_job_registry.key
        started = time.time()
        for first in range(0, jobs, BATCH):
            batch = [Queue.prepare_data(noop) for _ in range(min(BATCH, jobs - first))]
            with conn.pipeline() as pipe:
                queue.enqueue_many(batch, pipeline=pipe)
                pipe.execute()
        enqueued = time.time()

        def all_done() -> bool:
            return conn.zcard(finished_key) + conn.zcard(failed_key) >= jobs

        wait_until(all_done, timeout=max(120.0, jobs / 20), interval=0.01, what="RQ's jobs")
        ended = time.time()
        failed = conn.zcard(failed_key)
        if failed:
            raise BenchError(f"{failed} RQ jobs failed")
        seconds = ended - started
        return {
            "jobs": jobs,
            "workers": len(workers),
            "seconds": round(seconds, 4),
            "enqueue_seconds": round(enqueued - started, 4),
            "rate": round(jobs / seconds, 2),
        }
    finally:
        ctx.procs.stop_many(workers)
        conn.flushdb()
        conn.close()


def run(ctx: Context) -> None:
    """P7."""
    s = ctx.sizes
    rq_runs = []
    for rep in range(s["p7_reps"]):
        print(f"  RQ run {rep + 1}/{s['p7_reps']}: {s['p7_jobs']} no-op jobs", flush=True)
        rq_runs.append(rq_round(ctx, f"p7-rq-{rep}"))
        print(f"    {rq_runs[-1]['rate']:.0f} jobs/s", flush=True)
    rq_rate = median(r["rate"] for r in rq_runs)
    ctx.record("P7.rq_rate", round(rq_rate, 1))
    quaero_rate = ctx.shared.get("quaero_fanout_rate")
    source = "P1"
    if quaero_rate is None:  # P1 not selected: measure quaero's fan-out here
        source = "P7"
        runs = [
            quaero_fanout(ctx, s["p1_children"], s["p1_workers"], f"p7-quaero-{rep}")
            for rep in range(s["p7_reps"])
        ]
        quaero_rate = median(r["rate"] for r in runs)
    ctx.record("P7.ratio", rounded(quaero_rate / rq_rate))
    ctx.detail("P7", rq_runs=rq_runs, quaero_rate=quaero_rate, quaero_rate_from=source)
