"""Read-only queries behind the API and the page: listings, logs and stats."""

from __future__ import annotations

import os
from dataclasses import dataclass

import peewee

from quaero import clock
from quaero.db import dialect
from quaero.models import LOG_LEVELS, STATUSES, Job, JobLog, JobStatus, Worker
from quaero.queue import JobQueue

WORKER_ALIVE_SECONDS = 60.0
SUMMARY_CHARS = 200  # of a listed job's payload URL and result title
ERROR_CHARS = 1000  # of a listed job's error (the details carry all of it)
LISTED_FIELDS = [
    f for f in Job._meta.sorted_fields if f.name not in ("payload", "result", "traceback", "error")
]


@dataclass(frozen=True)
class JobFilter:
    """Filters and paging of a job listing: roots, unless `parent_id` (a job's children)
    or `root_id` (every job of one tree, its root included) is given."""

    parent_id: int | None = None
    root_id: int | None = None
    has_failures: bool | None = None  # roots (or jobs) with failed descendants, or without
    status: str | None = None
    type: str | None = None
    q: str | None = None
    limit: int = 50
    offset: int = 0


# Literal SQL, not a bound parameter: SQLite uses a partial index only when the query's
# WHERE clause spells out its condition (migrations/007_roots_with_failures.sql).
HAS_FAILURES = peewee.SQL("n_failed > 0")
NO_FAILURES = peewee.SQL("n_failed = 0")


def lists_roots(f: JobFilter) -> bool:
    """True when the listing is of root jobs (no tree or parent chosen)."""
    return f.parent_id is None and f.root_id is None


def _where(f: JobFilter) -> list[peewee.Expression]:
    clauses = []
    if f.root_id is not None:
        clauses.append(Job.root_id == f.root_id)
    if f.parent_id is not None:
        clauses.append(Job.parent_id == f.parent_id)
    if lists_roots(f):
        clauses.append(Job.parent_id.is_null())
    if f.has_failures is not None:
        clauses.append(HAS_FAILURES if f.has_failures else NO_FAILURES)
    if f.status:
        clauses.append(Job.status == f.status)
    if f.type:
        clauses.append(Job.type == f.type)
    if f.q:
        match = Job.name.contains(f.q)
        if f.q.isdigit():
            match |= Job.id == int(f.q)
        clauses.append(match)
    return clauses


def json_text(column: peewee.Field, key: str) -> peewee.Node:
    """SQL for `column`'s top-level string `key` (JSON text), cut to SUMMARY_CHARS: the
    database reads it, so a listing never loads whole payloads or results."""
    name = column.column_name
    if dialect(Job._meta.database.obj) == "postgresql":
        return peewee.SQL(
            f"substr(CASE WHEN {name} LIKE '{{%%' THEN ({name}::jsonb ->> '{key}') END, 1, "
            f"{SUMMARY_CHARS})"
        )
    return peewee.SQL(
        f"CASE WHEN json_valid({name}) THEN substr(json_extract({name}, '$.{key}'), 1, "
        f"{SUMMARY_CHARS}) END"
    )


def list_jobs(f: JobFilter) -> tuple[list[Job], int]:
    """One page of jobs (roots newest first, a tree's jobs oldest first) and the total.

    The jobs carry no payload, result or traceback (a page of 500 crawl pages would be
    tens of MB): `summary_url` and `summary_title` instead, and the error cut short.
    """
    clauses = _where(f)
    order = Job.id.desc() if lists_roots(f) else Job.id.asc()
    columns = [
        *LISTED_FIELDS,
        peewee.fn.SUBSTR(Job.error, 1, ERROR_CHARS).alias("error"),
        json_text(Job.payload, "url").alias("summary_url"),
        json_text(Job.result, "title").alias("summary_title"),
    ]
    query = Job.select(*columns).where(*clauses).order_by(order)
    page = list(query.limit(f.limit).offset(f.offset))
    attach_running(page)
    if f.offset == 0 and len(page) < f.limit:
        total = len(page)
    else:
        total = Job.select().where(*clauses).count()
    return page, total


