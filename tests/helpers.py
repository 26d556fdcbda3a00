"""Helpers shared by the tests (import them from here, not from conftest: pytest loads
several conftest modules, and `import conftest` would pick one at random)."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from quaero import config as config_mod
from quaero.config import Config


def make_config(tmp_path: Path, **sections: dict) -> Config:
    """A config whose files live in tmp_path, tuned for fast tests."""
    base = config_mod.build({}, base_dir=tmp_path, environ={})
    defaults = {
        "server": {"port": 0},
        "queue": {"poll_interval": 0.02, "num_workers": 4},
        "jobs": {
            "lease_seconds": 5.0,
            "retry_base_seconds": 0.05,
            "reaper_interval": 0.5,
            "shutdown_grace": 2.0,
            "demo_types": True,
        },
        "crawler": {"allow_private_networks": True, "timeout": 5.0},
    }
    for name, values in sections.items():
        defaults[name] = {**defaults.get(name, {}), **values}
    return config_mod.replace(base, **defaults)


PG_URL = os.environ.get("QUAERO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("QUAERO_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> None:
    """Skip a test whose server is missing, except in CI where that is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the scale-out servers must be running)")
    pytest.skip(reason)


@contextlib.contextmanager
def scale_out_backend() -> Iterator[dict]:
    """A fresh PostgreSQL schema and Redis queue name; both dropped afterwards."""
    import psycopg
    import redis

    name = f"qt_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        admin.close()
        unavailable(f"Redis not reachable at {REDIS_URL}: {exc}")
    admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield {
            "database": {"url": f"{PG_URL}?options=-csearch_path%3D{name}", "max_connections": 10},
            "queue": {"backend": "redis", "url": REDIS_URL, "name": name},
        }
    finally:
        try:
            _drop_schema(admin, name)
        finally:
            admin.close()
        keys = client.keys(f"huey.*.{name}*")
        if keys:
            client.delete(*keys)
        client.close()


#: Threads of a worker run in the test process: quaero's own, Huey's, a timed-out job's.
WORKER_THREAD_NAMES = re.compile(
    r"quaero-(heartbeat|maintenance|schedules|checkpoint)$|Worker-\d+$|Scheduler$|job-\d+$"
)


def stop_worker(service) -> None:
    """Stop an in-process `WorkerService` as its process would, then wait for its
    threads to end (see `wait_for_worker_threads`)."""
    service.consumer.stop(graceful=True)
    service.stop()
    wait_for_worker_threads()


def wait_for_worker_threads(timeout: float = 30.0) -> None:
    """Wait until no worker thread is left in this process, or fail the test.

    A job thread that outlives its test would go on in the next test's database: the
    models' proxy points there by then. (A job handed back at stop sees itself
    cancelled at its next check, so its thread ends soon after.)"""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if WORKER_THREAD_NAMES.match(thread.name):
            thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threading.enumerate() if WORKER_THREAD_NAMES.match(t.name)]
    if left:
        pytest.fail(f"worker threads still running {timeout:g}s after their test: {left}")


def _drop_schema(admin, name: str) -> None:
    """Drop a test's schema; a session still holding a lock there (a leak: a connection
    left in a transaction) fails the test, named, instead of hanging the suite."""
    import psycopg

    admin.execute("SET lock_timeout = '10s'")
    try:
        admin.execute(f"DROP SCHEMA {name} CASCADE")
        return
    except psycopg.errors.LockNotAvailable:
        blockers = admin.execute(
            "SELECT DISTINCT a.pid, a.state, left(a.query, 200) FROM pg_locks l "
            "JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE n.nspname = %s AND l.pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    for pid, _, _ in blockers:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.execute(f"DROP SCHEMA {name} CASCADE")
    pytest.fail(f"sessions still held locks in schema {name} after the test: {blockers}")


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05):
    """Poll until `predicate()` is truthy; return it, or fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def wait_for_job(base_url: str, job_id: int, timeout: float = 60.0) -> dict:
    """Poll the API until a job is finished; return its JSON."""

    def finished():
        job = requests.get(f"{base_url}/api/jobs/{job_id}", timeout=5).json()
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    return wait_for(finished, timeout=timeout, interval=0.1)
