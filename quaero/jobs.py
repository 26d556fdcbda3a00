"""JobManager: the only writer of `jobs` and `job_logs`.

Every status change is a named transition here, guarded in SQL so that it happens at
most once (`pending → running` only from pending, completion only by the lease holder).
Descendant counters (`n_open` for pending or running, `n_completed`, `n_failed`,
`n_cancelled`) of every ancestor move in the same
transaction as the change, so a page of roots reads its counts and progress for free.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any, TypeVar

import peewee

from quaero import totals, triage
from quaero.config import Config
from quaero.db import dialect
from quaero.errors import Conflict, LeaseLost, NotFound
from quaero.executors.base import ChildSpec
from quaero.models import (
    FINAL_STATUSES,
    LOG_LEVELS,
    TREE_STATE_TABLES,
    UNFINISHED,
    Job,
    JobLog,
    JobStatus,
    Worker,
)
from quaero.queue import JobQueue

logger = logging.getLogger(__name__)

T = TypeVar("T")
COUNTER = {
    "pending": Job.n_open,
    "running": Job.n_open,
    "completed": Job.n_completed,
    "failed": Job.n_failed,
    "cancelled": Job.n_cancelled,
}
MAX_LOG_MESSAGE = 10_000
INSERT_CHUNK = 500
#: What an executor buffered: log lines (level, message, time) and its last progress.
Report = tuple[list[tuple[str, str, float]], float | None]
RETRYABLE_DB_ERRORS = (
    "database is locked",
    "deadlock detected",
    "could not serialize",
    "connection lost before commit",  # quaero.db.ConnectionLost: nothing was written
)


# The hot path (every job passes here twice) as plain SQL: building these with peewee's
# query builder cost ~0.5 ms a statement, more than SQLite takes to run them. `{p}` is the
# driver's placeholder.
CLAIM_SQL = (
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = {p},"
    " updated_at = {p}, worker_id = {p}, lease_expires_at = {p}, run_after = NULL,"
    " lease_epoch = lease_epoch + 1"
    " WHERE id = {p} AND status = 'pending' AND paused = FALSE"
    " AND (run_after IS NULL OR run_after <= {p}) RETURNING *"
)
FINISH_SQL = (
    "UPDATE jobs SET outcome = {p},"
    " status = CASE WHEN n_open = 0 THEN {p} ELSE 'running' END,"
    " finished_at = CASE WHEN n_open = 0 THEN {p} ELSE NULL END,"
    " result = {p}, error = {p}, traceback = {p}, progress = COALESCE({p}, progress),"
    " worker_id = NULL, lease_expires_at = NULL, updated_at = {p}"
    " WHERE id = {p} AND status = 'running' AND worker_id = {p} AND lease_epoch = {p}"
    " AND (lease_expires_at < {p} OR {p}) RETURNING status"
)
STILL_HELD_SQL = (
    "UPDATE jobs SET progress = COALESCE({p}, progress), updated_at = {p}"
    " WHERE id = {p} AND status IN ('running', 'cancelled') AND lease_epoch = {p}"
    " AND outcome IS NULL"
    " RETURNING id"
)
SETTLE_SQL = (
    "UPDATE jobs SET status = outcome, finished_at = {p}, updated_at = {p}"
    " WHERE id = {p} AND status = 'running' AND outcome IS NOT NULL AND n_open = 0"
    " RETURNING parent_id, path, outcome, type, started_at"
)
CHILD_INSERT_SQL = (
    "INSERT INTO jobs (parent_id, root_id, path, depth, type, name, status, paused, payload,"
    " dedup_key, max_attempts, priority, created_at, updated_at) VALUES"
)
CHILD_VALUES = "({p}, {p}, {p}, {p}, {p}, {p}, 'pending', {p}, {p}, {p}, {p}, {p}, {p}, {p})"
COUNTER_COLUMNS = {
    "pending": "n_open",
    "running": "n_open",
    "completed": "n_completed",
    "failed": "n_failed",
    "cancelled": "n_cancelled",
}


def new_worker_id() -> str:
    """A worker id that names its host and process: `host:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"


class JobManager:
    """Creates jobs, moves them through their states, and records their logs."""

    def __init__(self, db: peewee.Database, queue: JobQueue, config: Config) -> None:
        self.db = db
        self.queue = queue
        self.config = config
        self.is_postgres = dialect(db) == "postgresql"
        param = db.param
        self._claim_sql = CLAIM_SQL.format(p=param)
        self._finish_sql = FINISH_SQL.format(p=param)
        self._settle_sql = SETTLE_SQL.format(p=param)
        self._still_held_sql = STILL_HELD_SQL.format(p=param)
        self._child_values = CHILD_VALUES.format(p=param)
        # SQLite has one writer at a time; queueing this process's writers on a Python
        # lock wakes the next one at once, where SQLite's busy handler would sleep ms.
        self._write_lock = nullcontext() if self.is_postgres else threading.RLock()
        #: when an enqueue (or a claim) last failed: the maintenance thread then sweeps
        #: for orphans every reaper round for a while, not every 30 s
        self.enqueue_failed_at = -1e9
        #: why the last write transaction failed; None once one succeeds (see /healthz)
        self.write_error: str | None = None

    # -- plumbing -----------------------------------------------------------------

    def transaction(self, fn: Callable[[], T], durable: bool = True, attempts: int = 5) -> T:
        """Run `fn` in one write transaction, retrying on lock timeouts and deadlocks.

        `durable=False` (PostgreSQL) commits without waiting for the WAL flush: for the
        workers' own transitions, which a database crash can only undo as a whole and in
        order, so the job runs again (at-least-once), never vanishes. Submissions and
        user actions stay durable.
        """
        for attempt in range(attempts):
            try:
                with self._write_lock, self.db.atomic():
                    if not durable and self.is_postgres:
                        self.db.execute_sql("SET LOCAL synchronous_commit TO OFF")
                    result = fn()
                self.write_error = None
                return result
            except peewee.OperationalError as exc:
                if attempt == attempts - 1 or not any(m in str(exc) for m in RETRYABLE_DB_ERRORS):
                    self._write_failed(exc)
                    raise
                logger.warning("transaction retried after: %s", exc)
                time.sleep(0.05 * (attempt + 1) * random.random())
            except peewee.PeeweeException as exc:
                self._write_failed(exc)
                raise
        raise AssertionError("unreachable")

    def _write_failed(self, exc: Exception) -> None:
        self.write_error = f"{type(exc).__name__}: {exc}"

    def check_writes(self) -> str | None:
        """None when the metadata store takes writes, else why not (for /healthz).

        The last write transaction of this process decides; after a failure, a probe
        write (one row rewritten in place) finds out whether the store is back."""
        if self.write_error is None:
            return None
        probe = "UPDATE schema_migrations SET applied_at = applied_at WHERE name = ("
        probe += "SELECT MIN(name) FROM schema_migrations)"
        try:
            self.transaction(lambda: self.db.execute_sql(probe), attempts=1)
        except peewee.PeeweeException:
            pass
        return self.write_error

    def _enqueue_or_sweep(self, jobs: list[tuple[int, int]], delay: float = 0.0) -> None:
        """Enqueue jobs already committed as pending; if the queue refuses (full disk,
        Redis away), leave them to the orphan sweep, which then runs every reaper round
        for a while instead of every 30 s."""
        try:
            if delay:
                for job_id, priority in jobs:
                    self.queue.enqueue_later(job_id, priority, delay)
            else:
                self.queue.enqueue(jobs)
        except Exception as exc:  # the jobs are safe in `jobs`; the sweep enqueues them
            self.enqueue_failed_at = time.monotonic()
            logger.warning("%d jobs not enqueued (%s); the orphan sweep will", len(jobs), exc)

    def _shift(
        self, ids: Iterable[int], changes: dict[str, int]
    ) -> dict[int, tuple[int, str | None]]:
        """Add `changes` (status → delta) to the descendant counters of jobs `ids`;
        returns each changed job's new (n_open, outcome)."""
        ids = list(ids)
        deltas: dict[str, int] = {}
        for status, delta in changes.items():
            column = COUNTER_COLUMNS[status]
            deltas[column] = deltas.get(column, 0) + delta
        deltas = {column: delta for column, delta in deltas.items() if delta}
        if ids and deltas:  # pending <-> running moves no counter
            p = self.db.param
            sets = ", ".join(f"{column} = {column} + {p}" for column in deltas)
            where = ", ".join([p] * len(ids))
            sql = f"UPDATE jobs SET {sets} WHERE id IN ({where}) RETURNING id, n_open, outcome"
            rows = self.db.execute_sql(sql, [*deltas.values(), *ids]).fetchall()
            return {job_id: (n_open, outcome) for job_id, n_open, outcome in rows}
        return {}

    def _lock(self, ids: Iterable[int]) -> None:
        """PostgreSQL: row-lock jobs in ascending id order before changing any of them.

        Every transaction locks the chain root → … → job it changes first. Ids grow
        down a tree, so all transactions take locks in one global order and can never
        deadlock; the root row serialises the changes of one tree, as SQLite's single
        writer does. SQLite needs nothing: BEGIN IMMEDIATE already serialises writers.
        """
        if self.is_postgres:
            ids = sorted(set(ids))
            if ids:
                list(Job.select(Job.id).where(Job.id.in_(ids)).order_by(Job.id).for_update())

    def _lock_chain(self, job: Job) -> None:
        """Lock a job and its ancestors (PostgreSQL), root first."""
        self._lock([*job.ancestor_ids, job.id])

    def _settle(self, job_id: int | None, now: float) -> None:
        """Finish ancestors whose own work is done and whose descendants all finished."""
        while job_id is not None:
            row = self.db.execute_sql(self._settle_sql, (now, now, job_id)).fetchone()
            if row is None:
                return
            parent_id, path, outcome, type_, started_at = row
            totals.record_finished(self.db, [(type_, outcome, started_at, now)])
            ancestors = [int(part) for part in path.strip("/").split("/") if part]
            self._shift(ancestors, {"running": -1, outcome: 1})
            job_id = parent_id

    def _write_report(
        self, job_id: int, report: Report | None, now: float, with_progress: bool = True
    ) -> None:
        if not report:
            return
        logs, progress = report
        self._log_rows([self._log_row(job_id, level, msg, ts) for level, msg, ts in logs])
        if with_progress and progress is not None:
            fraction = max(0.0, min(1.0, float(progress)))
            Job.update(progress=fraction, updated_at=now).where(Job.id == job_id).execute()

    def write_report(
        self, job: Job, logs: list[tuple[str, str, float]], progress: float | None
    ) -> bool:
        """Write log lines and progress an executor buffered, in one transaction, if
        this attempt still owns the job (running, or cancelled while it ran); False,
        and nothing written, for a stale attempt whose job another attempt took over."""
        now = time.time()
        if progress is not None:
            progress = max(0.0, min(1.0, float(progress)))
        fence = self._still_held_sql

        def write() -> bool:
            # one statement both proves the attempt still holds the job and sets progress
            held = self.db.execute_sql(fence, (progress, now, job.id, job.lease_epoch)).fetchone()
            if held is None:
                return False
            self._write_report(job.id, (logs, None), now)
            return True

        return self.transaction(write, durable=False)

    def _log_rows(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            JobLog.insert_many(rows).execute()

    @staticmethod
    def _log_row(job_id: int, level: str, message: str, now: float) -> dict[str, Any]:
        if level not in LOG_LEVELS:
            level = "info"
        return {
            "job_id": job_id,
            "level": level,
            "message": str(message)[:MAX_LOG_MESSAGE],
            "created_at": now,
        }

    # -- creating -------------------------------------------------------------------

    def create_root(
        self,
        type: str,
        payload: dict[str, Any],
        name: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
        in_transaction: Callable[[Job], None] | None = None,
    ) -> Job:
        """Create a root job and put it on the queue; `in_transaction(job)` runs in the
        inserting transaction (an idempotency key is recorded there; raising undoes it)."""
        now = time.time()

        def insert() -> Job:
            job = Job.create(
                root_id=0,
                path="/",
                depth=0,
                type=type,
                name=name or "",
                status="pending",
                payload=json.dumps(payload),
                max_attempts=max_attempts or self.config.jobs.max_attempts,
                priority=priority,
                timeout=timeout,
                created_at=now,
                updated_at=now,
            )
            Job.update(root_id=job.id).where(Job.id == job.id).execute()
            job.root_id = job.id
            JobLog.insert(self._log_row(job.id, "info", f"{type} job submitted", now)).execute()
            if in_transaction:
                in_transaction(job)
            return job

        job = self.transaction(insert)
        fault_point("before-enqueue")
        self.queue.enqueue([(job.id, priority)])
        return job

    def spawn_children(
        self,
        parent: Job,
        specs: list[ChildSpec],
        root_limit: int | None = None,
        position: int = 0,
    ) -> list[int]:
        """Create children of `parent` in one transaction, then enqueue them.

        Specs whose `dedup_key` already exists in the tree are skipped (a unique index
        decides, so concurrent spawners and a re-run of the parent agree); with
        `root_limit` the tree never grows past that many descendants of the root.
        Whatever an executor asks, a job gets at most `[jobs] max_children` children
        (`position`: how many this attempt asked for before) and a tree at most
        `max_tree_size` jobs; what is cut is logged on the parent. Raises LeaseLost when
        this attempt of `parent` no longer holds it.
        """
        if not specs:
            return []
        now = time.time()
        path = parent.descendant_prefix

        def insert() -> list[tuple[int, int]]:
            # The parent must still be running: a cancel that committed first wins, so
            # no child of a cancelled job is ever created (the chain lock orders them).
            self._lock_chain(parent)
            row = (
                Job.select(Job.status, Job.paused, Job.lease_epoch)
                .where(Job.id == parent.id)
                .first()
            )
            if row is None or row.status != "running" or row.lease_epoch != parent.lease_epoch:
                raise LeaseLost(f"job {parent.id}: this attempt no longer holds it")
            paused = bool(row.paused)
            root = Job.get_or_none(Job.id == parent.root_id)
            total = root.n_open + root.n_completed + root.n_failed + root.n_cancelled if root else 0
            caps = self.config.jobs
            room = min(caps.max_children - position, caps.max_tree_size - 1 - total)
            if room < len(specs):
                cut = len(specs) - max(0, room)
                message = (
                    f"{cut} children not created: a job may have {caps.max_children} "
                    f"children and a tree {caps.max_tree_size} jobs ([jobs] max_children, "
                    "max_tree_size)"
                )
                self._log_rows([self._log_row(parent.id, "warning", message, now)])
            if root_limit is not None:
                room = min(room, root_limit - total)
            todo = specs[: max(0, room)]
            default_attempts = self.config.jobs.max_attempts
            rows = [
                (
                    parent.id,
                    parent.root_id,
                    path,
                    parent.depth + 1,
                    spec.type,
                    spec.name or "",
                    paused,
                    json.dumps(spec.payload),
                    spec.dedup_key,
                    spec.max_attempts or default_attempts,
                    parent.priority if spec.priority is None else spec.priority,
                    now,
                    now,
                )  # fmt: skip
                for spec in todo
            ]
            ids: list[tuple[int, int]] = []
            for start in range(0, len(rows), INSERT_CHUNK):
                chunk = rows[start : start + INSERT_CHUNK]
                values = ", ".join([self._child_values] * len(chunk))
                sql = f"{CHILD_INSERT_SQL} {values} ON CONFLICT DO NOTHING RETURNING id, priority"
                params = [value for row in chunk for value in row]
                ids.extend(self.db.execute_sql(sql, params).fetchall())
            self._shift(parent.ancestor_ids + [parent.id], {"pending": len(ids)})
            return ids

        created = self.transaction(insert, durable=False)
        fault_point("before-enqueue")
        self._enqueue_or_sweep(created)
        return [job_id for job_id, _ in created]

    # -- running --------------------------------------------------------------------

    def claim(self, job_id: int, worker_id: str) -> Job | None:
        """Atomically move a job `pending → running` for a worker; None if it is not
        pending (a duplicate message, a cancelled or paused job, a retry not yet due)."""
        now = time.time()
        lease = now + self.config.jobs.lease_seconds

        def update() -> Job | None:
            # pending -> running moves no ancestor counter (both are `n_open`), so the
            # claim is one statement on one row
            cursor = self.db.execute_sql(
                self._claim_sql, (now, now, worker_id, lease, job_id, now + 0.5)
            )
            row = cursor.fetchone()
            if row is None:
                return None
            return Job(**dict(zip([d[0] for d in cursor.description], row, strict=True)))

        try:
            return self.transaction(update, durable=False)
        except Exception:
            # the queue message is gone and the job still pending: sweep for it soon
            self.enqueue_failed_at = time.monotonic()
            raise

    def complete(self, job: Job, worker_id: str, result: Any, report: Report | None = None) -> bool:
        """The job's own work succeeded; it finishes now or when its descendants do.

        `report` (log lines and progress the executor buffered) is written in the same
        transaction."""
        return self._finish_own_work(job, worker_id, "completed", result=result, report=report)

    def fail(
        self,
        job: Job,
        worker_id: str,
        error: str,
        traceback: str | None,
        permanent: bool,
        report: Report | None = None,
    ) -> str:
        """The job's own work raised: retry with back-off, or fail for good.

        Returns the job's new status ('pending' for a retry, 'failed'), or '' when the
        job was no longer this worker's (cancelled or taken over meanwhile).
        """
        if permanent or job.attempts >= job.max_attempts:
            done = self._finish_own_work(
                job,
                worker_id,
                "failed",
                error=error,
                traceback=traceback,
                message=f"failed (attempt {job.attempts}/{job.max_attempts}): {error}",
                report=report,
            )
            return "failed" if done else ""
        delay = self.retry_delay(job.attempts)
        now = time.time()

        def update() -> bool:
            changed = (
                Job.update(
                    status="pending",
                    run_after=now + delay,
                    error=error,
                    traceback=traceback,
                    worker_id=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
                .where(
                    Job.id == job.id,
                    Job.status == "running",
                    Job.worker_id == worker_id,
                    Job.lease_epoch == job.lease_epoch,
                )
                .execute()
            )
            if changed:
                message = (
                    f"attempt {job.attempts}/{job.max_attempts} failed: {error}; "
                    f"retrying in {delay:.1f}s"
                )
                self._write_report(job.id, report, now)
                self._log_rows([self._log_row(job.id, "warning", message, now)])
            return bool(changed)

        if not self.transaction(update, durable=False):
            return ""
        self._enqueue_or_sweep([(job.id, job.priority)], delay)
        return "pending"

    def retry_delay(self, attempts: int) -> float:
        """Exponential back-off with jitter: base × 2^(attempts-1) × [0.5, 1.5)."""
        base = self.config.jobs.retry_base_seconds
        return base * (2 ** max(0, attempts - 1)) * (0.5 + random.random())

    def _finish_own_work(
        self,
        job: Job,
        worker_id: str,
        outcome: str,
        result: Any = None,
        error: str | None = None,
        traceback: str | None = None,
        message: str | None = None,
        lease_expired_by: float | None = None,
        report: Report | None = None,
    ) -> bool:
        # the reaper passes lease_expired_by: it finishes the job only if no heartbeat
        # renewed the lease meanwhile
        now = time.time()
        progress = 1.0 if outcome == "completed" else (report[1] if report else None)
        params = (
            outcome, outcome, now,
            json.dumps(result) if result is not None else None, error, traceback,
            progress, now, job.id, worker_id, job.lease_epoch,
            lease_expired_by or 0.0, lease_expired_by is None,
        )  # fmt: skip

        def update() -> bool:
            self._lock_chain(job)
            rows = self.db.execute_sql(self._finish_sql, params).fetchall()
            if not rows:
                return False
            self._write_report(job.id, report, now, with_progress=False)
            if message:
                level = "error" if outcome == "failed" else "info"
                self._log_rows([self._log_row(job.id, level, message, now)])
            if outcome == "failed":
                triage.record_error_group(self.db, job.id, error)
            if rows[0][0] == outcome:
                totals.record_finished(self.db, [(job.type, outcome, job.started_at, now)])
                changed = self._shift(job.ancestor_ids, {"running": -1, outcome: 1})
                n_open, parent_outcome = changed.get(job.parent_id, (1, None))
                if n_open == 0 and parent_outcome is not None:  # else nothing to settle
                    self._settle(job.parent_id, now)
            return True

        return self.transaction(update, durable=False)

    # -- user actions -----------------------------------------------------------------

    def get_or_404(self, job_id: int) -> Job:
        """The job, or NotFound."""
        job = Job.get_or_none(Job.id == job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    def _subtree(self, job: Job) -> peewee.Expression:
        return (Job.root_id == job.root_id) & (
            (Job.id == job.id) | Job.path.startswith(job.descendant_prefix)
        )

    def cancel_tree(self, job_id: int) -> Job:
        """Cancel a job and every unfinished descendant; running ones see it via their
        context and stop, pending ones never start."""
        now = time.time()

        def update() -> Job:
            job = self.get_or_404(job_id)
            self._lock_chain(job)
            job = self.get_or_404(job_id)  # as of the lock
            if job.status not in UNFINISHED:
                raise Conflict(
                    f"job {job_id} is {job.status}; only pending or running jobs can be cancelled"
                )
            subtree = self._subtree(job)
            ending = list(
                Job.select(Job.type, Job.status, Job.started_at)
                .where(subtree, Job.status.in_(UNFINISHED))
                .tuples()
            )
            before: dict[str, int] = {}
            for _, status, _ in ending:
                before[status] = before.get(status, 0) + 1
            # a running job is in the histogram with its run time so far; pending: never ran
            totals.record_finished(
                self.db,
                [
                    (t, "cancelled", started if s == "running" else None, now)
                    for t, s, started in ending
                ],
            )
            (
                Job.update(
                    status="cancelled",
                    finished_at=now,
                    updated_at=now,
                    worker_id=None,
                    lease_expires_at=None,
                )
                .where(subtree, Job.status.in_(UNFINISHED))
                .execute()
            )
            self._recount_descendants(job)
            moved = before.get("pending", 0) + before.get("running", 0)
            self._shift(
                job.ancestor_ids,
                {
                    "pending": -before.get("pending", 0),
                    "running": -before.get("running", 0),
                    "cancelled": moved,
                },
            )
            self._log_rows([self._log_row(job.id, "warning", f"cancelled ({moved} jobs)", now)])
            self._settle(job.parent_id, now)
            return Job.get_by_id(job_id)

        return self.transaction(update)

    def _recount_descendants(self, job: Job) -> None:
        """Recompute the counters of `job` and its descendants from their rows."""
        prefix = job.descendant_prefix
        fields = (Job.n_open, Job.n_completed, Job.n_failed, Job.n_cancelled)
        counts: dict[int, dict[peewee.Field, int]] = {job.id: dict.fromkeys(fields, 0)}
        query = (
            Job.select(Job.id, Job.path, Job.status)
            .where(Job.root_id == job.root_id, Job.path.startswith(prefix))
            .tuples()
        )
        for _, path, status in query.iterator():
            below = [int(p) for p in path[len(job.path) :].strip("/").split("/") if p]
            for ancestor in below:
                counts.setdefault(ancestor, dict.fromkeys(fields, 0))[COUNTER[status]] += 1
        for node_id, by_field in counts.items():
            Job.update(by_field).where(Job.id == node_id).execute()

    def delete_tree(self, job_id: int) -> int:
        """Delete a finished job, its descendants and their logs; returns jobs deleted."""

        def delete() -> int:
            job = self.get_or_404(job_id)
            self._lock_chain(job)
            job = self.get_or_404(job_id)
            if job.status in UNFINISHED:
                raise Conflict(f"job {job_id} is {job.status}; cancel it before deleting")
            subtree = self._subtree(job)
            by_status = dict(
                Job.select(Job.status, peewee.fn.COUNT(Job.id))
                .where(subtree)
                .group_by(Job.status)
                .tuples()
            )
            self._shift(job.ancestor_ids, {s: -n for s, n in by_status.items()})
            ids = Job.select(Job.id).where(subtree)
            JobLog.delete().where(JobLog.job_id.in_(ids)).execute()
            if job.parent_id is None:
                self._forget_tree_state(job.id)
            return Job.delete().where(subtree).execute()

        return self.transaction(delete)

    def _forget_tree_state(self, root_id: int) -> None:
        """Delete what executors keep per tree (the crawler's pages and hosts)."""
        for table in TREE_STATE_TABLES:
            self.db.execute_sql(f"DELETE FROM {table} WHERE root_id = {self.db.param}", (root_id,))

    def retry_tree(self, job_id: int, error_group: str | None = None) -> Job:
        """Run again the failed and cancelled jobs of a tree (never the completed ones);
        with `error_group`, only the failed jobs of that cause (quaero.triage).

        Each such job goes back to `pending` with its attempts reset. Finished ancestors
        of a retried job wait for it again: those whose own work was done go back to
        `running`; those whose own work never finished (cancelled or failed while it
        ran) run again too, and find the children they had already spawned (spawning is
        idempotent), so nothing is duplicated.
        """
        now = time.time()
        finished = list(FINAL_STATUSES)

        def update() -> list[tuple[int, int]]:
            job = self.get_or_404(job_id)
            # the whole tree's counters are recounted: lock from the root
            self._lock([job.root_id, *job.ancestor_ids, job.id])
            again = Job.status.in_([JobStatus.FAILED, JobStatus.CANCELLED])
            if error_group is not None:
                again = Job.error_group == error_group
            retried = list(
                Job.select(Job.id, Job.priority, Job.path).where(self._subtree(job), again).tuples()
            )
            if not retried:
                raise Conflict(f"job {job_id} has no failed or cancelled jobs to retry")
            waiting = {int(p) for _, _, path in retried for p in path.strip("/").split("/") if p}
            waiting -= {row[0] for row in retried}
            unfinished_own_work = list(
                Job.select(Job.id, Job.priority, Job.path)
                .where(Job.id.in_(list(waiting)), Job.outcome.is_null(), Job.status.in_(finished))
                .tuples()
            )
            retried += unfinished_own_work
            waiting -= {row[0] for row in unfinished_own_work}
            ids = [row[0] for row in retried]
            for start in range(0, len(ids), INSERT_CHUNK):
                Job.update(
                    status=JobStatus.PENDING,
                    outcome=None,
                    attempts=0,
                    error=None,
                    error_group=None,
                    traceback=None,
                    finished_at=None,
                    run_after=None,
                    worker_id=None,
                    lease_expires_at=None,
                    progress=0.0,
                    updated_at=now,
                ).where(Job.id.in_(ids[start : start + INSERT_CHUNK])).execute()
            if waiting:  # own work done: they wait for the retried descendants again
                Job.update(status=JobStatus.RUNNING, finished_at=None, updated_at=now).where(
                    Job.id.in_(list(waiting)), Job.status.in_(finished)
                ).execute()
            root = Job.get_by_id(job.root_id)
            self._recount_descendants(root)
            self._log_rows([self._log_row(job.id, "info", f"retrying {len(ids)} jobs", now)])
            return [(job_id_, prio) for job_id_, prio, _ in retried]

        retried = self.transaction(update)
        self.queue.enqueue(retried)
        return self.get_or_404(job_id)

    def rerun(self, job_id: int, overrides: dict[str, Any] | None = None) -> Job:
        """A new root with the job's type and payload (top-level keys overridden)."""
        job = self.get_or_404(job_id)
        payload = {**job.payload_data, **(overrides or {})}
        return self.create_root(
            job.type,
            payload,
            name=job.name,
            priority=job.priority,
            max_attempts=job.max_attempts,
            timeout=job.timeout,
        )

    def set_paused(self, job_id: int, paused: bool) -> Job:
        """Hold back (or release) the pending jobs of a job's subtree.

        Paused pending jobs stay in `jobs`, so a paused crawl survives a restart; their
        queue messages are dropped when taken, and resuming enqueues them again.
        """
        now = time.time()

        def update() -> list[tuple[int, int]]:
            job = self.get_or_404(job_id)
            self._lock_chain(job)
            if paused and job.status not in UNFINISHED:
                raise Conflict(f"job {job_id} is {job.status}; only unfinished jobs can be paused")
            if not paused and not job.paused:
                raise Conflict(f"job {job_id} is not paused")
            Job.update(paused=paused, updated_at=now).where(self._subtree(job)).execute()
            word = "paused" if paused else "resumed"
            self._log_rows([self._log_row(job.id, "info", word, now)])
            if paused:
                return []
            return list(
                Job.select(Job.id, Job.priority)
                .where(self._subtree(job), Job.status == "pending")
                .tuples()
            )

        self.queue.enqueue(self.transaction(update))
        return self.get_or_404(job_id)

    def purge_finished(
        self, older_than_days: float, batch: int = 1000, budget: float | None = None
    ) -> int:
        """Delete finished trees whose root finished more than `older_than_days` ago;
        returns jobs deleted.

        At most `batch` jobs (and their logs) go per transaction, descendants before
        their root, so no write lock is held long whatever a tree's size: workers'
        heartbeats and finishes wait milliseconds, not the whole purge. With `budget`
        (seconds) it stops after that long; the next round goes on where it stopped.
        """
        cutoff = time.time() - older_than_days * 86_400
        deadline = None if budget is None else time.monotonic() + budget
        old_roots = (
            Job.select(Job.id)
            .where(Job.parent_id.is_null(), Job.status.not_in(UNFINISHED), Job.finished_at < cutoff)
            .order_by(Job.id)
        )
        deleted = 0
        for (root_id,) in old_roots.tuples().iterator():

            def delete_some(root_id: int = root_id) -> int:
                # highest ids first: children go before their parents, the root last
                ids = [
                    job_id
                    for (job_id,) in Job.select(Job.id)
                    .where(Job.root_id == root_id)
                    .order_by(Job.id.desc())
                    .limit(batch)
                    .tuples()
                ]
                if ids:
                    JobLog.delete().where(JobLog.job_id.in_(ids)).execute()
                    Job.delete().where(Job.id.in_(ids)).execute()
                else:
                    self._forget_tree_state(root_id)
                return len(ids)

            while n := self.transaction(delete_some):
                deleted += n
                if deadline is not None and time.monotonic() > deadline:
                    return deleted
        return deleted

    # -- what executors report ---------------------------------------------------------

    def log(self, job_id: int, level: str, message: str) -> None:
        """Append one line to a job's log."""
        row = self._log_row(job_id, level, message, time.time())
        self.transaction(lambda: JobLog.insert(row).execute(), durable=False)

    def still_held(self, job: Job) -> bool:
        """True while this attempt of the job holds it: still running, under the same
        lease epoch. False once it was cancelled, deleted, or taken over by another
        attempt (its lease expired): a stale attempt must stop."""
        row = Job.select(Job.status, Job.lease_epoch).where(Job.id == job.id).first()
        return row is not None and row.status == "running" and row.lease_epoch == job.lease_epoch

    # -- workers, leases and recovery ---------------------------------------------------

    def register_worker(self, worker_id: str, threads: int) -> None:
        """Record a worker process as alive."""
        now = time.time()
        row = {
            "id": worker_id,
            "hostname": worker_id.split(":")[0],
            "pid": os.getpid(),
            "threads": threads,
            "started_at": now,
            "last_heartbeat": now,
        }
        Worker.insert(row).on_conflict(
            conflict_target=[Worker.id],
            update={Worker.last_heartbeat: now, Worker.stopped_at: None},
        ).execute()

    def heartbeat(self, worker_id: str, executing: Iterable[int], jobs_done: int = 0) -> int:
        """Record the worker process as alive and renew the leases of the jobs it is
        executing right now (never all rows naming it: a job whose finish failed to
        write must lapse and be reaped); returns the number of leases renewed."""
        now = time.time()
        ids = sorted(set(executing))

        def update() -> int:
            Worker.update(last_heartbeat=now, jobs_done=jobs_done, stopped_at=None).where(
                Worker.id == worker_id
            ).execute()
            if not ids:
                return 0
            self._lock(ids)  # PostgreSQL: in id order, as every transaction does
            return (
                Job.update(lease_expires_at=now + self.config.jobs.lease_seconds)
                .where(Job.id.in_(ids), Job.status == "running", Job.worker_id == worker_id)
                .execute()
            )

        return self.transaction(update)

    def unregister_worker(self, worker_id: str, jobs_done: int = 0) -> None:
        """Mark a worker as stopped."""
        update = Worker.update(stopped_at=time.time(), jobs_done=jobs_done)
        self.transaction(update.where(Worker.id == worker_id).execute)

    def release_worker_jobs(self, worker_id: str) -> int:
        """Hand back the jobs a stopping worker still holds: pending again, no lease."""
        held = list(Job.select().where(Job.status == "running", Job.worker_id == worker_id))
        return self._hand_back(held, worker_id, "worker stopped; the job runs again")

    def hand_back(self, job: Job, worker_id: str) -> bool:
        """Give one job back (its outcome could not be recorded): pending again, its
        attempt not counted; False if this attempt no longer held it."""
        return bool(self._hand_back([job], worker_id, "outcome not recorded; the job runs again"))

    def _hand_back(self, jobs: list[Job], worker_id: str, message: str) -> int:
        """`running → pending` for jobs of this worker's attempts, each fenced by its
        lease epoch, attempts not counted; then enqueue them. Returns how many."""
        if not jobs:
            return 0
        now = time.time()

        def update() -> list[Job]:
            self._lock(job.id for job in jobs)
            released = []
            for job in jobs:
                changed = (
                    Job.update(
                        status="pending",
                        worker_id=None,
                        lease_expires_at=None,
                        attempts=Job.attempts - 1,
                        updated_at=now,
                    )
                    .where(
                        Job.id == job.id,
                        Job.status == "running",
                        Job.worker_id == worker_id,
                        Job.lease_epoch == job.lease_epoch,
                        Job.outcome.is_null(),
                    )
                    .execute()
                )
                if changed:
                    released.append(job)
            self._log_rows([self._log_row(job.id, "warning", message, now) for job in released])
            return released

        released = self.transaction(update)
        self._enqueue_or_sweep([(job.id, job.priority) for job in released])
        return len(released)

    def expire_dead_workers_leases(self, me: str | None = None) -> int:
        """Expire at once the leases of workers that are gone: a process on this host
        that no longer exists, or any worker whose heartbeat is older than
        `[jobs] worker_timeout`. A live worker beats every `heartbeat_seconds` from a
        thread of its own, so a slow job never makes it look dead. `me` (the calling
        worker) is never judged: its jobs lapse by their leases if it cannot beat."""
        now = time.time()
        host = socket.gethostname()
        holders = {
            w
            for (w,) in Job.select(Job.worker_id)
            .where(Job.status == "running", Job.worker_id.is_null(False), Job.lease_expires_at > 0)
            .distinct()
            .tuples()
        }
        if not holders:
            return 0
        beats = dict(
            Worker.select(Worker.id, Worker.last_heartbeat)
            .where(Worker.id.in_(list(holders)))
            .tuples()
        )
        cutoff = now - self.config.jobs.worker_timeout
        dead = [
            w
            for w in holders - {me}  # a worker that can ask is alive, though it may not beat
            if (w.startswith(f"{host}:") and not _pid_alive(_pid_of(w)))
            or beats.get(w, 0.0) < cutoff
        ]
        if not dead:
            return 0

        def update() -> int:
            of_dead = (Job.status == "running") & Job.worker_id.in_(dead)
            self._lock(job_id for (job_id,) in Job.select(Job.id).where(of_dead).tuples())
            return Job.update(lease_expires_at=0).where(of_dead).execute()

        expired = self.transaction(update)
        if expired:
            logger.warning("workers %s are gone: %d jobs run again", ", ".join(dead), expired)
        return expired

    def reap_expired_leases(self, limit: int = 500) -> int:
        """Put running jobs whose lease expired back on the queue (or fail them after
        `max_attempts`); safe when several reapers run at once."""
        now = time.time()
        expired = list(
            Job.select().where(Job.status == "running", Job.lease_expires_at < now).limit(limit)
        )
        requeue: list[tuple[int, int]] = []
        for job in expired:
            holder = job.worker_id
            if job.attempts >= job.max_attempts:
                self._finish_own_work(
                    job,
                    holder,
                    "failed",
                    error="worker lost",
                    message=f"worker {holder} lost; no attempts left",
                    lease_expired_by=now,
                )
            elif self.transaction(lambda job=job: self._requeue_lost(job, now)):
                requeue.append((job.id, job.priority))
        self._enqueue_or_sweep(requeue)
        if expired:
            logger.warning(
                "reaper: %d expired leases, %d jobs re-queued", len(expired), len(requeue)
            )
        return len(requeue)

    def _requeue_lost(self, job: Job, now: float) -> bool:
        """`running → pending` for a job whose lease expired, if still so."""
        holder = job.worker_id
        changed = (
            Job.update(status="pending", worker_id=None, lease_expires_at=None, updated_at=now)
            .where(
                Job.id == job.id,
                Job.status == "running",
                Job.worker_id == holder,
                Job.lease_expires_at < now,
            )
            .execute()
        )
        if changed:
            message = f"worker {holder} lost the job; it runs again"
            self._log_rows([self._log_row(job.id, "warning", message, now)])
        return bool(changed)

    def requeue_orphans(self, grace: float = 10.0) -> int:
        """Enqueue pending jobs that have no message on the queue (a crash between the
        database write and the enqueue); `grace` spares jobs being enqueued right now."""
        queued = self.queue.queued_job_ids()  # read first: see the method's docstring
        cutoff = time.time() - grace
        pending = (
            Job.select(Job.id, Job.priority)
            .where(
                Job.status == "pending",
                Job.paused == False,  # noqa: E712
                Job.updated_at < cutoff,
                Job.run_after.is_null() | (Job.run_after < cutoff),
            )
            .tuples()
        )
        orphans = [(job_id, prio) for job_id, prio in pending.iterator() if job_id not in queued]
        self.queue.enqueue(orphans)
        if orphans:
            logger.warning("re-queued %d pending jobs that had no queue message", len(orphans))
        return len(orphans)


def fault_point(name: str) -> None:
    """Chaos-test hook: with QUAERO_FAULT=<name> the process dies here, as on a crash."""
    if os.environ.get("QUAERO_FAULT") == name:
        logger.error("QUAERO_FAULT=%s: exiting abruptly", name)
        os._exit(70)


def _pid_of(worker_id: str) -> int:
    try:
        return int(worker_id.split(":")[1])
    except (IndexError, ValueError):
        return 0


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid we can check: rely on the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
