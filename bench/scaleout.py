"""P6 and P9: scale-out on Redis + PostgreSQL, 1 against `p6_procs` worker processes.

Each round gets a fresh PostgreSQL schema (in the `test` database, selected with
`?options=-csearch_path=<schema>`) and an emptied Redis database (`p6_redis_db`). One
`run.py web` takes the submission; N `run.py worker` processes of `p6_threads` threads
run the jobs. P6: a `fanout` of `p6_jobs` `sleep` children of `p6_sleep` seconds each
(I/O-bound work). P9: one huge tree, a `fanout` of `p9_children` no-op children, whose
finishes all move the counters of one root row. Rate = children over the time from the
POST to the root's `finished_at`; the figure is the rate with N processes over the rate
with one.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import requests

from bench.common import (
    BenchError,
    Quaero,
    free_port,
    parse_iso,
    submit,
    wait_finished,
    wait_until,
    write_config,
)
from bench.harness import Context


def redis_client(url: str):
    """A Redis client, or BenchError when the server cannot be reached."""
    try:
        import redis
    except ImportError:
        raise BenchError("the redis package is not installed") from None
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BenchError(f"Redis at {url} is not reachable: {exc}") from None
    return client


def postgres_connection(url: str):
    """An autocommit psycopg connection, or BenchError when it cannot be made."""
    try:
        import psycopg
    except ImportError:
        raise BenchError("the psycopg package is not installed") from None
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        raise BenchError(f"PostgreSQL at {url} is not reachable: {exc}") from None


def scaleout_round(ctx: Context, processes: int, label: str, payload: dict) -> dict:
    """One round: fresh schema and Redis db, `processes` workers, one fan-out of
    `payload` (the fanout job's)."""
    s = ctx.sizes
    redis_url = f"{s['redis_url']}/{s['p6_redis_db']}"
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    folder = ctx.folder(f"{label}-{processes}")
    rds = redis_client(redis_url)
    try:
        pg = postgres_connection(s["postgres_url"])
    except BenchError:
        rds.close()
        raise
    servers: list[Quaero] = []
    try:
        rds.flushdb()
        pg.execute(f'CREATE SCHEMA "{schema}"')
        config = write_config(
            folder,
            server={"port": free_port()},
            queue={
                "backend": "redis",
                "url": redis_url,
                "num_workers": s["p6_threads"],
                "name": schema,
            },
            database={"url": f"{s['postgres_url']}?options={quote('-csearch_path=' + schema)}"},
            jobs={"demo_types": True},
        )
        web = Quaero(ctx.procs, "web", config)
        servers.append(web)
        base = web.wait_ready()  # it also applies the migrations, before workers start
        for n in range(processes):
            servers.append(Quaero(ctx.procs, "worker", config, log_name=f"worker-{n}"))
        session = requests.Session()

        def workers_alive() -> bool:
            for worker in servers[1:]:
                if worker.proc.poll() is not None:
                    raise BenchError(f"`run.py worker` exited with {worker.proc.returncode}")
            stats = session.get(base + "/api/stats", timeout=10).json()
            return stats.get("workers_alive", 0) >= processes

        wait_until(workers_alive, timeout=60, interval=0.2, what=f"{processes} live workers")
        children = payload["children"]
        job, sent = submit(session, base, {"type": "fanout", "payload": payload})
        done = wait_finished(session, base, job["id"], timeout=max(120.0, children * 0.2))
        if done["status"] != "completed" or done["counts"]["completed"] != children:
            raise BenchError(f"fan-out ended {done['status']} with counts {done['counts']}")
        seconds = parse_iso(done["finished_at"]) - sent
        return {
            "processes": processes,
            "threads": s["p6_threads"],
            "children": children,
            "seconds": round(seconds, 3),
            "rate": round(children / seconds, 2),
        }
    finally:
        ctx.procs.stop_many([server.proc for server in servers])
        try:
            pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            rds.flushdb()
        finally:
            pg.close()
            rds.close()


def speedup(ctx: Context, bench: str, payload: dict) -> list[dict]:
    """Rounds of 1 then `p6_procs` worker processes; records `<bench>.rate_1`, `.rate_4`
    and `.speedup`."""
    procs = ctx.sizes["p6_procs"]
    rounds = []
    for n, figure in ((1, "rate_1"), (procs, "rate_4")):  # rate_4: p6_procs processes
        print(f"  {n} worker process(es) × {ctx.sizes['p6_threads']} threads", flush=True)
        rounds.append(scaleout_round(ctx, n, bench.lower(), payload))
        print(f"    {rounds[-1]['rate']:.1f} jobs/s", flush=True)
        ctx.record(f"{bench}.{figure}", round(rounds[-1]["rate"], 1))
    ctx.record(f"{bench}.speedup", round(rounds[1]["rate"] / rounds[0]["rate"], 2))
    return rounds


def run(ctx: Context) -> None:
    """P6."""
    s = ctx.sizes
    payload = {
        "children": s["p6_jobs"],
        "child_type": "sleep",
        "child_payload": {"seconds": s["p6_sleep"]},
    }
    rounds = speedup(ctx, "P6", payload)
    ctx.detail("P6", rounds=rounds, sleep_seconds=s["p6_sleep"])


def run_big_tree(ctx: Context) -> None:
    """P9."""
    rounds = speedup(ctx, "P9", {"children": ctx.sizes["p9_children"], "child_type": "noop"})
    ctx.detail("P9", rounds=rounds)