def attach_running(jobs: list[Job]) -> None:
    """Count the running descendants of a page of jobs in one query per tree (the
    counters hold pending + running together as `n_open`)."""
    roots = [j for j in jobs if j.parent_id is None]
    if roots:
        running = dict(
            Job.select(Job.root_id, peewee.fn.COUNT(Job.id))
            .where(
                Job.root_id.in_([r.id for r in roots]),
                Job.status == JobStatus.RUNNING,
                Job.parent_id.is_null(False),
            )
            .group_by(Job.root_id)
            .tuples()
        )
        for root in roots:
            root.__dict__["_running"] = running.get(root.id, 0)
    by_root: dict[int, list[Job]] = {}
    for job in jobs:
        if job.parent_id is not None:
            by_root.setdefault(job.root_id, []).append(job)
    for root_id, group in by_root.items():
        prefix = os.path.commonprefix([j.path for j in group])
        prefix = prefix[: prefix.rfind("/") + 1]
        wanted = {j.id: 0 for j in group}
        paths = Job.select(Job.path).where(
            Job.root_id == root_id, Job.status == JobStatus.RUNNING, Job.path.startswith(prefix)
        )
        for (path,) in paths.tuples().iterator():
            for ancestor in path.strip("/").split("/"):
                if ancestor and int(ancestor) in wanted:
                    wanted[int(ancestor)] += 1
        for job in group:
            job.__dict__["_running"] = wanted[job.id]


def get_job(job_id: int) -> Job | None:
    """A job by id, or None."""
    return Job.get_or_none(Job.id == job_id)


def job_logs(
    job_id: int, level: str | None = None, after_id: int | None = None, limit: int = 200
) -> list[JobLog]:
    """Log lines of a job at `level` or above: after `after_id` (oldest first) or the tail."""
    query = JobLog.select().where(JobLog.job_id == job_id)
    if level and level != LOG_LEVELS[0]:
        query = query.where(JobLog.level.in_(LOG_LEVELS[LOG_LEVELS.index(level) :]))
    if after_id is not None:
        return list(query.where(JobLog.id > after_id).order_by(JobLog.id).limit(limit))
    return list(reversed(query.order_by(JobLog.id.desc()).limit(limit)))


def status_counts() -> dict[str, int]:
    """All jobs by status."""
    counts = dict.fromkeys(STATUSES, 0)
    rows = Job.select(Job.status, peewee.fn.COUNT(Job.id)).group_by(Job.status).tuples()
    counts.update(dict(rows))
    return counts


def root_status_counts() -> dict[str, int]:
    """Root jobs by status: what the status filters of a listing of roots find."""
    counts = dict.fromkeys(STATUSES, 0)
    rows = (
        Job.select(Job.status, peewee.fn.COUNT(Job.id))
        .where(Job.parent_id.is_null())
        .group_by(Job.status)
        .tuples()
    )
    counts.update(dict(rows))
    return counts


def roots_with_failures() -> int:
    """How many roots have failed descendants (`has_failures=true` lists them)."""
    return Job.select().where(Job.parent_id.is_null(), HAS_FAILURES).count()


def counts_by_type() -> list[tuple[str, str, int]]:
    """(type, status, count) for every combination present."""
    return list(
        Job.select(Job.type, Job.status, peewee.fn.COUNT(Job.id))
        .group_by(Job.type, Job.status)
        .tuples()
    )


def live_workers(now: float | None = None) -> list[dict]:
    """Workers that heartbeat recently, with the number of jobs each runs."""
    now = now or clock.now()
    running = dict(
        Job.select(Job.worker_id, peewee.fn.COUNT(Job.id))
        .where(Job.status == JobStatus.RUNNING, Job.worker_id.is_null(False))
        .group_by(Job.worker_id)
        .tuples()
    )
    workers = Worker.select().where(
        Worker.stopped_at.is_null(), Worker.last_heartbeat > now - WORKER_ALIVE_SECONDS
    )
    return [
        {
            "id": w.id,
            "hostname": w.hostname,
            "pid": w.pid,
            "threads": w.threads,
            "running": running.get(w.id, 0),
            "jobs_done": w.jobs_done,
            "started_at": w.started_at,
            "last_heartbeat": w.last_heartbeat,
            "clock_skew": None if w.clock_skew is None else round(w.clock_skew, 3),
        }
        for w in workers
    ]


def stats(queue: JobQueue) -> dict:
    """Counts by status (of every job, and of roots), roots with failed descendants,
    queue depth, oldest pending age and live workers."""
    now = clock.now()
    oldest = (
        Job.select(peewee.fn.MIN(Job.created_at)).where(Job.status == JobStatus.PENDING).scalar()
    )
    workers = live_workers(now)
    return {
        "counts": status_counts(),
        "root_counts": root_status_counts(),
        "roots_with_failures": roots_with_failures(),
        "queue_depth": queue.depth(),
        "scheduled": queue.scheduled(),
        "oldest_pending_age": round(now - oldest, 3) if oldest else None,
        "workers_alive": len(workers),
        "workers": workers,
    }
