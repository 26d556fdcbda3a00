"""JobManager: the only writer of job statuses, around one invariant: counters move
with statuses.

Every status change is a named transition here, guarded in SQL so that it happens at
most once (`pending → running` only from pending, completion only by the lease holder).
Descendant counters (`n_open` for pending or running, `n_completed`, `n_failed`,
`n_cancelled`) of every ancestor move in the same transaction as the change, so a page
of roots reads its counts and progress for free. Recovery (leases, the reaper, the
orphan sweep, the worker registry, retention) lives in quaero.recovery and moves jobs
only through the transitions here; both write through quaero.store.

Why ~600 lines: every transition of a job, with the counter moves that keep the one
invariant, stays in this one class, so the invariant can be checked in one read.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import peewee

from quaero import policies, statements, totals, triage
from quaero.errors import Conflict, LeaseLost, NotFound
from quaero.limits import OverLimit, TypeLimits
from quaero.models import FINAL_STATUSES, UNFINISHED, ChildSpec, Job, JobLog, JobStatus
from quaero.store import COUNTER_COLUMN, Store

logger = logging.getLogger(__name__)

INSERT_CHUNK = 500
T = TypeVar("T")
#: What an executor buffered: log lines (level, message, time) and its last progress.
Report = tuple[list[tuple[str, str, float]], float | None]


class JobManager:
    """Creates jobs, moves them through their states, and records their logs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db
        self.queue = store.queue
        self.config = store.config
        self._claim_sql = store.sql(statements.CLAIM)
        self._finish_sql = store.sql(statements.FINISH)
        self._still_held_sql = store.sql(statements.STILL_HELD)
        self.limits = TypeLimits(store, self.config.types)

    # -- what executors report ---------------------------------------------------------

    def _write_report(
        self, job_id: int, report: Report | None, now: float, with_progress: bool = True
    ) -> None:
        if not report:
            return
        logs, progress = report
        self.store.write_logs((job_id, level, msg, ts) for level, msg, ts in logs)
        if with_progress and progress is not None:
            fraction = max(0.0, min(1.0, float(progress)))
            Job.update(progress=fraction, updated_at=now).where(Job.id == job_id).execute()

    def write_report(
        self, job: Job, logs: list[tuple[str, str, float]], progress: float | None
    ) -> bool:
        """Write log lines and progress an executor buffered, in one transaction, if
        this attempt still owns the job (running, or cancelled while it ran); False,
        and nothing written, for a stale attempt whose job another attempt took over."""
        now = self.store.now()
        if progress is not None:
            progress = max(0.0, min(1.0, float(progress)))
        params = {"id": job.id, "lease_epoch": job.lease_epoch, "progress": progress, "now": now}

        def write() -> bool:
            # one statement both proves the attempt still holds the job and sets progress
            if self.db.execute_sql(self._still_held_sql, params).fetchone() is None:
                return False
            self._write_report(job.id, (logs, None), now)
            return True

        return self.store.transaction(write, durable=False)

    def log(self, job_id: int, level: str, message: str) -> None:
        """Append one line to a job's log."""
        now = self.store.now()
        self.store.transaction(
            lambda: self.store.write_log(job_id, level, message, now), durable=False
        )

    def still_held(self, job: Job) -> bool:
        """True while this attempt of the job holds it: still running, under the same
        lease epoch. False once it was cancelled, deleted, or taken over by another
        attempt (its lease expired): a stale attempt must stop."""
        row = Job.select(Job.status, Job.lease_epoch).where(Job.id == job.id).first()
        return (
            row is not None
            and row.status == JobStatus.RUNNING
            and row.lease_epoch == job.lease_epoch
        )

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
        run_after: float | None = None,
        on_child_failure: str = "ignore",
    ) -> Job:
        """Create a root job and put it on the queue (at `run_after`, if given);
        `in_transaction(job)` runs in the inserting transaction (an idempotency key is
        recorded there; raising undoes it)."""
        now = self.store.now()

        def insert() -> Job:
            job = Job.create(
                root_id=0,
                path="/",
                depth=0,
                type=type,
                name=name or "",
                status=JobStatus.PENDING,
                payload=json.dumps(payload),
                max_attempts=max_attempts or self.config.jobs.max_attempts,
                priority=priority,
                timeout=timeout,
                run_after=run_after,
                on_child_failure=on_child_failure,
                created_at=now,
                updated_at=now,
            )
            Job.update(root_id=job.id).where(Job.id == job.id).execute()
            job.root_id = job.id
            self.store.write_log(job.id, "info", f"{type} job submitted", now)
            if in_transaction:
                in_transaction(job)
            return job

        job = self.store.transaction(insert)
        fault_point("before-enqueue")
        if run_after is not None and run_after > now:
            self.queue.enqueue_later(job.id, priority, run_after - now)
        else:
            self.queue.enqueue([(job.id, priority)])
        return job

    def spawn_children(
        self,
        parent: Job,
        specs: list[ChildSpec],
        root_limit: int | None = None,
        position: int = 0,
        prepare: Callable[[], list[ChildSpec]] | None = None,
        only_new: bool = False,
    ) -> list[int]:
        """Create children of `parent` in one transaction, then enqueue them.

        Specs whose `dedup_key` already exists in the tree are skipped (a unique index
        decides, so concurrent spawners and a re-run of the parent agree); with
        `only_new`, the tree's known keys are read first in one statement per chunk and
        their specs dropped before any row is built (cheaper when most are known).
        With `root_limit` the tree never grows past that many descendants of the root.
        Whatever an executor asks, a job gets at most `[jobs] max_children` children
        (`position`: how many this attempt asked for before) and a tree at most
        `max_tree_size` jobs; what is cut is logged on the parent. `prepare()` runs
        first in the same transaction, once the attempt is proven to hold `parent`: it
        may write the executor's own state (fenced like the children) and returns more
        specs, each with a `dedup_key`; it may run again if the transaction is retried.
        Raises LeaseLost when this attempt of `parent` no longer holds it.
        """
        if not specs and prepare is None:
            return []
        now = self.store.now()
        path = parent.descendant_prefix

        def insert() -> list[tuple[int, int]]:
            # The parent must still be running: a cancel that committed first wins, so
            # no child of a cancelled job is ever created (the chain lock orders them).
            paused = self._hold(parent, lock_chain=True)
            todo = [*specs, *(prepare() if prepare is not None else ())]
            if only_new:
                todo = self._unknown(parent.root_id, todo)
            if not todo:
                return []
            root = Job.get_or_none(Job.id == parent.root_id)
            total = root.n_open + root.n_completed + root.n_failed + root.n_cancelled if root else 0
            caps = self.config.jobs
            room = min(caps.max_children - position, caps.max_tree_size - 1 - total)
            if room < len(todo):
                cut = len(todo) - max(0, room)
                message = (
                    f"{cut} children not created: a job may have {caps.max_children} "
                    f"children and a tree {caps.max_tree_size} jobs ([jobs] max_children, "
                    "max_tree_size)"
                )
                self.store.write_log(parent.id, "warning", message, now)
            if root_limit is not None:
                room = min(room, root_limit - total)
            todo = todo[: max(0, room)]
            default_attempts = self.config.jobs.max_attempts
            rows = [
                (  # in statements.CHILD_COLUMNS order
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
                )
                for spec in todo
            ]
            ids: list[tuple[int, int]] = []
            for start in range(0, len(rows), INSERT_CHUNK):
                chunk = rows[start : start + INSERT_CHUNK]
                sql = statements.insert_children(len(chunk), self.db.param)
                params = [value for row in chunk for value in row]
                ids.extend(self.db.execute_sql(sql, params).fetchall())
            self.store.shift(parent.ancestor_ids + [parent.id], {JobStatus.PENDING: len(ids)})
            return ids

        created = self.store.transaction(insert, durable=False)
        fault_point("before-enqueue")
        self.store.enqueue_or_sweep(created)
        return [job_id for job_id, _ in created]

    def write_if_held(self, job: Job, write: Callable[[], T]) -> T:
        """Run `write()` in one transaction, only while this attempt holds `job`
        (running, same lease epoch, checked under the job's row lock in that
        transaction): an executor's own state (the crawler's `crawl_pages`) is never
        written by a stale attempt whose job another attempt took over. Raises LeaseLost
        (nothing written) otherwise."""

        def fenced() -> T:
            self._hold(job, lock_chain=False)
            return write()

        return self.store.transaction(fenced, durable=False)

    def _hold(self, job: Job, lock_chain: bool) -> bool:
        """In a write transaction: lock `job` (and its ancestors with `lock_chain`) and
        prove this attempt still holds it; returns whether it is paused. LeaseLost if not."""
        if lock_chain:
            self.store.lock_chain(job)
        else:
            self.store.lock([job.id])
        row = Job.select(Job.status, Job.paused, Job.lease_epoch).where(Job.id == job.id).first()
        if row is None or row.status != JobStatus.RUNNING or row.lease_epoch != job.lease_epoch:
            raise LeaseLost(f"job {job.id}: this attempt no longer holds it")
        return bool(row.paused)

    def _unknown(self, root_id: int, specs: list[ChildSpec]) -> list[ChildSpec]:
        """`specs` less those whose dedup_key the tree `root_id` already has (and
        repeats of a key), in order; read in one statement per chunk of keys."""
        by_key: dict[str, ChildSpec] = {}
        for spec in specs:
            if spec.dedup_key is None:
                raise ValueError("only_new needs a dedup_key on every child")
            by_key.setdefault(spec.dedup_key, spec)  # the first one wins, as in the insert
        keys = list(by_key)
        known: set[str] = set()
        p = self.db.param
        for start in range(0, len(keys), INSERT_CHUNK):
            chunk = keys[start : start + INSERT_CHUNK]
            sql = (
                f"SELECT dedup_key FROM jobs WHERE root_id = {p}"
                f" AND dedup_key IN ({', '.join([p] * len(chunk))})"
            )
            known.update(key for (key,) in self.db.execute_sql(sql, [root_id, *chunk]))
        return [spec for key, spec in by_key.items() if key not in known]

    # -- running --------------------------------------------------------------------

    def claim(self, job_id: int, worker_id: str) -> Job | None:
        """Atomically move a job `pending → running` for a worker; None if it is not
        pending (a duplicate message, a cancelled or paused job, a retry not yet due)."""
        now = self.store.now()
        lease = now + self.config.jobs.lease_seconds

        def update() -> Job | None:
            # pending -> running moves no ancestor counter (both are `n_open`), so the
            # claim is one statement on one row
            params = {
                "id": job_id,
                "worker_id": worker_id,
                "lease_expires_at": lease,
                "now": now,
                "due_by": now + statements.CLAIM_CLOCK_SKEW,
            }
            cursor = self.db.execute_sql(self._claim_sql, params)
            row = cursor.fetchone()
            if row is None:
                return None
            job = Job(**dict(zip([d[0] for d in cursor.description], row, strict=True)))
            self.limits.check(job, now)  # over its type's limit: rolls the claim back
            return job

        try:
            return self.store.transaction(update, durable=False)
        except OverLimit as over:
            self.limits.wait(over, now)
            return None
        except Exception:
            # the queue message is gone and the job still pending: sweep for it soon
            self.store.enqueue_failed_at = time.monotonic()
            raise

    def complete(self, job: Job, worker_id: str, result: Any, report: Report | None = None) -> bool:
        """The job's own work succeeded; it finishes now or when its descendants do.

        `report` (log lines and progress the executor buffered) is written in the same
        transaction."""
        return self.finish_own_work(
            job, worker_id, JobStatus.COMPLETED, result=result, report=report
        )

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
            done = self.finish_own_work(
                job,
                worker_id,
                JobStatus.FAILED,
                error=error,
                traceback=traceback,
                message=f"failed (attempt {job.attempts}/{job.max_attempts}): {error}",
                report=report,
            )
            return JobStatus.FAILED if done else ""
        delay = self.retry_delay(job.attempts)
        now = self.store.now()
        message = f"attempt {job.attempts}/{job.max_attempts} failed: {error}; "
        message += f"retrying in {delay:.1f}s"
        retry = {"run_after": now + delay, "error": error, "traceback": traceback}

        def update() -> bool:
            return self.back_to_pending(job, worker_id, message, now, report=report, **retry)

        if not self.store.transaction(update, durable=False):
            return ""
        self.store.enqueue_or_sweep([(job.id, job.priority)], delay)
        return JobStatus.PENDING

    def back_to_pending(
        self,
        job: Job,
        worker_id: str,
        message: str,
        now: float,
        lease_expired_by: float | None = None,
        report: Report | None = None,
        **columns: Any,
    ) -> bool:
        """`running → pending` for this attempt (`worker_id`) of a job, in the caller's
        transaction; the job's only way back to pending, whoever sends it there.

        The attempt is fenced by its lease epoch; the reaper passes `lease_expired_by`
        instead and moves the job only if its lease had expired by then. `columns` sets
        what differs: a retry's `run_after`, `error` and `traceback`, a hand-back's
        `attempts`. When the job moved, `report` and `message` (a warning) go into its
        log; False when this attempt no longer held it. The caller enqueues the job.
        """
        if lease_expired_by is None:
            fence = Job.lease_epoch == job.lease_epoch
        else:
            fence = Job.lease_expires_at < lease_expired_by
        changed = (
            Job.update(
                status=JobStatus.PENDING,
                worker_id=None,
                lease_expires_at=None,
                updated_at=now,
                **columns,
            )
            .where(
                Job.id == job.id,
                Job.status == JobStatus.RUNNING,
                Job.worker_id == worker_id,
                Job.outcome.is_null(),  # its own work is not done (always so while held)
                fence,
            )
            .execute()
        )
        if changed:
            self._write_report(job.id, report, now)
            self.store.write_log(job.id, "warning", message, now)
        return bool(changed)

    def retry_delay(self, attempts: int) -> float:
        """Exponential back-off with jitter: base × 2^(attempts-1) × [0.5, 1.5)."""
        base = self.config.jobs.retry_base_seconds
        return base * (2 ** max(0, attempts - 1)) * (0.5 + random.random())

    def finish_own_work(
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
        """`running → <outcome>` for the own work of this attempt (`worker_id`, its lease
        epoch): the job finishes now, or stays running until its open descendants
        finish. The reaper passes `lease_expired_by`: it finishes the job only if no
        heartbeat renewed the lease meanwhile. False when the attempt no longer held it."""
        now = self.store.now()
        progress = 1.0 if outcome == JobStatus.COMPLETED else (report[1] if report else None)
        params = {
            "id": job.id,
            "worker_id": worker_id,
            "lease_epoch": job.lease_epoch,
            "lease_expired_by": lease_expired_by,
            "outcome": outcome,
            "result": json.dumps(result) if result is not None else None,
            "error": error,
            "traceback": traceback,
            "progress": progress,
            "now": now,
        }

        def update() -> bool:
            self.store.lock_chain(job)
            rows = self.db.execute_sql(self._finish_sql, params).fetchall()
            if not rows:
                return False
            self._write_report(job.id, report, now, with_progress=False)
            if message:
                level = "error" if outcome == JobStatus.FAILED else "info"
                self.store.write_log(job.id, level, message, now)
            if outcome == JobStatus.FAILED:
                triage.record_error_group(self.db, job.id, error)
            if rows[0][0] == outcome:
                totals.record_finished(self.db, [(job.type, outcome, job.started_at, now)])
                changed = self.store.shift(job.ancestor_ids, {JobStatus.RUNNING: -1, outcome: 1})
                n_open, parent_outcome = changed.get(job.parent_id, (1, None))
                if n_open == 0 and parent_outcome is not None:  # else nothing to settle
                    self.store.settle(job.parent_id, now)
            if outcome == JobStatus.FAILED:
                for ancestor_id in policies.ancestors_to_fail(job):
                    self.cancel_tree(ancestor_id, failure=policies.failure_message(job))
            return True

        return self.store.transaction(update, durable=False)

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

    def cancel_tree(self, job_id: int, failure: str | None = None) -> Job:
        """Cancel a job and every unfinished descendant; running ones see it via their
        context and stop, pending ones never start. With `failure` (its descendant
        failed and its on_child_failure is "fail") the job itself fails with that error."""
        now = self.store.now()
        ending_as = JobStatus.FAILED if failure else JobStatus.CANCELLED

        def update() -> Job:
            job = self.get_or_404(job_id)
            self.store.lock_chain(job)
            job = self.get_or_404(job_id)  # as of the lock
            if job.status not in UNFINISHED:
                raise Conflict(
                    f"job {job_id} is {job.status}; only pending or running jobs can be cancelled"
                )
            subtree = self._subtree(job)
            ending = list(
                Job.select(Job.id, Job.type, Job.status, Job.started_at)
                .where(subtree, Job.status.in_(UNFINISHED))
                .tuples()
            )
            before: dict[str, int] = {}
            for _, _, status, _ in ending:
                before[status] = before.get(status, 0) + 1
            # a running job is in the histogram with its run time so far; pending: never ran
            totals.record_finished(
                self.db,
                [
                    (
                        t,
                        ending_as if id_ == job_id else JobStatus.CANCELLED,
                        started if s == JobStatus.RUNNING else None,
                        now,
                    )
                    for id_, t, s, started in ending
                ],
            )
            (
                Job.update(
                    status=JobStatus.CANCELLED,
                    finished_at=now,
                    updated_at=now,
                    worker_id=None,
                    lease_expires_at=None,
                )
                .where(subtree, Job.status.in_(UNFINISHED))
                .execute()
            )
            if failure:
                Job.update(status=JobStatus.FAILED, error=failure).where(Job.id == job_id).execute()
            self._recount_descendants(job)
            moved = before.get(JobStatus.PENDING, 0) + before.get(JobStatus.RUNNING, 0)
            self.store.shift(
                job.ancestor_ids,
                {
                    JobStatus.PENDING: -before.get(JobStatus.PENDING, 0),
                    JobStatus.RUNNING: -before.get(JobStatus.RUNNING, 0),
                    JobStatus.CANCELLED: moved - (1 if failure else 0),
                    JobStatus.FAILED: 1 if failure else 0,
                },
            )
            if failure:
                message = f"failed: {failure}; {moved - 1} unfinished descendants cancelled"
                self.store.write_log(job.id, "error", message, now)
            else:
                self.store.write_log(job.id, "warning", f"cancelled ({moved} jobs)", now)
            self.store.settle(job.parent_id, now)
            return Job.get_by_id(job_id)

        return self.store.transaction(update)

    def _recount_descendants(self, job: Job) -> None:
        """Recompute the counters of `job` and its descendants from their rows."""
        prefix = job.descendant_prefix
        columns = sorted(set(COUNTER_COLUMN.values()))
        counts: dict[int, dict[str, int]] = {job.id: dict.fromkeys(columns, 0)}
        query = (
            Job.select(Job.id, Job.path, Job.status)
            .where(Job.root_id == job.root_id, Job.path.startswith(prefix))
            .tuples()
        )
        for _, path, status in query.iterator():
            below = [int(p) for p in path[len(job.path) :].strip("/").split("/") if p]
            for ancestor in below:
                counts.setdefault(ancestor, dict.fromkeys(columns, 0))[COUNTER_COLUMN[status]] += 1
        for node_id, by_column in counts.items():
            Job.update(**by_column).where(Job.id == node_id).execute()

    def delete_tree(self, job_id: int) -> int:
        """Delete a finished job, its descendants and their logs; returns jobs deleted."""

        def delete() -> int:
            job = self.get_or_404(job_id)
            self.store.lock_chain(job)
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
            self.store.shift(job.ancestor_ids, {s: -n for s, n in by_status.items()})
            ids = Job.select(Job.id).where(subtree)
            JobLog.delete().where(JobLog.job_id.in_(ids)).execute()
            if job.parent_id is None:
                self.store.forget_tree_state(job.id)
            return Job.delete().where(subtree).execute()

        return self.store.transaction(delete)

    def retry_tree(self, job_id: int, error_group: str | None = None) -> Job:
        """Run again the failed and cancelled jobs of a tree (never the completed ones);
        with `error_group`, only the failed jobs of that cause (quaero.triage).

        Each such job goes back to `pending` with its attempts reset. Finished ancestors
        of a retried job wait for it again: those whose own work was done go back to
        `running`; those whose own work never finished (cancelled or failed while it
        ran) run again too, and find the children they had already spawned (spawning is
        idempotent), so nothing is duplicated.
        """
        now = self.store.now()
        finished = list(FINAL_STATUSES)

        def update() -> list[tuple[int, int]]:
            job = self.get_or_404(job_id)
            # the whole tree's counters are recounted: lock from the root
            self.store.lock([job.root_id, *job.ancestor_ids, job.id])
            again = Job.status.in_([JobStatus.FAILED, JobStatus.CANCELLED])
            if error_group is not None:
                again = (Job.status == JobStatus.FAILED) & (Job.error_group == error_group)
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
            self.store.write_log(job.id, "info", f"retrying {len(ids)} jobs", now)
            return [(job_id_, prio) for job_id_, prio, _ in retried]

        retried = self.store.transaction(update)
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
            on_child_failure=job.on_child_failure,
        )

    def set_paused(self, job_id: int, paused: bool) -> Job:
        """Hold back (or release) the pending jobs of a job's subtree.

        Paused pending jobs stay in `jobs`, so a paused crawl survives a restart; their
        queue messages are dropped when taken, and resuming enqueues them again.
        """
        now = self.store.now()

        def update() -> list[tuple[int, int]]:
            job = self.get_or_404(job_id)
            self.store.lock_chain(job)
            if paused and job.status not in UNFINISHED:
                raise Conflict(f"job {job_id} is {job.status}; only unfinished jobs can be paused")
            if not paused and not job.paused:
                raise Conflict(f"job {job_id} is not paused")
            Job.update(paused=paused, updated_at=now).where(self._subtree(job)).execute()
            word = "paused" if paused else "resumed"
            self.store.write_log(job.id, "info", word, now)
            if paused:
                return []
            return list(
                Job.select(Job.id, Job.priority)
                .where(self._subtree(job), Job.status == JobStatus.PENDING)
                .tuples()
            )

        self.queue.enqueue(self.store.transaction(update))
        return self.get_or_404(job_id)


def fault_point(name: str) -> None:
    """Chaos-test hook: with QUAERO_FAULT=<name> the process dies here, as on a crash."""
    if os.environ.get("QUAERO_FAULT") == name:
        logger.error("QUAERO_FAULT=%s: exiting abruptly", name)
        os._exit(70)
