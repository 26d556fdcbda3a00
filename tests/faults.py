"""Helpers of the fault tests: a web + workers stack on the test's own PostgreSQL and
Redis, a monitor that records every status the API answers, and exact counts of lost,
duplicated and stuck jobs."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from tests.helpers import wait_for as wait_until
from tests.procs import RunPy, free_port, write_config
from tests.services import OwnPostgres, OwnRedis

FINAL = ("completed", "failed", "cancelled")


@dataclass
class Stack:
    """One `web` and N `worker` processes of run.py sharing a config."""

    base: str
    config: Path
    web: RunPy
    workers: list[RunPy]
    db_url: str

    def stop(self) -> None:
        """Kill every process; their output is kept in the config's folder."""
        for i, proc in enumerate([self.web, *self.workers]):
            if proc.proc is not None:
                (self.config.parent / f"{proc.command}-{i}.log").write_text(proc.output())
            proc.stop()

    def alive(self) -> bool:
        return all(p.proc.poll() is None for p in [self.web, *self.workers])


def start_stack(
    tmp_path: Path,
    pg: OwnPostgres,
    redis: OwnRedis,
    workers: int = 2,
    settings: str = "",
    envs: list[dict[str, str]] | None = None,
) -> Stack:
    """Start web and workers on `pg` and `redis` with short leases; wait until all are up.

    `settings` (TOML) is added to the config; `envs[i]` to worker i's environment."""
    port = free_port()
    config = write_config(
        tmp_path,
        port,
        f"""
[queue]
backend = "redis"
url = "{redis.url}"
num_workers = 4
[database]
url = "{pg.url}"
max_connections = 12
[jobs]
lease_seconds = 4
reaper_interval = 0.5
retry_base_seconds = 0.2
"""
        + settings,
    )
    base = f"http://127.0.0.1:{port}"
    web = RunPy("web", config).start()
    stack = Stack(base, config, web, [], pg.url)
    try:
        web.wait_healthy(base)
        envs = envs or [{}] * workers
        stack.workers = [RunPy("worker", config, envs[i]).start() for i in range(workers)]
        wait_until(lambda: get_json(base, "/api/stats").get("workers_alive") == workers, 30)
    except BaseException:
        stack.stop()
        raise
    return stack


def get_json(base: str, path: str) -> dict:
    """GET `path`; {} when it does not answer 200 (the store is away)."""
    try:
        response = requests.get(base + path, timeout=5)
    except requests.RequestException:
        return {}
    return response.json() if response.status_code == 200 else {}


def wait_final(base: str, job_id: int, timeout: float) -> dict:
    """Poll a job until it is finished, tolerating 503 answers meanwhile."""

    def done():
        job = get_json(base, f"/api/jobs/{job_id}")
        return job if job.get("status") in FINAL else None

    return wait_until(done, timeout, 0.2)


@dataclass
class Monitor:
    """Polls `paths` in a thread and records (time, path, status); 0 = no answer."""

    base: str
    paths: tuple[str, ...] = ("/api/stats", "/healthz")
    seen: list[tuple[float, str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Monitor:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for path in self.paths:
                try:
                    status = requests.get(self.base + path, timeout=5).status_code
                except requests.RequestException:
                    status = 0
                self.seen.append((time.monotonic(), path, status))

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> set[int]:
        return {status for t, _, status in self.seen if since <= t <= until}


def tree_rows(db_url: str, root_id: int) -> list[tuple[str, str]]:
    """(url, status) of every job under a root (the root excluded)."""
    with psycopg.connect(db_url) as db:
        return db.execute(
            "SELECT payload::json->>'url', status FROM jobs WHERE root_id = %s AND id != %s",
            (root_id, root_id),
        ).fetchall()


def crawl(base: str, url: str, depth: int) -> int:
    response = requests.post(
        f"{base}/api/jobs",
        json={"type": "crawler", "payload": {"url": url, "depth": depth, "max_pages": 1000}},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


#: Where the fault tests write their figures (lost, stuck, run twice, time to recover);
#: `python -m tests.faults_report` renders docs/faults.md from it.
FIGURES_ENV = "QUAERO_FAULT_FIGURES"


def figures_path() -> Path:
    """The figures file: $QUAERO_FAULT_FIGURES, else one beside pytest's temp folders."""
    import os
    import tempfile

    default = Path(tempfile.gettempdir()) / "quaero-fault-figures.json"
    return Path(os.environ.get(FIGURES_ENV) or default)


def record_figures(scenario: str, fault: str, **figures) -> None:
    """Merge one scenario's figures into the figures file (its last run wins)."""
    import json

    path = figures_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[scenario] = {"fault": fault, "at": time.strftime("%Y-%m-%d %H:%M"), **figures}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
