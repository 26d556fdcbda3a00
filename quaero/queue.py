"""The Huey queue: the only queue quaero has, and the one task that runs a job.

A queue message carries nothing but a job id; everything else lives in `jobs`. Huey's
SQLite storage is the default, its Redis storage (with priorities) the scale-out one.
"""

from __future__ import annotations

import datetime
import logging
import sqlite3
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from huey import PriorityRedisHuey, SqliteHuey
from huey.storage import PriorityRedisStorage, SqliteStorage

from quaero.clock import utc_datetime, wall
from quaero.config import Config
from quaero.errors import Unavailable

try:
    import redis
except ImportError:  # the SQLite queue needs no redis package
    redis = None

logger = logging.getLogger(__name__)

TASK_NAME = "run_job"
T = TypeVar("T")
#: Errors that mean the queue's storage is away for now (Redis down or cut off, a SQLite
#: queue file locked past its timeout), not a bug.
QUEUE_DOWN_ERRORS: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
if redis is not None:
    QUEUE_DOWN_ERRORS += (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
OUTBOX_LIMIT = 100_000  # job ids held for a queue that is away; the orphan sweep does the rest
#: The SQLite queue's sizes, kept by triggers as rows come and go (Huey counts the rows:
#: a scan of a million messages for every /api/stats and /metrics).
SIZES_DDL = (
    "create table if not exists quaero_sizes ("
    "queue text not null, tbl text not null, n integer not null, primary key (queue, tbl))"
)
SIZE_TRIGGERS = """
create trigger if not exists quaero_{tbl}_added after insert on {tbl} begin
    update quaero_sizes set n = n + 1 where queue = new.queue and tbl = '{tbl}'; end;
create trigger if not exists quaero_{tbl}_removed after delete on {tbl} begin
    update quaero_sizes set n = n - 1 where queue = old.queue and tbl = '{tbl}'; end;
"""


class QueueUnavailable(Unavailable):
    """The queue's storage cannot be reached (503)."""


class BulkSqliteStorage(SqliteStorage):
    """Huey's SQLite storage plus one-transaction bulk enqueue for fan-outs, and
    dequeue in batches of `prefetch` messages held for this process's workers.

    A prefetched message that a crash loses costs nothing: its job is still pending
    in `jobs`, and the reaper's orphan sweep enqueues it again.
    """

    def __init__(self, *args, prefetch: int = 1, **kwargs) -> None:
        self.prefetch = max(1, prefetch)
        #: (message, priority) pairs taken in a batch, not yet handed to a worker
        self._prefetched: deque[tuple[bytes, int]] = deque()
        #: why the last write to the queue file failed (disk full…); None once one works
        self.write_error: str | None = None
        super().__init__(*args, **kwargs)

    def initialize_schema(self) -> None:
        """Huey's tables, then the size counters of this queue: counted once, when its
        row is first made (in Huey's exclusive transaction, so no message slips by),
        then kept by the triggers."""
        super().initialize_schema()
        with self.db(commit=True, close=True) as curs:
            curs.execute(SIZES_DDL)
            for table in ("task", "schedule"):
                for statement in SIZE_TRIGGERS.format(tbl=table).split("end;")[:-1]:
                    curs.execute(statement + "end;")
                curs.execute(
                    "insert or ignore into quaero_sizes (queue, tbl, n)"
                    f" select ?, '{table}', count(*) from {table} where queue = ?",
                    (self.name, self.name),
                )

    def _size(self, table: str) -> int:
        try:
            rows = self.sql(
                "select n from quaero_sizes where queue = ? and tbl = ?",
                (self.name, table),
                results=True,
            )
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            rows = []  # a storage opened with create_tables=False: count the rows
        if not rows:
            sql = f"select count(*) from {table} where queue = ?"
            rows = self.sql(sql, (self.name,), results=True)
        return int(rows[0][0])

    def queue_size(self) -> int:
        """Messages on the queue: one row read, however many wait."""
        return self._size("task")

    def schedule_size(self) -> int:
        """Messages on the schedule: one row read."""
        return self._size("schedule")

    @contextmanager
    def _write(self) -> Iterator[None]:
        """Record whether a write to the queue file failed, for /healthz."""
        try:
            yield
        except sqlite3.Error as exc:
            self.write_error = f"queue: {type(exc).__name__}: {exc}"
            raise
        self.write_error = None

    def probe_write(self) -> None:
        """One small real write (Huey's key/value table), to see if writes work again."""
        with self._write():
            self.put_data("quaero:write-probe", b"1")

    def enqueue(self, data: bytes, priority: int | None = None) -> None:
        with self._write():
            super().enqueue(data, priority)

    def dequeue(self) -> bytes | None:
        try:
            return self._prefetched.popleft()[0]
        except IndexError:
            pass
        with self._write():
            return self._dequeue()

    def _dequeue(self) -> bytes | None:
        if self.prefetch == 1:
            return super().dequeue()
        # the same cheap check as Huey's before taking the write lock
        quick = "select 1 from task where queue = ? limit 1"
        if not self.sql(quick, (self.name,), results=True):
            return None
        with self.db(commit=True) as curs:
            curs.execute(
                "select id, data, priority from task where queue = ?"
                " order by priority desc, id limit ?",
                (self.name, self.prefetch),
            )
            rows = curs.fetchall()
            if not rows:
                return None
            marks = ",".join("?" * len(rows))
            ids = [task_id for task_id, _, _ in rows]
            curs.execute(f"delete from task where id in ({marks})", ids)
        self._prefetched.extend((data, priority) for _, data, priority in rows[1:])
        return rows[0][1]

    def prefetched(self) -> int:
        """How many messages this process holds, taken and not yet handed out."""
        return len(self._prefetched)

    def prefetched_items(self) -> list[bytes]:
        """Messages taken from the table but not yet handed to a worker."""
        return [data for data, _ in self._prefetched]

    def return_prefetched(self) -> int:
        """Put messages not yet handed to a worker back on the queue (a clean stop),
        each with the priority it was taken with."""
        items = []
        while self._prefetched:
            items.append(self._prefetched.popleft())
        if items:
            self.enqueue_many(items)
        return len(items)

    def enqueue_many(self, items: list[tuple[bytes, int]]) -> None:
        """Insert many (message, priority) pairs in one transaction."""
        with self._write(), self.db(commit=True) as curs:
            curs.executemany(
                "insert into task (queue, data, priority) values (?, ?, ?)",
                [(self.name, self.to_blob(data), priority or 0) for data, priority in items],
            )


class BulkRedisStorage(PriorityRedisStorage):
    """Huey's Redis priority storage plus pipelined bulk enqueue, and a dequeue that
    waits quietly while Redis is away (Huey's worker would log a traceback per poll)."""

    _down_logged = 0.0
    #: when a dequeue last found Redis away (monotonic): the worker sweeps for orphans
    #: every reaper round for a while after, as messages sent meanwhile may be lost
    down_at = -1e9

    def dequeue(self) -> bytes | None:
        try:
            return super().dequeue()
        except QUEUE_DOWN_ERRORS as exc:
            self._waiting(exc)
            return None

    def read_schedule(self, timestamp) -> list[bytes]:
        try:
            return super().read_schedule(timestamp)
        except QUEUE_DOWN_ERRORS as exc:
            self._waiting(exc)
            return []

    @staticmethod
    def _waiting(exc: Exception) -> None:
        """One warning per 10 s instead of a traceback per poll, and a pause."""
        now = time.monotonic()
        BulkRedisStorage.down_at = now
        if now - BulkRedisStorage._down_logged > 10:
            BulkRedisStorage._down_logged = now
            logger.warning("queue unavailable, workers wait for it: %s", exc)
        time.sleep(1.0)

    def enqueue_many(self, items: list[tuple[bytes, int]]) -> None:
        """Send many (message, priority) pairs as one ZADD. As in Huey's `enqueue`, a
        member is its message prefixed with a microsecond stamp, here one more for each
        item, so messages of equal priority still leave in the order they came."""
        start = int(time.time() * 1e6)
        members = {
            struct.pack(">Q", start + n) + data: 0 if priority is None else -priority
            for n, (data, priority) in enumerate(items)
        }
        if members:
            self.conn.zadd(self.queue_key, members)


class NoRevokeMixin:
    """quaero never revokes Huey tasks (a cancel lives in `jobs`), so skip the two
    storage round trips per task that Huey spends checking and clearing revocations."""

    def is_revoked(self, task, timestamp=None, peek=True) -> bool:
        return False

    def delete(self, key: str) -> bool:
        if key.startswith("r:"):  # a task's revoke key: never set here
            return False
        return super().delete(key)


class ClockMixin:
    """Huey's schedule on quaero's one clock (the database's, see quaero.clock): a
    retry's message is released when its `run_after` is due, whichever host's scheduler
    releases it. `clock` is set by the Store."""

    clock: Callable[[], float] = staticmethod(wall)

    def _get_timestamp(self):
        return utc_datetime(self.clock())  # quaero's Huey instances keep utc=True


class QuaeroSqliteHuey(ClockMixin, NoRevokeMixin, SqliteHuey):
    """SqliteHuey without revocation checks, on quaero's clock."""


class QuaeroRedisHuey(ClockMixin, NoRevokeMixin, PriorityRedisHuey):
    """PriorityRedisHuey without revocation checks, on quaero's clock."""


def make_huey(config: Config):
    """The Huey instance for the configured backend (results off: `jobs` holds them)."""
    q = config.queue
    if q.backend == "redis":
        # Timeouts, so that a Redis that is cut off fails calls instead of hanging them.
        pool = redis.ConnectionPool.from_url(
            q.url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
        )
        return QuaeroRedisHuey(
            q.name,
            results=False,
            connection_pool=pool,
            storage_class=BulkRedisStorage,
            read_timeout=1,
        )
    path = config.queue_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return QuaeroSqliteHuey(
        q.name,
        prefetch=4 * q.num_workers if q.worker_type == "thread" else 1,
        results=False,
        filename=str(path),
        storage_class=BulkSqliteStorage,
        timeout=30,
    )


class JobQueue:
    """Puts job ids on the Huey queue and hands dequeued ids to a runner.

    Every job is in `jobs` before its id is enqueued, so an enqueue that fails because
    the queue is away loses nothing: the ids wait in this process's outbox, which a
    thread sends as soon as the queue answers again (the workers' orphan sweep is the
    backstop if this process dies first). Reads of the queue raise QueueUnavailable.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.huey = make_huey(config)
        self.runner: Callable[[int], None] | None = None
        self.task = self.huey.task(name=TASK_NAME)(self._run)
        # Idle worker threads of this process wait here between polls, so a job
        # enqueued in this process (a submission in `serve`, a fan-out) starts at once.
        self.wakeup = threading.Condition()
        self._outbox: dict[int, tuple[int, float]] = {}  # job id -> (priority, due time)
        self._outbox_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def use_clock(self, now: Callable[[], float]) -> None:
        """Read time (Huey's schedule too) off `now`: the Store's database clock."""
        self.huey.clock = now

    def _eta(self, delay: float) -> datetime.datetime:
        """A schedule time `delay` seconds from now on quaero's clock (tz-aware UTC)."""
        return utc_datetime(self.huey.clock() + delay).replace(tzinfo=datetime.UTC)

    def _run(self, job_id: int) -> None:
        with self.wakeup:  # there may be more messages: one more idle thread looks
            self.wakeup.notify()
        if self.runner is None:
            raise RuntimeError("this process has no job runner: start it as a worker")
        self.runner(job_id)

    def enqueue(self, jobs: Iterable[tuple[int, int]]) -> None:
        """Enqueue (job_id, priority) pairs, in bulk where the storage allows it; while
        the queue is away they wait in the outbox (see the class docstring)."""
        jobs = list(jobs)
        try:
            self._send(jobs)
        except QUEUE_DOWN_ERRORS as exc:
            self._hold(jobs, self.huey.clock(), exc)

    def _send(self, jobs: list[tuple[int, int]]) -> None:
        items = [
            (self.huey.serialize_task(self.task.s(job_id, priority=priority)), priority)
            for job_id, priority in jobs
        ]
        if not items:
            return
        storage = self.huey.storage
        if len(items) > 1 and hasattr(storage, "enqueue_many"):
            storage.enqueue_many(items)
        else:
            for data, priority in items:
                storage.enqueue(data, priority)
        with self.wakeup:
            self.wakeup.notify(len(items))

    def enqueue_later(self, job_id: int, priority: int, delay: float) -> None:
        """Enqueue a job id after `delay` seconds (Huey's schedule, not a sleeping worker)."""
        try:
            self.task.schedule(args=(job_id,), eta=self._eta(delay), priority=priority)
        except QUEUE_DOWN_ERRORS as exc:
            self._hold([(job_id, priority)], self.huey.clock() + delay, exc)

    def _hold(self, jobs: list[tuple[int, int]], due: float, exc: Exception) -> None:
        """Keep ids the queue refused, and make sure a thread sends them later."""
        with self._outbox_lock:
            room = max(0, OUTBOX_LIMIT - len(self._outbox))
            for job_id, priority in jobs[:room]:
                self._outbox[job_id] = (priority, due)
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(
                    target=self._flush_outbox, name="quaero-outbox", daemon=True
                )
                self._flusher.start()
        logger.warning(
            "queue unavailable (%s): %d jobs held, sent when it is back%s",
            exc,
            min(len(jobs), room),
            f"; {len(jobs) - room} left to the orphan sweep" if len(jobs) > room else "",
        )

    def _flush_outbox(self, interval: float = 0.5) -> None:
        """Send held ids as soon as the queue answers again; ends when none are left."""
        while True:
            time.sleep(interval)
            with self._outbox_lock:
                held = dict(self._outbox)
            if not held:
                return
            now = self.huey.clock()
            due = [(job_id, prio) for job_id, (prio, at) in held.items() if at <= now]
            later = [(job_id, prio, at - now) for job_id, (prio, at) in held.items() if at > now]
            try:
                self._send(due)
                for job_id, prio, delay in later:
                    self.task.schedule(args=(job_id,), eta=self._eta(delay), priority=prio)
            except QUEUE_DOWN_ERRORS:
                continue
            except Exception:  # keep the ids: the next round, or the orphan sweep, retries
                logger.exception("sending held jobs to the queue failed")
                continue
            with self._outbox_lock:
                for job_id in held:
                    if self._outbox.get(job_id) == held[job_id]:
                        del self._outbox[job_id]
            logger.info("queue is back: sent %d held jobs", len(held))

    def has_prefetched(self) -> bool:
        """True when this process holds queue messages a worker can take at once."""
        count = getattr(self.huey.storage, "prefetched", None)
        return count is not None and count() > 0

    def away_at(self) -> float:
        """When this process last found the queue away (monotonic; -1e9 if never)."""
        return getattr(self.huey.storage, "down_at", -1e9)

    def held_job_ids(self) -> set[int]:
        """Ids waiting in this process's outbox for the queue to come back."""
        with self._outbox_lock:
            return set(self._outbox)

    def _read(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except QUEUE_DOWN_ERRORS as exc:
            raise QueueUnavailable(
                f"the queue ({self.config.queue.backend}) is unavailable: {exc}"
            ) from exc

    def depth(self) -> int:
        """Messages waiting on the queue."""
        return self._read(self.huey.storage.queue_size)

    def scheduled(self) -> int:
        """Messages waiting for their time (retries in back-off)."""
        return self._read(self.huey.storage.schedule_size)

    def head(self) -> tuple[int | None, int] | None:
        """The next message to be taken, as (job id, priority), without reading the rest
        of the queue: None when the queue is empty; a job id of None for a message that
        is not a job's."""
        items = self._read(lambda: list(self.huey.storage.enqueued_items(limit=1)))
        if not items:
            return None
        try:
            task = self.huey.deserialize_task(items[0])
        except Exception:  # a message of another task or version: not ours
            logger.warning("unreadable queue message at the head", exc_info=True)
            return None, 0
        if task.name != TASK_NAME or not task.args:
            return None, 0
        return int(task.args[0]), int(task.priority or 0)

    def local_job_ids(self) -> set[int]:
        """Ids this process holds for the queue (its outbox) or took from it and has not
        started (prefetched messages): a few dozen at most, never the queue itself."""
        ids = self.held_job_ids()
        for data in getattr(self.huey.storage, "prefetched_items", list)():
            with suppress(Exception):
                task = self.huey.deserialize_task(data)
                if task.name == TASK_NAME and task.args:
                    ids.add(int(task.args[0]))
        return ids

    def queued_job_ids(self) -> set[int]:
        """Ids of every job with a message on the queue, the schedule or the outbox: reads
        and unpickles every message (tests and diagnostics; the orphan sweep does not)."""
        ids: set[int] = self.held_job_ids()
        storage = self.huey.storage
        messages = self._read(
            lambda: list(storage.enqueued_items()) + list(storage.scheduled_items())
        )
        messages += getattr(storage, "prefetched_items", list)()
        for data in messages:
            try:
                task = self.huey.deserialize_task(data)
            except Exception:  # a message of another task or version: not ours
                logger.warning("unreadable queue message skipped", exc_info=True)
                continue
            if task.name == TASK_NAME and task.args:
                ids.add(int(task.args[0]))
        return ids

    def return_prefetched(self) -> int:
        """Put back messages this process took but did not start (a clean stop)."""
        give_back = getattr(self.huey.storage, "return_prefetched", None)
        return give_back() if give_back else 0

    def check_writes(self) -> str | None:
        """None when the queue takes writes, else why not (SQLite queue: the last
        write decides; after a failure a probe write finds out if it works again)."""
        storage = self.huey.storage
        if getattr(storage, "write_error", None) is None:
            return None
        with suppress(sqlite3.Error):
            storage.probe_write()
        return storage.write_error

    def ping(self) -> None:
        """Raise QueueUnavailable if the queue storage cannot be reached."""
        self.depth()

    def close(self) -> None:
        """Close the storage connection."""
        close = getattr(self.huey.storage, "close", None)
        if close:
            close()
