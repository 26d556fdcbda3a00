"""P8: how long a SIGKILLed worker's jobs wait before they run on another worker.

Each repetition gets a fresh folder of SQLite files shared by one `run.py web` and two
`run.py worker` processes, all on quaero's default `[jobs]` settings (lease 30 s,
heartbeat every 1 s, a worker silent 6 s is gone, the reaper looks every 2 s). Worker A
starts first and takes `p8_jobs` `sleep` jobs of `p8_job_seconds` s each; then worker B
starts and registers (its row in the `workers` table). A is SIGKILLed and not reaped
until the measurement is over: as a zombie it keeps its pid, so quaero can tell it is
dead only from its silent heartbeat, as for a worker on another host. Recovery = seconds
from the kill until every one of those jobs is `running` with B's worker id, read from
the jobs table every 50 ms. The figure is the median of `p8_reps` repetitions; the
lease, the bound recovery had before dead workers were detected, is in the details.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from contextlib import closing

import requests

from bench.common import (
    BenchError,
    Quaero,
    log_tail,
    median,
    sqlite_config,
    submit,
    wait_until,
)
from bench.harness import Context

POLL_SECONDS = 0.05


def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat ("Z" for a zombie), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def recovery_rep(ctx: Context, rep: int) -> dict:
    """One repetition: web, worker A with the jobs, worker B, SIGKILL A, time the move."""
    s = ctx.sizes
    folder = ctx.folder(f"p8-{rep}")
    config = sqlite_config(folder)  # [jobs] left out: quaero's defaults
    web = Quaero(ctx.procs, "web", config)
    servers = [web]
    try:
        base = web.wait_ready()  # it also applies the migrations, before workers start
        db_path = folder / "quaero.db"
        with closing(sqlite3.connect(db_path, timeout=30, isolation_level=None)) as conn:

            def alive(worker: Quaero) -> bool:
                if worker.proc.poll() is not None:
                    raise BenchError(
                        f"`run.py worker` exited with {worker.proc.returncode}:\n"
                        + log_tail(worker.proc)
                    )
                return True

            def holders(ids: list[int]) -> dict[int, str | None]:
                """Job id → worker id of the jobs among `ids` that are running."""
                marks = ",".join("?" * len(ids))
                found = conn.execute(
                    f"SELECT id, worker_id FROM jobs WHERE id IN ({marks}) AND status = 'running'",
                    ids,
                ).fetchall()
                return dict(found)

            def pid_of(worker_id: str | None) -> int | None:
                try:
                    return int(worker_id.split(":")[1]) if worker_id else None
                except (IndexError, ValueError):
                    return None

            doomed = Quaero(ctx.procs, "worker", config, log_name="worker-a")
            servers.append(doomed)
            session = requests.Session()
            seconds = s["p8_job_seconds"]
            body = {
                "type": "sleep",
                "payload": {"seconds": seconds, "steps": max(1, round(seconds))},
            }
            ids = [submit(session, base, body)[0]["id"] for _ in range(s["p8_jobs"])]

            def on_a() -> bool:
                held = holders(ids)
                return alive(doomed) and all(pid_of(held.get(i)) == doomed.pid for i in ids)

            wait_until(on_a, timeout=60, what=f"{len(ids)} jobs running on worker A")

            survivor = Quaero(ctx.procs, "worker", config, log_name="worker-b")
            servers.append(survivor)

            def b_registered() -> str | None:
                alive(survivor)
                row = conn.execute(
                    "SELECT id FROM workers WHERE pid = ? AND stopped_at IS NULL", [survivor.pid]
                ).fetchone()
                return row[0] if row else None

            b_id = wait_until(b_registered, timeout=60, what="worker B to register")
            registered = conn.execute("SELECT COUNT(*) FROM workers").fetchone()[0]

            # SIGKILL, and no wait(): A stays a zombie with its pid until the stop below.
            os.kill(doomed.pid, signal.SIGKILL)
            killed = time.monotonic()

            def on_b() -> bool:
                held = holders(ids)
                return alive(survivor) and all(held.get(i) == b_id for i in ids)

            timeout = 90.0  # beyond the lease: a recovery by lease expiry is measured too
            wait_until(on_b, timeout=timeout, interval=POLL_SECONDS, what="the jobs on worker B")
            recovery = time.monotonic() - killed
            zombie = process_state(doomed.pid) == "Z"
            attempts = [
                a
                for (a,) in conn.execute(
                    f"SELECT attempts FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids
                )
            ]
        return {
            "seconds": round(recovery, 2),
            "jobs": len(ids),
            "workers_registered": registered,
            "killed_worker_was_zombie": zombie,
            "attempts": attempts,
        }
    finally:
        ctx.procs.stop_many([server.proc for server in servers])  # reaps A


def run(ctx: Context) -> None:
    """P8."""
    from quaero.config import JobsConfig  # the defaults the children run with

    defaults = JobsConfig()
    reps = []
    for rep in range(ctx.sizes["p8_reps"]):
        reps.append(recovery_rep(ctx, rep))
        print(f"  rep {rep + 1}: jobs on worker B {reps[-1]['seconds']:.2f} s after the kill")
    value = median(r["seconds"] for r in reps)
    ctx.record("P8.recovery_s", round(value, 2))
    print(f"  median {value:.2f} s (lease {defaults.lease_seconds:g} s)", flush=True)
    ctx.detail(
        "P8",
        lease_seconds=defaults.lease_seconds,
        heartbeat_seconds=defaults.heartbeat_seconds,
        worker_timeout=defaults.worker_timeout,
        reaper_interval=defaults.reaper_interval,
        seconds_each=[r["seconds"] for r in reps],
        reps=reps,
        poll_seconds=POLL_SECONDS,
    )
