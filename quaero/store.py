"""The write plumbing of the metadata store, shared by the job manager and recovery.

`Store.transaction` runs every write (retried on lock timeouts and deadlocks, its
failure remembered for /healthz); `guard_tree`, `lock` and `lock_chain` order the
writers of a tree (see `guard_tree`); `shift` moves the descendant counters of
ancestors, `settle` finishes ancestors whose descendants all finished; `write_log` and
`write_logs` append to `job_logs`; `enqueue_or_sweep` puts committed jobs on the queue
or leaves them to the orphan sweep.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any, TypeVar

import peewee

from quaero import clock, statements, totals
from quaero import db as db_module
from quaero.config import Config
from quaero.db import dialect
from quaero.models import LOG_LEVELS, TREE_STATE_TABLES, Job, JobStatus, literal
from quaero.queue import JobQueue

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: The ancestors' counter that counts a descendant in each status.
COUNTER_COLUMN = {
    JobStatus.PENDING: "n_open",
    JobStatus.RUNNING: "n_open",
    JobStatus.COMPLETED: "n_completed",
    JobStatus.FAILED: "n_failed",
    JobStatus.CANCELLED: "n_cancelled",
}
MAX_LOG_MESSAGE = 10_000
#: The first key of the trees' advisory locks (PostgreSQL; see `Store.guard_tree`).
TREE_GUARD = 7_283_641
RETRYABLE_DB_ERRORS = (
    "database is locked",
    "deadlock detected",
    "could not serialize",
    "connection lost before commit",  # quaero.db.ConnectionLost: nothing was written
)
#: What `Store.warm_up` reads: the tables of the hot path, by a column no row leaves NULL.
WARM_TABLES = (
    ("jobs", "id"),
    ("job_logs", "job_id"),
    ("job_totals", "type"),
    ("job_counts", "type"),
)
#: One log line: job id, level, message, time.
LogLine = tuple[int, str, str, float]


class Store:
    """One process's writer of the metadata store: transactions, locks, counters, logs."""

    def __init__(self, db: peewee.Database, queue: JobQueue, config: Config) -> None:
        self.db = db
        self.queue = queue
        self.config = config
        self.dialect = dialect(db)
        self.is_postgres = self.dialect == "postgresql"
        # SQLite has one writer at a time; queueing this process's writers on a Python
        # lock wakes the next one at once, where SQLite's busy handler would sleep ms.
        self._write_lock = nullcontext() if self.is_postgres else threading.RLock()
        self._waiting: list[_Write] = []  # writes handed to the writer (`combined`)
        self._waiting_lock = threading.Lock()
        self._settle_sql = self.sql(statements.SETTLE)
        self._log_values = f"({db.param}, {db.param}, {db.param}, {db.param})"
        #: the one clock of every time written to or compared with jobs and workers
        #: rows: PostgreSQL's (many hosts), this host's with SQLite (one host)
        self.clock = clock.DbClock(db if self.is_postgres else None)
        clock.install(self.clock)
        if queue is not None:  # a Store may be built without a queue (tests)
            queue.use_clock(self.now)
        #: when an enqueue (or a claim) last failed: the maintenance thread then sweeps
        #: for orphans every reaper round for a while, not every 5 s
        self.enqueue_failed_at = -1e9
        #: why the last write transaction failed; None once one succeeds (see /healthz)
        self.write_error: str | None = None

    def warm_up(self) -> None:
        """Open this thread's connection and read each table a job's claim and finish
        write, so that a worker thread's first job pays for neither (on PostgreSQL a
        new server process, and the catalog caches of those tables and their indexes).
        """
        for table, column in WARM_TABLES:
            self.db.execute_sql(f"SELECT 1 FROM {table} WHERE {column} IS NULL LIMIT 1")

    def checkpoint(self) -> tuple[int, int, int]:
        """SQLite: copy the write-ahead log into the database; returns SQLite's (busy,
        frames in the log, frames copied) of the last pass. The first pass runs beside
        the writers (passive: it blocks no one, and SQLite runs it without the GIL);
        the second copies what they appended meanwhile while this process's writers
        wait, so that the log is copied whole and the next commit starts it over
        (under steady writes, passes beside them alone would let it grow for good)."""
        self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
        with self._write_lock:
            row = self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return tuple(row)

    def now(self) -> float:
        """The database's time now, epoch seconds (see quaero.clock)."""
        return self.clock.now()

    def sql(self, statement: str) -> str:
        """A statement of quaero.statements rendered for this database's driver."""
        return statements.render(statement, self.dialect)

    def transaction(self, fn: Callable[[], T], durable: bool = True, attempts: int = 5) -> T:
        """Run `fn` in one write transaction, retrying on lock timeouts and deadlocks.

        `durable=False` (PostgreSQL) commits without waiting for the WAL flush: for the
        workers' own transitions, which a database crash can only undo as a whole and in
        order, so the job runs again (at-least-once), never vanishes. Submissions and
        user actions stay durable.
        """
        for attempt in range(attempts):
            try:
                if self.is_postgres:  # BEGIN sets it in the same round trip
                    db_module.asynchronous_commit(not durable)
                try:
                    with self._write_lock, self.db.atomic():
                        result = fn()
                finally:
                    if self.is_postgres:  # other atomic blocks of this thread: durable
                        db_module.asynchronous_commit(False)
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

    def combined(self, fn: Callable[[], T]) -> T:
        """`transaction(fn, durable=False)`, where on SQLite a thread that waits for the
        one writer hands `fn` to it: whoever takes the write lock runs every waiting
        `fn` in its own transaction and commits once for all of them. If one raises,
        that transaction is rolled back and they run again, each in a savepoint: the
        one that raises is rolled back alone and its exception goes to its caller.
        For the workers' hot path, whose `fn`s read no thread's state but the database's
        (so running one twice is safe, as a retried transaction does).
        """
        if self.is_postgres:
            return self.transaction(fn, durable=False)
        mine = _Write(fn)
        with self._waiting_lock:
            self._waiting.append(mine)
        with self._write_lock:
            if not mine.done:  # nobody took it while this thread waited: take them all
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                self._write_all(batch)
        return mine.outcome()

    def _write_all(self, batch: list[_Write]) -> None:
        """Run the `fn`s of `batch` in one transaction (see `combined`) and give every
        one its outcome."""
        stopped = RuntimeError("the writing thread stopped before this write")
        outcomes: list[tuple[Any, BaseException | None]] = [(None, stopped)] * len(batch)
        try:
            if len(batch) == 1:
                outcomes = [(self.transaction(batch[0].fn, durable=False), None)]
            else:
                fns = [write.fn for write in batch]
                try:  # a savepoint each costs more than the rare second run
                    outcomes = self.transaction(lambda: [(fn(), None) for fn in fns], durable=False)
                except peewee.OperationalError:  # the transaction's own, retried already
                    raise
                except Exception:  # one of them raised: all rolled back; again, apart
                    outcomes = self.transaction(
                        lambda: [self._savepoint(fn) for fn in fns], durable=False
                    )
        except Exception as exc:
            outcomes = [(None, exc)] * len(batch)
        finally:  # whatever stopped this thread, no caller waits for an outcome forever
            for write, (result, error) in zip(batch, outcomes, strict=True):
                write.result, write.error, write.done = result, error, True

    def _savepoint(self, fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
        """`fn`'s result, or its exception with its writes rolled back alone."""
        try:
            with self.db.atomic():  # a savepoint
                return fn(), None
        except peewee.OperationalError:  # the transaction's own: retry them all
            raise
        except Exception as exc:
            return None, exc

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

    def enqueue_or_sweep(self, jobs: list[tuple[int, int]], delay: float = 0.0) -> None:
        """Enqueue jobs already committed as pending; if the queue refuses (full disk,
        Redis away), leave them to the orphan sweep, which then runs every reaper round
        for a while instead of every 5 s."""
        try:
            if delay:
                for job_id, priority in jobs:
                    self.queue.enqueue_later(job_id, priority, delay)
            else:
                self.queue.enqueue(jobs)
        except Exception as exc:  # the jobs are safe in `jobs`; the sweep enqueues them
            self.enqueue_failed_at = time.monotonic()
            logger.warning("%d jobs not enqueued (%s); the orphan sweep will", len(jobs), exc)

    def guard_tree(self, root_id: int, exclusive: bool) -> None:
        """PostgreSQL: take a tree's guard for this transaction, shared or exclusive.

        The workers' hot writes (spawn, finish, settle) share it, so the finishes of one
        tree run side by side: each locks its own row, then its ancestors deepest first
        (ids grow down a tree, so every hot writer locks in descending id order and none
        can deadlock), the totals' rows after every jobs row, and the ancestors only for
        the counter update at its very end, which a finish sends with its COMMIT: the
        root row is held for no client round trip. A user action on a tree (cancel,
        retry, delete, pause) takes it exclusive: it waits for the hot writers in
        flight and keeps new ones out while it reads and rewrites the subtree. SQLite
        needs nothing: BEGIN IMMEDIATE already serialises writers."""
        if self.is_postgres:
            fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            key = int(root_id) % 2_147_483_647  # an int4; a collision only makes one wait
            # with the transaction's BEGIN when that is still to be sent (quaero.db)
            self.db.execute_first(f"SELECT {fn}({TREE_GUARD}, {key})")

    def lock(self, ids: Iterable[int], descending: bool = False) -> None:
        """PostgreSQL: row-lock jobs in ascending id order before changing any of them
        (user actions and recovery, under the tree's exclusive guard where they move
        counters); `descending` for the hot writers (see `guard_tree`). SQLite needs
        nothing."""
        if self.is_postgres:
            ids = sorted(set(ids))
            if ids:
                order = Job.id.desc() if descending else Job.id
                list(Job.select(Job.id).where(Job.id.in_(ids)).order_by(order).for_update())

    def lock_chain(self, job: Job) -> None:
        """Guard the job's tree exclusively and lock the job and its ancestors
        (PostgreSQL), root first: what a user action takes before changing a subtree."""
        self.guard_tree(job.root_id or job.id, exclusive=True)
        self.lock([*job.ancestor_ids, job.id])

    def shift(
        self,
        ids: Iterable[int],
        changes: dict[str, int],
        commit: bool = False,
        then: tuple[str, list] | None = None,
    ) -> dict[int, tuple[int, str | None]]:
        """Add `changes` (status → delta) to the descendant counters of jobs `ids`;
        returns each changed job's new (n_open, outcome). On PostgreSQL the rows are
        locked deepest first (descending ids, see `guard_tree`); with `commit` the
        shift and `then` (a statement with positional parameters: the totals) are the
        transaction's last statements, sent with its COMMIT in one round trip, so the
        ancestors' rows (the root's) are held for no client round trip."""
        ids = list(ids)
        deltas: dict[str, int] = {}
        for status, delta in changes.items():
            column = COUNTER_COLUMN[status]
            deltas[column] = deltas.get(column, 0) + delta
        deltas = {column: delta for column, delta in deltas.items() if delta}
        if not (ids and deltas):  # pending <-> running moves no counter
            if then is not None:
                self.db.execute_sql(*then)
            return {}
        p = self.db.param
        sets = ", ".join(f"{column} = {column} + {p}" for column in deltas)
        where = ", ".join([p] * len(ids))
        target = f"id IN ({where})"
        if self.is_postgres:
            target = (
                f"id IN (SELECT id FROM jobs WHERE {target} ORDER BY id DESC FOR NO KEY UPDATE)"
            )
        sql = f"UPDATE jobs SET {sets} WHERE {target} RETURNING id, n_open, outcome"
        params = [*deltas.values(), *ids]
        if commit and self.is_postgres:
            rows = self.db.execute_and_commit([(sql, params), *([then] if then else [])])[1]
        else:
            rows = self.db.execute_sql(sql, params).fetchall()
            if then is not None:
                self.db.execute_sql(*then)
        return {job_id: (n_open, outcome) for job_id, n_open, outcome in rows}

    def settle(
        self,
        job_id: int | None,
        now: float,
        finished: list[tuple[str, str, float | None, float]] | None = None,
    ) -> None:
        """Finish ancestors whose own work is done and whose descendants all finished.

        Their finishes go into the totals, or into `finished` for the caller to record
        (last in its transaction: the totals' rows are locked after the jobs' rows)."""
        done: list[tuple[str, str, float | None, float]] = []
        while job_id is not None:
            row = self.db.execute_sql(self._settle_sql, {"now": now, "id": job_id}).fetchone()
            if row is None:
                break
            parent_id, path, outcome, type_, started_at = row
            done.append((type_, outcome, started_at, now))
            ancestors = [int(part) for part in path.strip("/").split("/") if part]
            self.shift(ancestors, {JobStatus.RUNNING: -1, outcome: 1})
            job_id = parent_id
        if finished is not None:
            finished.extend(done)
        else:
            totals.record_finished(self.db, done)

    def settle_stranded(self) -> int:
        """Settle jobs left running with their own work done and no open descendant:
        a finish on PostgreSQL settles its parent just after its commit, so a process
        that died in between leaves one (the reaper calls this). Returns how many."""
        stranded = list(
            Job.select(Job.id, Job.root_id)
            .where(
                Job.status == literal(JobStatus.RUNNING),
                Job.outcome.is_null(False),
                Job.n_open == 0,
            )
            .tuples()
        )
        for job_id, root_id in stranded:
            self.transaction(lambda j=job_id, r=root_id: self.settle_now(j, r), durable=False)
        return len(stranded)

    def settle_now(self, job_id: int, root_id: int) -> None:
        """Settle a job and its ancestors if they are due, in the caller's transaction."""
        self.guard_tree(root_id, exclusive=False)
        self.settle(job_id, self.now())

    def forget_tree_state(self, root_id: int) -> None:
        """Delete what executors keep per tree (the crawler's pages and hosts)."""
        for table in TREE_STATE_TABLES:
            self.db.execute_sql(f"DELETE FROM {table} WHERE root_id = {self.db.param}", (root_id,))

    def write_log(self, job_id: int, level: str, message: str, now: float) -> None:
        """Append one line to a job's log (inside the caller's transaction)."""
        self.write_logs([(job_id, level, message, now)])

    def write_logs(self, lines: Iterable[LogLine]) -> None:
        """Append lines to jobs' logs, LOG_ROWS_PER_INSERT a statement (inside the
        caller's transaction). Plain SQL: most jobs write one line with their outcome,
        and peewee's INSERT builder (and PostgreSQL's RETURNING) cost more than the row."""
        rows = [log_row(*line) for line in lines]
        for start in range(0, len(rows), LOG_ROWS_PER_INSERT):
            chunk = rows[start : start + LOG_ROWS_PER_INSERT]
            values = ", ".join([self._log_values] * len(chunk))
            params = [value for row in chunk for value in row]
            self.db.execute_sql(f"{LOG_INSERT} {values}", params)


#: The rows of one `job_logs` INSERT (4 parameters each: SQLite allows 32,766).
LOG_ROWS_PER_INSERT = 500
LOG_INSERT = "INSERT INTO job_logs (job_id, level, message, created_at) VALUES"


def log_row(job_id: int, level: str, message: str, now: float) -> tuple[int, str, str, float]:
    """A `job_logs` row: an unknown level becomes info, a long message is cut."""
    level = level if level in LOG_LEVELS else "info"
    return (job_id, level, str(message)[:MAX_LOG_MESSAGE], now)


class _Write:
    """A write handed to the writer thread (`Store.combined`) and its outcome."""

    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result
