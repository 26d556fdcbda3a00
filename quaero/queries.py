"""Read-only queries behind the API and the page: listings, logs and stats."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace

import peewee

from quaero import clock
from quaero.db import dialect
from quaero.models import LOG_LEVELS, STATUSES, Job, JobLog, JobStatus, Worker, literal
from quaero.queue import JobQueue

WORKER_ALIVE_SECONDS = 60.0
RUNNING_LISTED = 200  # running job ids listed with the workers (the oldest), at most
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
HAS_ROOT_FAILURES = "parent_id IS NULL AND n_failed > 0"  # jobs_roots_failed's condition


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
        clauses.append(Job.status == literal(f.status))
    if f.type:
        clauses.append(Job.type == f.type)
    if f.q:
        match = Job.name.contains(f.q)
        if f.q.isdigit():
            match |= Job.id == int(f.q)
        clauses.append(match)
    return clauses


def roots_where(f: JobFilter) -> list[peewee.Expression]:
    """The WHERE clauses of a listing's filters (for bulk actions on what it lists)."""
    return _where(f)


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


def list_jobs(f: JobFilter, total: int | None = None) -> tuple[list[Job], int]:
    """One page of jobs (roots newest first, a tree's jobs oldest first) and the total
    (counted unless given: see `known_roots_total`).

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
    page = jobs_of(query.limit(f.limit).offset(f.offset))
    attach_running(page)
    if total is not None:
        return page, total
    if f.offset == 0 and len(page) < f.limit:
        total = len(page)
    else:
        total = Job.select().where(*clauses).count()
    return page, total


def jobs_of(query: peewee.Select) -> list[Job]:
    """The jobs a select of columns of `jobs` reads (`Job.from_row`)."""
    cursor = Job._meta.database.execute(query)
    names = [d[0] for d in cursor.description]
    return [Job.from_row(names, row) for row in cursor.fetchall()]


def known_roots_total(f: JobFilter, stats: dict) -> int | None:
    """How many roots a listing finds when `stats` (of `root_stats`) already counts them:
    no filter, a status, or only those with failures; None when it must be counted."""
    if not lists_roots(f) or f.type or f.q or f.has_failures is False:
        return None
    if f.has_failures:
        return None if f.status else stats["roots_with_failures"]
    if f.status:
        return stats["root_counts"].get(f.status, 0)
    return sum(stats["root_counts"].values())


def attach_running(jobs: list[Job]) -> None:
    """Count the running descendants of a page of jobs in one query per tree (the
    counters hold pending + running together as `n_open`)."""
    roots = [j for j in jobs if j.parent_id is None]
    if roots:
        # a root's jobs but itself (id <> root_id): jobs_root_status holds all it reads;
        # ids are ints, written in the SQL (peewee took longer to bind 50 than SQLite to
        # answer)
        ids = ", ".join(str(int(r.id)) for r in roots)
        running = dict(
            Job._meta.database.execute_sql(
                f"SELECT root_id, COUNT(*) FROM jobs WHERE root_id IN ({ids})"
                " AND status = 'running' AND id <> root_id GROUP BY root_id"
            ).fetchall()
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
            Job.root_id == root_id,
            Job.status == literal(JobStatus.RUNNING),
            Job.path.startswith(prefix),
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


#: One statement, so one snapshot: the ledger of quaero/counts.py, the finishes of
#: job_totals, and the running jobs (on the index jobs_status).
STORED_COUNTS_SQL = """
SELECT 'ledger', type, state, SUM(jobs) FROM job_counts GROUP BY type, state
UNION ALL SELECT 'finished', type, status, SUM(jobs) FROM job_totals GROUP BY type, status
UNION ALL SELECT 'running', type, status, COUNT(*) FROM jobs WHERE status = 'running'
    GROUP BY type, status
