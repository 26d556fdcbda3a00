"""P1 (fan-out throughput against raw Huey) and P5 (peak RSS of `serve` during P1).

quaero runs as users run it: `run.py serve` in a child process on a fresh temporary
config (SQLite files in a temp folder, 4 thread workers, default polling), a `fanout`
job submitted with `POST /api/jobs`, the clock from just before the POST to the root's
`finished_at`. Raw Huey runs in its own child process (bench/huey_raw.py) with the same
workers and polling. The two alternate, `p1_reps` times each, and the ratio is of the
medians of this run.
"""

from __future__ import annotations

import json
import sys

import requests

from bench.common import (
    BenchError,
    Quaero,
    RssSampler,
    cpu_seconds,
    log_tail,
    median,
    parse_iso,
    rounded,
    sqlite_config,
    submit,
    wait_finished,
)
from bench.harness import Context


def quaero_fanout(ctx: Context, children: int, workers: int, label: str) -> dict:
    """One `fanout` of `children` no-op jobs on a fresh `serve`; its rate and footprint."""
    folder = ctx.folder(label)
    server = Quaero(ctx.procs, "serve", sqlite_config(folder, num_workers=workers))
    try:
        base = server.wait_ready()
        session = requests.Session()
        with RssSampler(server.pid) as rss:
            cpu_before = cpu_seconds(server.pid) or 0.0
            job, sent = submit(session, base, {"type": "fanout", "payload": {"children": children}})
            done = wait_finished(
                session, base, job["id"], timeout=max(120.0, children / 20), alive=server.proc
            )
            cpu_after = cpu_seconds(server.pid) or 0.0
        counts = done["counts"]
        if done["status"] != "completed" or counts["completed"] != children:
            raise BenchError(f"fan-out ended {done['status']} with counts {counts}")
        seconds = parse_iso(done["finished_at"]) - sent
        return {
            "children": children,
            "seconds": round(seconds, 4),
            "rate": round(children / seconds, 2),
            "serve_cpu_seconds": round(cpu_after - cpu_before, 3),
            "peak_rss_kib": rss.peak_kib,
        }
    finally:
        server.stop()


def raw_huey(ctx: Context, tasks: int, workers: int, poll: float, label: str) -> dict:
    """One run of bench/huey_raw.py in a child process."""
    folder = ctx.folder(label)
    cmd = [
        sys.executable,
        "-m",
        "bench.huey_raw",
        "--tasks",
        str(tasks),
        "--workers",
        str(workers),
        "--poll",
        str(poll),
        "--dir",
        str(folder),
        "--enqueue",
        ctx.sizes["p1_huey_enqueue"],
    ]
    proc = ctx.procs.spawn(cmd, folder / "huey.log")
    try:
        proc.wait(timeout=max(120.0, tasks / 20))
    finally:
        ctx.procs.stop(proc)
    lines = [line for line in log_tail(proc, 50).splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"raw Huey exited with {proc.returncode}:\n{log_tail(proc)}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise BenchError(f"raw Huey: {result['error']}")
    return result


def run(ctx: Context) -> None:
    """P1 and P5."""
    s = ctx.sizes
    children, workers = s["p1_children"], s["p1_workers"]
    poll = 0.1  # quaero's default [queue] poll_interval, which the serve configs keep
    quaero_runs: list[dict] = []
    huey_runs: list[dict] = []
    for rep in range(s["p1_reps"]):
        print(f"  P1 run {rep + 1}/{s['p1_reps']}: quaero fan-out of {children}", flush=True)
        quaero_runs.append(quaero_fanout(ctx, children, workers, f"p1-quaero-{rep}"))
        print(f"    {quaero_runs[-1]['rate']:.0f} children/s", flush=True)
        ctx.record("P5.peak_rss_mb", round(max(r["peak_rss_kib"] for r in quaero_runs) / 1024, 1))
        print(f"  P1 run {rep + 1}/{s['p1_reps']}: raw Huey, {children} tasks", flush=True)
        huey_runs.append(raw_huey(ctx, children, workers, poll, f"p1-huey-{rep}"))
        print(f"    {huey_runs[-1]['rate']:.0f} tasks/s", flush=True)
    quaero_rate = median(r["rate"] for r in quaero_runs)
    huey_rate = median(r["rate"] for r in huey_runs)
    ctx.shared["quaero_fanout_rate"] = quaero_rate
    ctx.record("P1.quaero_rate", round(quaero_rate, 1))
    ctx.record("P1.huey_rate", round(huey_rate, 1))
    ctx.record("P1.ratio", rounded(quaero_rate / huey_rate))
    cpu = median(r["serve_cpu_seconds"] for r in quaero_runs)
    ctx.detail(
        "P1",
        children=children,
        workers=workers,
        poll_interval=poll,
        huey_enqueue=s["p1_huey_enqueue"],
        quaero_runs=quaero_runs,
        huey_runs=huey_runs,
        quaero_serve_cpu_ms_per_child=round(cpu * 1000 / children, 3),
        ratio_per_rep=[
            round(q["rate"] / h["rate"], 3) for q, h in zip(quaero_runs, huey_runs, strict=True)
        ],
    )
    ctx.detail("P5", peak_rss_kib_per_run=[r["peak_rss_kib"] for r in quaero_runs])
