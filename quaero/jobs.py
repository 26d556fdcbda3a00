"""JobManager: the only writer of job statuses, around one invariant: counters move
with statuses.

Every status change is a named transition here, guarded in SQL so that it happens at
most once (`pending → running` only from pending, completion only by the lease holder).
Descendant counters (`n_open` for pending or running, `n_completed`, `n_failed`,
`n_cancelled`) of every ancestor move in the same transaction as the change, so a page
of roots reads its counts and progress for free. The user actions on whole trees
(cancel, retry, delete, pause, rerun) are in quaero.trees. Recovery (leases, the
reaper, the orphan sweep, the worker registry, retention) lives in quaero.recovery and
moves jobs only through the transitions here; all of them write through quaero.store.

The hot path (claim, spawn, finish, settle) is the part every job goes through: its
locks and writes are ordered as quaero.store's `guard_tree` describes.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from quaero import counts, policies, statements, totals, triage
from quaero.errors import LeaseLost
from quaero.limits import OverLimit, TypeLimits
from quaero.models import ChildSpec, Job, JobStatus
from quaero.store import Store
from quaero.trees import TreeActions

logger = logging.getLogger(__name__)

INSERT_CHUNK = 500
T = TypeVar("T")
#: What an executor buffered: log lines (level, message, time) and its last progress.
Report = tuple[list[tuple[str, str, float]], float | None]
#: A successful attempt whose completion is yet to be written: (job, result, report).
Completion = tuple[Job, Any, Report | None]


class JobManager(TreeActions):
    """Creates jobs, moves them through their states, and records their logs; the
    user actions on whole trees come from `TreeActions` (quaero.trees)."""

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
            counts.record(self.db, [(type, JobStatus.PENDING, 1)])
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
    ) -> list[int]:
        """Create children of `parent` in one transaction, then enqueue them.

        Specs whose `dedup_key` already exists in the tree are skipped: the tree's known
        keys are read first and their specs dropped before any row is built, and a
        unique index decides among concurrent spawners (a re-run of the parent agrees).
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
            # no child of a cancelled job is ever created (the tree's guard orders them).
            # The parent, then its ancestors deepest first: spawns of one tree serialise
            # on its root row, where the tree's size is read for its cap.
            paused = self._hold(parent, lock_chain=True)
            todo = [*specs, *(prepare() if prepare is not None else ())]
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
            todo = self._not_in_tree(parent.root_id, todo[: max(0, room)])
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
            created: dict[str, int] = {}  # by type, for the counts ledger
            for start in range(0, len(rows), INSERT_CHUNK):
                chunk = rows[start : start + INSERT_CHUNK]
                if self.store.is_postgres:  # a column an array: a short statement
                    sql = statements.INSERT_CHILDREN_FROM_ARRAYS
                    params = [list(column) for column in zip(*chunk, strict=True)]
                else:
                    sql = statements.insert_children(len(chunk), self.db.param)
                    params = [value for row in chunk for value in row]
                for job_id, priority, type_ in self.db.execute_sql(sql, params).fetchall():
                    ids.append((job_id, priority))
                    created[type_] = created.get(type_, 0) + 1
            counts.record(self.db, [(t, JobStatus.PENDING, n) for t, n in created.items()])
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
        """In a write transaction: take the tree's guard (shared) and lock `job` (with
        `lock_chain`, then its ancestors deepest first), and prove this attempt still
        holds it; returns whether it is paused. LeaseLost if not."""
        self.store.guard_tree(job.root_id, exclusive=False)
        self.store.lock([job.id, *(job.ancestor_ids if lock_chain else ())], descending=True)
        row = Job.select(Job.status, Job.paused, Job.lease_epoch).where(Job.id == job.id).first()
        if row is None or row.status != JobStatus.RUNNING or row.lease_epoch != job.lease_epoch:
            raise LeaseLost(f"job {job.id}: this attempt no longer holds it")
        return bool(row.paused)

    def _not_in_tree(self, root_id: int, specs: list[ChildSpec]) -> list[ChildSpec]:
        """`specs` less those whose `dedup_key` the tree already has and repeats of a key
        (the first wins, as in the insert), in order; specs without a key are kept. Read
        before the insert (which skips them too) in one statement per chunk of keys, so
        that no row is built for a known URL and the insert never waits on a row a
        finish is updating (that finish may be waiting for this spawn's ancestors)."""
        keys = list(dict.fromkeys(spec.dedup_key for spec in specs if spec.dedup_key is not None))
        known: set[str] = set()
        for start in range(0, len(keys), INSERT_CHUNK):
            chunk = keys[start : start + INSERT_CHUNK]
            if self.store.is_postgres:  # the keys an array: a short statement
                found = self.db.execute_sql(statements.KNOWN_KEYS_FROM_ARRAY, (root_id, chunk))
            else:  # written out: peewee builds an IN of 500 values slowly
                sql = statements.known_keys(len(chunk), self.db.param)
                found = self.db.execute_sql(sql, [root_id, *chunk])
            known.update(key for (key,) in found)
        kept = []
        for spec in specs:
            if spec.dedup_key is not None:
                if spec.dedup_key in known:
                    continue
                known.add(spec.dedup_key)
            kept.append(spec)
        return kept

    # -- running --------------------------------------------------------------------

    def claim(
        self, job_id: int, worker_id: str, completing: Completion | None = None
    ) -> Job | None:
        """Atomically move a job `pending → running` for a worker; None if it is not
        pending (a duplicate message, a cancelled or paused job, a retry not yet due).

        `completing`, a completion this worker thread held back (see `Runner`), is
        written in the same transaction, before the claim: one commit for both."""
        now = self.store.now()
        lease = now + self.config.jobs.lease_seconds

        def update() -> Job | None:
            if completing is not None:
                self._complete_in_transaction(worker_id, completing)
            # pending -> running moves no ancestor counter (both are `n_open`), so the
            # claim is one statement on one row
            params = {
                "id": job_id,
                "worker_id": worker_id,
                "lease_expires_at": lease,
                "now": now,
                "due_by": now + statements.CLAIM_CLOCK_SKEW,
            }
            if self.store.is_postgres and not self.config.types and completing is None:
                # no type has a limit to check after it: the claim and its COMMIT go in
                # one round trip
                names, rows = self.db.execute_and_commit([(self._claim_sql, params)])
            else:
                cursor = self.db.execute_sql(self._claim_sql, params)
                names = [d[0] for d in cursor.description]
                rows = cursor.fetchall()
            if not rows:
                return None
            job = Job.from_row(names, rows[0])
            self.limits.check(job, now)  # over its type's limit: rolls the claim back
            return job

        try:  # on SQLite, with the claims of this process's other worker threads
            return self.store.combined(update)
        except OverLimit as over:
            if completing is not None:  # rolled back with the claim: written alone
                self.complete(completing[0], worker_id, *completing[1:])
            self.limits.wait(over, now)
            return None
        except Exception:
            # the queue message is gone and the job still pending: sweep for it soon
            self.store.enqueue_failed_at = time.monotonic()
            raise

    def _complete_in_transaction(self, worker_id: str, completing: Completion) -> None:
        job, result, report = completing
        params = self._finish_params(job, worker_id, JobStatus.COMPLETED, result=result)
        self.store.guard_tree(job.root_id, exclusive=False)
        if not self._finish_in_transaction(job, params, None, report):
            logger.info("job %s finished but was no longer held here; result dropped", job.id)

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
        params = self._finish_params(
            job, worker_id, outcome, result, error, traceback, lease_expired_by, report
        )

        settle_later: list[int] = []

        def update() -> bool:
            settle_later.clear()
            if outcome == JobStatus.FAILED:
                # a failure may fail ancestors and cancel subtrees: a user action's locks
                self.store.lock_chain(job)
                return self._finish_in_transaction(job, params, message, report)
            self.store.guard_tree(job.root_id, exclusive=False)
            hot = settle_later if self.store.is_postgres else None
            return self._finish_in_transaction(job, params, message, report, hot)

        done = self.store.transaction(update, durable=False)
        for parent_id in settle_later:  # committed: settle what this finish left due
            self.store.transaction(
                lambda p=parent_id: self.store.settle_now(p, job.root_id), durable=False
            )
        return done

    def _finish_params(
        self,
        job: Job,
        worker_id: str,
        outcome: str,
        result: Any = None,
        error: str | None = None,
        traceback: str | None = None,
        lease_expired_by: float | None = None,
        report: Report | None = None,
    ) -> dict[str, Any]:
        """The parameters of statements.FINISH."""
        progress = 1.0 if outcome == JobStatus.COMPLETED else (report[1] if report else None)
        return {
            "id": job.id,
            "worker_id": worker_id,
            "lease_epoch": job.lease_epoch,
            "lease_expired_by": lease_expired_by,
            "outcome": outcome,
            "result": json.dumps(result) if result is not None else None,
            "error": error,
            "traceback": traceback,
            "progress": progress,
            "now": self.store.now(),
        }

    def _finish_in_transaction(
        self,
        job: Job,
        params: dict[str, Any],
        message: str | None,
        report: Report | None,
        settle_later: list[int] | None = None,
    ) -> bool:
        """The writes of `finish_own_work`, in the caller's transaction: the job's own
        row first, then its ancestors' counters deepest first, the totals last (the
        lock order of quaero.store's hot writers). With `settle_later` (PostgreSQL's
        hot path) the counter shift and the totals are sent with the COMMIT,
        and a parent this finish leaves due is appended there, for the caller to
        settle once committed (`Store.settle_now`; the reaper's `settle_stranded`
        does it if this process dies in between)."""
        rows = self.db.execute_sql(self._finish_sql, params).fetchall()
        if not rows:
            return False
        outcome, now = params["outcome"], params["now"]
        self._write_report(job.id, report, now, with_progress=False)
        if message:
            level = "error" if outcome == JobStatus.FAILED else "info"
            self.store.write_log(job.id, level, message, now)
        if outcome == JobStatus.FAILED:
            triage.record_error_group(self.db, job.id, params["error"])
        finished: list[tuple[str, str, float | None, float]] = []
        if rows[0][0] == outcome:
            finished.append((job.type, outcome, job.started_at, now))
            moves = {JobStatus.RUNNING: -1, outcome: 1}
            if settle_later is not None:
                add = totals.upsert(self.db, finished)
                changed = self.store.shift(job.ancestor_ids, moves, commit=True, then=add)
                n_open, parent_outcome = changed.get(job.parent_id, (1, None))
                if n_open == 0 and parent_outcome is not None:
                    settle_later.append(job.parent_id)
                return True
            changed = self.store.shift(job.ancestor_ids, moves)
            n_open, parent_outcome = changed.get(job.parent_id, (1, None))
            if n_open == 0 and parent_outcome is not None:  # else nothing to settle
                self.store.settle(job.parent_id, now, finished)
        totals.record_finished(self.db, finished)
        if outcome == JobStatus.FAILED:
            for ancestor_id in policies.ancestors_to_fail(job):
                self.cancel_tree(ancestor_id, failure=policies.failure_message(job))
        return True


def fault_point(name: str) -> None:
    """Chaos-test hook: with QUAERO_FAULT=<name> the process dies here, as on a crash."""
    if os.environ.get("QUAERO_FAULT") == name:
        logger.error("QUAERO_FAULT=%s: exiting abruptly", name)
        os._exit(70)