"""


def stored_counts() -> dict[tuple[str, str], int]:
    """Jobs stored by (type, status), every status of every type seen: read from a few
    dozen maintained rows and the running jobs, never by counting every job (the one
    place that reads them; see quaero/counts.py)."""
    ledger: dict[tuple[str, str], int] = {}
    finished: dict[tuple[str, str], int] = {}
    running: dict[str, int] = {}
    for source, type_, status, n in Job._meta.database.execute_sql(STORED_COUNTS_SQL):
        if source == "ledger":
            ledger[(type_, status)] = int(n)
        elif source == "finished":
            finished[(type_, status)] = int(n)
        else:
            running[type_] = int(n)
    result: dict[tuple[str, str], int] = {}
    for type_ in sorted({t for t, _ in ledger} | {t for t, _ in finished} | set(running)):
        open_ = ledger.get((type_, "open"), 0)
        open_ -= sum(n for (t, _), n in finished.items() if t == type_)
        result[(type_, JobStatus.RUNNING)] = running.get(type_, 0)
        result[(type_, JobStatus.PENDING)] = max(0, open_ - running.get(type_, 0))
        for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            stored = ledger.get((type_, status), 0) + finished.get((type_, status), 0)
            result[(type_, status.value)] = max(0, stored)
    return {key: n for key, n in result.items()}


def status_counts() -> dict[str, int]:
    """All jobs by status."""
    counts = dict.fromkeys(STATUSES, 0)
    for (_, status), n in stored_counts().items():
        counts[status] += n
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


def indexed_by(index: str) -> str:
    """SQLite: ` INDEXED BY index`. Without ANALYZE statistics SQLite prefers a wide
    index (every child of one parent) to a partial one that holds just the rows asked
    for; PostgreSQL's planner has statistics and needs no hint."""
    return f" INDEXED BY {index}" if dialect(Job._meta.database.obj) == "sqlite" else ""


def roots_with_failures() -> int:
    """How many roots have failed descendants (`has_failures=true` lists them): the
    entries of the partial index jobs_roots_failed, not every root."""
    sql = f"SELECT COUNT(*) FROM jobs{indexed_by('jobs_roots_failed')} WHERE {HAS_ROOT_FAILURES}"
    return int(Job._meta.database.execute_sql(sql).fetchone()[0])


def oldest_pending_created() -> float | None:
    """When the oldest pending job was created: the first entry of jobs_pending_created."""
    sql = (
        f"SELECT created_at FROM jobs{indexed_by('jobs_pending_created')}"
        " WHERE status = 'pending' ORDER BY created_at LIMIT 1"
    )
    row = Job._meta.database.execute_sql(sql).fetchone()
    return row[0] if row else None


def counts_by_type() -> list[tuple[str, str, int]]:
    """(type, status, count) for every combination present."""
    return [(type_, status, n) for (type_, status), n in stored_counts().items() if n]


def live_workers(now: float | None = None) -> list[dict]:
    """Workers that heartbeat recently, with the number of jobs each runs."""
    now = now or clock.now()
    workers = list(
        Worker.select().where(
            Worker.stopped_at.is_null(), Worker.last_heartbeat > now - WORKER_ALIVE_SECONDS
        )
    )
    if not workers:  # nothing to read the running jobs for
        return []
    # the running jobs' index, then their ids sorted: without the hint SQLite walks the
    # whole table in id order to skip the sort
    listed = Job._meta.database.execute_sql(
        f"SELECT worker_id, id FROM jobs{indexed_by('jobs_running')}"
        " WHERE status = 'running' AND worker_id IS NOT NULL"
        f" ORDER BY id LIMIT {RUNNING_LISTED + 1}"
    ).fetchall()
    running_ids: dict[str, list[int]] = {}
    for worker_id, job_id in listed[:RUNNING_LISTED]:
        running_ids.setdefault(worker_id, []).append(job_id)
    if len(listed) <= RUNNING_LISTED:  # all of them: counted from the same read
        running = {worker_id: len(ids) for worker_id, ids in running_ids.items()}
    else:
        running = dict(
            Job.select(Job.worker_id, peewee.fn.COUNT(Job.id))
            .where(Job.status == literal(JobStatus.RUNNING), Job.worker_id.is_null(False))
            .group_by(Job.worker_id)
            .tuples()
        )
    return [
        {
            "id": w.id,
            "hostname": w.hostname,
            "pid": w.pid,
            "threads": w.threads,
            "running": running.get(w.id, 0),
            "running_jobs": running_ids.get(w.id, []),
            "jobs_done": w.jobs_done,
            "started_at": w.started_at,
            "last_heartbeat": w.last_heartbeat,
            "clock_skew": None if w.clock_skew is None else round(w.clock_skew, 3),
        }
        for w in workers
    ]


def root_stats(queue: JobQueue, now: float | None = None) -> dict:
    """What the jobs page shows: roots by status, roots with failed descendants, queue
    depth and live workers."""
    workers = live_workers(now)
    return {
        "root_counts": root_status_counts(),
        "roots_with_failures": roots_with_failures(),
        "queue_depth": queue.depth(),
        "workers_alive": len(workers),
        "workers": workers,
    }


def stats(queue: JobQueue) -> dict:
    """Counts by status (of every job, and of roots), roots with failed descendants,
    queue depth, oldest pending age and live workers."""
    now = clock.now()
    oldest = oldest_pending_created()
    return {
        "counts": status_counts(),
        **root_stats(queue, now),
        "scheduled": queue.scheduled(),
        "oldest_pending_age": round(now - oldest, 3) if oldest else None,
    }


# -- triage (issue 16): a whole tree's descendants, failures by cause, logs, export ------

FINISHED = ("completed", "failed", "cancelled")
DESCENDANT_SORTS = ("id", "-id", "finished_at", "-finished_at", "duration", "-duration")
MAX_GROUPS = 200  # failure groups listed at most (the biggest causes come first anyway)
EXPORT_CHUNK = 1000  # rows read per query while streaming an export
EXPORT_COLUMNS = (
    "id", "parent_id", "depth", "type", "status", "name", "payload", "result", "error",
    "attempts", "created_at", "started_at", "finished_at",
)  # fmt: skip
#: Below this many jobs a tree's log tail reads each job's lines by index; above it, the
#: newest log lines are walked backwards and kept when their job is in the tree.
SMALL_TREE = 2000


@dataclass(frozen=True)
class DescendantFilter:
    """Filters, sort and paging of a job's descendants (every level below it)."""

    status: str | None = None
    type: str | None = None
    depth: int | None = None  # the jobs' own `depth` (a root is 0)
    error_group: str | None = None
    q: str | None = None
    sort: str = "id"
    limit: int = 50
    offset: int = 0

    @property
    def unfiltered(self) -> bool:
        """True when every descendant matches (the job's counters give the total)."""
        return not (
            self.status or self.type or self.depth is not None or self.error_group or self.q
        )


def subtree_below(job: Job) -> peewee.Expression:
    """SQL for the job's descendants: its tree's jobs whose path starts with the job's
    prefix, as a range of `path` (LIKE would not use an index; '0' follows '/')."""
    if job.parent_id is None:
        return (Job.root_id == job.id) & (Job.id != job.id)
    prefix = job.descendant_prefix
    return (Job.root_id == job.root_id) & (Job.path >= prefix) & (Job.path < prefix[:-1] + "0")


def _descendant_order(f: DescendantFilter) -> list[peewee.Node]:
    descending = f.sort.startswith("-")
    key = f.sort.lstrip("-")
    if key == "id":
        return [Job.id.desc() if descending else Job.id.asc()]
    column = Job.finished_at if key == "finished_at" else Job.finished_at - Job.started_at
    if key == "finished_at" and f.status in FINISHED:
        # finished jobs all have finished_at: a plain order (failed ones: it walks the
        # index jobs_root_failed instead of sorting the tree)
        return [column.desc(), Job.id.desc()] if descending else [column.asc(), Job.id.asc()]
    ordered = column.desc(nulls="LAST") if descending else column.asc(nulls="LAST")
    return [ordered, Job.id.asc()]


def list_descendants(job: Job, f: DescendantFilter) -> tuple[list[Job], int]:
    """One page of a job's descendants, every level, and their total."""
    clauses = [subtree_below(job)]
    if f.status:
        # as SQL text, so that the partial index jobs_root_failed serves it
        clauses.append(Job.status == literal(f.status))
    if f.type:
        clauses.append(Job.type == f.type)
    if f.depth is not None:
        clauses.append(Job.depth == f.depth)
    if f.error_group:
        clauses.append(Job.error_group == f.error_group)
    if f.q:
        match = Job.name.contains(f.q) | Job.payload.contains(f.q) | Job.error.contains(f.q)
        if f.q.isdigit():
            match |= Job.id == int(f.q)
        clauses.append(match)
    total = _counted_total(job, f)
    if total is None and f.offset > 0:
        total = Job.select().where(*clauses).count()  # needed anyway; first, to page by it
    ids = _page_ids(Job.select(Job.id).where(*clauses), f, total)
    columns = [
        *LISTED_FIELDS,
        peewee.fn.SUBSTR(Job.error, 1, ERROR_CHARS).alias("error"),
        json_text(Job.payload, "url").alias("summary_url"),
        json_text(Job.result, "title").alias("summary_title"),
    ]
    # the page's ids first, then its rows: PostgreSQL would otherwise compute the JSON
    # summaries of every row the offset skips
    page = []
    if ids is not None:
        page = list(Job.select(*columns).where(Job.id.in_(ids)).order_by(*_descendant_order(f)))
    attach_running(page)
    if total is None:
        total = len(page) if len(page) < f.limit else Job.select().where(*clauses).count()
    return page, total


def _counted_total(job: Job, f: DescendantFilter) -> int | None:
    """The number of matching descendants when the job's counters hold it: all of them,
    or those of one finished status (counters move with statuses, quaero.jobs)."""
    if f.unfiltered:
        return job.n_open + job.n_completed + job.n_failed + job.n_cancelled
    if f.status in FINISHED and replace(f, status=None).unfiltered:
        return getattr(job, f"n_{f.status}")
    return None


def _page_ids(ids: peewee.Select, f: DescendantFilter, total: int | None) -> peewee.Select | None:
    """The query of the page's ids (None: the page is past the end). In id order, a page
    in the second half of `total` is read from the end: an offset walks every entry it
    skips, so the last page costs what the first does."""
    if total is None or f.sort.lstrip("-") != "id" or f.offset <= total // 2:
        return ids.order_by(*_descendant_order(f)).limit(f.limit).offset(f.offset)
    left = total - f.offset  # rows from the page's first to the list's end
    if left <= 0:
        return None
    backwards = Job.id.asc() if f.sort.startswith("-") else Job.id.desc()
    return ids.order_by(backwards).limit(min(f.limit, left)).offset(max(0, left - f.limit))


def _groups(rows: list[tuple]) -> list[dict]:
    """Failure groups from (key, count, example id, first, last) rows: the message is
    the example's error, normalised."""
    from quaero import triage
    from quaero.serialize import iso

    examples = dict(
        Job.select(Job.id, peewee.fn.SUBSTR(Job.error, 1, 2 * triage.MAX_MESSAGE))
        .where(Job.id.in_([row[2] for row in rows]))
        .tuples()
    )
    return [
        {
            "key": key,
            "message": triage.normalise(examples.get(example) or ""),
            "count": count,
            "example_job_id": example,
            "first_at": iso(first),
            "last_at": iso(last),
        }
        for key, count, example, first, last in rows
    ]


def _group_rows(where: list[peewee.Expression]) -> list[dict]:
    query = (
        Job.select(
            Job.error_group,
            peewee.fn.COUNT(Job.id),
            peewee.fn.MAX(Job.id),
            peewee.fn.MIN(Job.finished_at),
            peewee.fn.MAX(Job.finished_at).alias("last_at"),
        )
        .where(Job.error_group.is_null(False), *where)
        .group_by(Job.error_group)
        .order_by(peewee.SQL("last_at").desc())
        .limit(MAX_GROUPS)
    )
    return _groups(list(query.tuples()))


def tree_failures(job: Job) -> list[dict]:
    """A job's failed descendants (and itself) grouped by cause, newest group first."""
    if job.parent_id is None:
        return _group_rows([Job.root_id == job.id])
    return _group_rows([subtree_below(job) | (Job.id == job.id)])


def failures(type: str | None = None, since: float | None = None) -> list[dict]:
    """Failures of every tree grouped by cause, newest group first."""
    where = []
    if type:
        where.append(Job.type == type)
    if since is not None:
        where.append(Job.finished_at >= since)
    return _group_rows(where)


def tree_logs(
    job: Job, level: str | None = None, after_id: int | None = None, limit: int = 200
) -> list[JobLog]:
    """Log lines of a job and all its descendants, in time (id) order: after `after_id`
    or the tail, at `level` or above."""
    in_tree = subtree_below(job) | (Job.id == job.id)
    if job.counts["total"] < SMALL_TREE:
        ids = [i for (i,) in Job.select(Job.id).where(in_tree).tuples()]
        query = JobLog.select().where(JobLog.job_id.in_(ids))
    else:
        # CROSS JOIN keeps SQLite's loop order: the newest log lines first, each checked
        # against its job by primary key, so a tail stops after `limit` lines of the tree
        query = (
            JobLog.select(JobLog)
            .join(Job, peewee.JOIN.CROSS)
            .where(Job.id == JobLog.job_id, in_tree)
        )
    if level and level != LOG_LEVELS[0]:
        query = query.where(JobLog.level.in_(LOG_LEVELS[LOG_LEVELS.index(level) :]))
    if after_id is not None:
        return list(query.where(JobLog.id > after_id).order_by(JobLog.id).limit(limit))
    return list(reversed(query.order_by(JobLog.id.desc()).limit(limit)))


def export_rows(job: Job) -> Iterator[tuple]:
    """Every descendant of a job as a tuple of `EXPORT_COLUMNS`, read `EXPORT_CHUNK` rows
    at a time (keyset paging on the id: no open cursor, no tree in memory), as the
    driver returns them: no model or dict per row."""
    columns = [getattr(Job, name) for name in EXPORT_COLUMNS]
    db = Job._meta.database
    last = 0
    while True:
        query = (
            Job.select(*columns)
            .where(subtree_below(job), Job.id > last)
            .order_by(Job.id)
            .limit(EXPORT_CHUNK)
        )
        chunk = db.execute(query).fetchall()
        yield from chunk
        if len(chunk) < EXPORT_CHUNK:
            return
        last = chunk[-1][0]
