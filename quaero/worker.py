"""Workers: the Huey consumer that runs jobs, their heartbeat, and the reaper.

`Runner.run(job_id)` is what the Huey task calls: it claims the job (`pending →
running`, a no-op for duplicates), runs its executor through a JobContext, and records
the outcome. On SQLite, while this process holds prefetched messages, a worker thread
holds back a success and writes it with its next claim (one commit for both); it
writes it alone as soon as it finds the queue empty, and before the process stops.
`WorkerService` starts the consumer with `[queue] num_workers` workers and a
maintenance thread that renews leases and recovers lost jobs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from huey.consumer import Consumer, ConsumerStopped, Scheduler, Worker

from quaero.executors.base import JobCancelled, JobContext, PermanentError, get_executor
from quaero.jobs import Completion
from quaero.recovery import new_worker_id
from quaero.schedules import Scheduler as RootScheduler
from quaero.services import Services

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Runner:
    """Runs one job by id; the boundary where executor exceptions become job states."""

    def __init__(self, services: Services, worker_id: str) -> None:
        self.services = services
        self.manager = services.manager
        self.worker_id = worker_id
        self.in_flight: set[int] = set()
        self.jobs_done = 0
        self._lock = threading.Lock()
        #: completions held back per worker thread (by thread id), see `hold_back`
        self._held: dict[int, Completion] = {}
        # with one writer at a time (SQLite), a commit saved is the writer's time saved;
        # the queue must be SQLite's, whose prefetched messages say a claim comes at
        # once, and the workers threads of this process, which stop() can reach
        self._may_hold = (
            not services.store.is_postgres and services.config.queue.worker_type == "thread"
        )

    def executing(self) -> list[int]:
        """Ids of the jobs this process is executing now (the heartbeat renews these)."""
        with self._lock:
            return list(self.in_flight)

    def run(self, job_id: int) -> None:
        """Claim and execute a job; never lets an exception leave it `running`."""
        held = self._held.pop(threading.get_ident(), None)
        try:
            job = self.manager.claim(job_id, self.worker_id, completing=held)
        except Exception:
            if held is not None:  # not written: this thread still holds it
                self._held[threading.get_ident()] = held
            raise
        if held is not None:
            self._done(held[0].id)
        if job is None:
            logger.debug("job %s not claimable (duplicate, cancelled or not due)", job_id)
            return
        with self._lock:
            self.in_flight.add(job_id)
        try:
            self._execute(job)
        except BaseException:
            self._done(job_id)
            raise
        if not self._is_held(job_id):
            self._done(job_id)

    def _done(self, job_id: int) -> None:
        with self._lock:
            self.in_flight.discard(job_id)
            self.jobs_done += 1

    def _is_held(self, job_id: int) -> bool:
        held = self._held.get(threading.get_ident())
        return held is not None and held[0].id == job_id

    def write_held(self, thread_id: int | None = None) -> None:
        """Write the completion a worker thread held back (this thread's by default):
        when it finds the queue empty, and for every thread before the process stops."""
        held = self._held.pop(threading.get_ident() if thread_id is None else thread_id, None)
        if held is None:
            return
        job, result, report = held
        try:
            done = self._persist(
                job, lambda: self.manager.complete(job, self.worker_id, result, report)
            )
            if done is False:
                logger.info("job %s finished but was no longer held here; result dropped", job.id)
        finally:
            self._done(job.id)

    def write_all_held(self) -> None:
        """Write every worker thread's held-back completion (the threads have stopped)."""
        for thread_id in list(self._held):
            self.write_held(thread_id)

    def _execute(self, job) -> None:
        try:
            executor = get_executor(job.type)()
        except KeyError:
            error = f"unknown job type {job.type!r}"
            self._persist(job, lambda: self.manager.fail(job, self.worker_id, error, None, True))
            return
        ctx = JobContext(self.manager, job, self.services.config)
        if job.timeout:
            outcome = self._call_with_timeout(executor, ctx, job.timeout)
        else:
            outcome = _call(executor, ctx)
        self._record(job, outcome, ctx)

    def _call_with_timeout(self, executor, ctx: JobContext, timeout: float) -> Outcome:
        """Run the executor in its own thread; past `timeout` the job fails and this
        worker slot is free again (the abandoned thread sees itself cancelled)."""
        box: list[Outcome] = []
        thread = threading.Thread(
            target=lambda: box.append(_call(executor, ctx)),
            name=f"job-{ctx.job.id}",
            daemon=True,
        )
        thread.start()
        thread.join(timeout)
        if box:
            return box[0]
        ctx.abandon()
        return Outcome(error=TimeoutError(f"timed out after {timeout:g}s"), traceback=None)

    def _record(self, job, outcome: Outcome, ctx: JobContext) -> None:
        exc = outcome.error
        report = ctx.drain()
        if exc is None:
            if self._may_hold and self.services.queue.has_prefetched():
                # the next claim comes at once: it writes this completion too
                self._held[threading.get_ident()] = (job, outcome.result, report)
                return
            done = self._persist(
                job, lambda: self.manager.complete(job, self.worker_id, outcome.result, report)
            )
            if done is False:
                logger.info("job %s finished but was no longer held here; result dropped", job.id)
        elif isinstance(exc, JobCancelled):
            logs, progress = report
            if logs or progress is not None:  # kept only if this attempt still owns the job
                self._persist(job, lambda: self.manager.write_report(job, logs, progress))
            logger.info("job %s stopped: %s", job.id, exc)
        else:
            permanent = isinstance(exc, PermanentError)
            logger.warning("job %s (%s) failed: %s", job.id, job.type, _describe(exc))
            self._persist(
                job,
                lambda: self.manager.fail(
                    job, self.worker_id, _describe(exc), outcome.traceback, permanent, report
                ),
            )

    def _persist(self, job, write: Callable[[], T]) -> T | None:
        """Record an attempt's outcome, retrying with back-off while the store refuses
        the write (disk full, connection lost). The job stays in flight meanwhile, so
        its lease is renewed; if the write never goes through within a lease, the job
        is handed back (or, if even that fails, left for its lease to lapse)."""
        delay = 0.1
        deadline = time.monotonic() + self.services.config.jobs.lease_seconds
        while True:
            try:
                return write()
            except Exception as exc:  # the store's errors: retried, then handed back
                if time.monotonic() + delay > deadline:
                    logger.error("job %s: its outcome could not be recorded: %s", job.id, exc)
                    break
                logger.warning(
                    "job %s: recording its outcome failed (%s); retrying in %.1fs",
                    job.id,
                    exc,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        try:
            self.services.recovery.hand_back(job, self.worker_id)
        except Exception:
            logger.exception("job %s: hand-back failed; it reruns when its lease lapses", job.id)
        return None


@dataclass
class Outcome:
    """What an executor's run produced: a result, or an exception and its traceback."""

    result: Any = None
    error: BaseException | None = None
    traceback: str | None = None


def _call(executor, ctx: JobContext) -> Outcome:
    """Run an executor; the task boundary where any exception becomes an Outcome."""
    try:
        return Outcome(result=executor.run(ctx))
    except Exception as exc:  # recorded on the job with its traceback
        return Outcome(error=exc, traceback=traceback.format_exc())


def _guard(name: str, step: Callable[[], T]) -> T | None:
    """Run one maintenance step; a failure is logged and the next round retries."""
    try:
        return step()
    except Exception:  # keep the maintenance thread alive
        logger.exception("%s failed; the next round retries", name)
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


#: Retention deletes for at most this long per maintenance round, then lets the reaper run.
PURGE_STEP_SECONDS = 1.0
PURGE_EVERY_SECONDS = 3600.0
#: Seconds between orphan sweeps: one read of the queue's head and two indexed queries,
#: the same cost with 10 or 1,000,000 messages queued (bench P10).
ORPHAN_SWEEP_SECONDS = 5.0
#: Seconds between a worker's SQLite checkpoints (see `WorkerService._checkpoint`).
CHECKPOINT_SECONDS = 0.1
#: After an enqueue or a claim failed, or the queue was away, sweep for orphans every
#: reaper round this long.
SWEEP_WINDOW = 15.0


class Contact:
    """This worker's contact with the database, as its heartbeats see it.

    After an outage longer than a lease, every lease has lapsed by the database's clock,
    live workers' too. A reaper that ran as soon as the database answered would hand
    their jobs on before they renewed them. So the reaper runs only after `grace`
    seconds (min of lease and worker_timeout) of unbroken beats: long enough for every
    live worker, which beats several times a lease, to have renewed what it holds."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        now = time.monotonic()
        self._ok_at = now
        self._ok_since = now - grace  # a worker that starts is in contact

    def beat_ok(self, now: float) -> None:
        """A heartbeat was written at `now` (monotonic)."""
        if now - self._ok_at > self.grace:  # a gap: contact starts again from here
            self._ok_since = now
        self._ok_at = now

    def steady(self, now: float) -> bool:
        """True when beats have gone through without a gap for `grace` seconds."""
        return now - self._ok_at <= self.grace and now - self._ok_since >= self.grace


#: An idle worker thread that is not this process's poller reads the queue this much
#: less often: it is woken (by an enqueue here, or by a thread that found work) instead.
FOLLOWER_WAIT_FACTOR = 20


class WakeableWorker(Worker):
    """A Huey worker whose idle wait ends early when this process enqueues a job, and
    which writes what its thread held back (`Runner.write_held`) before it waits.

    Of the idle threads, one polls the queue every `poll_interval`; the others wait to
    be woken, so an idle process reads the queue a few times a second, not once per
    thread per poll. A thread that takes a message wakes one more (`Queue._run`), so a
    burst sent by another process still reaches every thread within a few polls."""

    wakeup: threading.Condition | None = None
    on_idle: Callable[[], None] | None = None
    #: per consumer: [the thread that polls now, or None]
    poller: list[Worker | None] | None = None

    def sleep(self) -> None:
        if self.on_idle is not None:
            self.on_idle()
        if self.wakeup is None:
            return super().sleep()
        with self.wakeup:
            shared = self.poller
            if shared is not None and shared[0] is None:
                shared[0] = self
            polling = shared is None or shared[0] is self
            self.wakeup.wait(self.delay if polling else self.delay * FOLLOWER_WAIT_FACTOR)
            if polling and shared is not None:
                shared[0] = None  # whoever sleeps next polls; this one reads first
        return None


#: Seconds between reads of Huey's schedule: a delayed job or a retry starts at most this
#: late (Huey's own scheduler reads it every whole second at best).
SCHEDULE_READ_INTERVAL = 0.2


class SubSecondScheduler(Scheduler):
    """Huey's scheduler, reading the schedule every SCHEDULE_READ_INTERVAL seconds."""

    def __init__(self, huey, stop_flag, interval, periodic) -> None:
        super().__init__(huey, stop_flag, interval, periodic)
        self.interval = SCHEDULE_READ_INTERVAL


class QuaeroConsumer(Consumer):
    """Huey's consumer: wakeable workers, a sub-second scheduler, and SIGINT and
    SIGTERM both asking for a graceful stop."""

    worker_class = WakeableWorker
    scheduler_class = SubSecondScheduler

    def __init__(
        self,
        huey,
        wakeup: threading.Condition | None = None,
        on_idle: Callable[[], None] | None = None,
        **options,
    ) -> None:
        self._wakeup = wakeup
        self._on_idle = on_idle
        self._poller: list[Worker | None] = [None]
        super().__init__(huey, **options)

    def _create_worker(self):
        worker = super()._create_worker()
        worker.wakeup = self._wakeup
        worker.on_idle = self._on_idle
        worker.poller = self._poller
        return worker

    def _set_signal_handlers(self) -> None:
        self._signal_actions = {signal.SIGINT: (False, True), signal.SIGTERM: (False, True)}
        super()._set_signal_handlers()


class WorkerService:
    """A worker process: the consumer, a heartbeat/reaper thread, a clean stop."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.config = services.config
        self.worker_id = new_worker_id()
        self.runner = Runner(services, self.worker_id)
        services.queue.runner = self.runner.run
        # Huey runs its startup hooks in each worker thread before its first job: the
        # thread opens and warms its database connection there (a failure is logged,
        # and the first job connects instead)
        services.queue.huey.on_startup("quaero-warm-up")(services.store.warm_up)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        jobs = self.config.jobs
        self.contact = Contact(grace=min(jobs.lease_seconds, jobs.worker_timeout))
        q = self.config.queue
        self.consumer = QuaeroConsumer(
            services.queue.huey,
            wakeup=services.queue.wakeup if q.worker_type == "thread" else None,
            on_idle=self.runner.write_held if q.worker_type == "thread" else None,
            workers=q.num_workers,
            worker_type=q.worker_type,
            periodic=False,
            initial_delay=q.poll_interval,
            max_delay=q.poll_interval,  # constant polling: a new job starts at once
            backoff=1.0,
            scheduler_interval=1,
            shutdown_timeout=self.config.jobs.shutdown_grace,
            check_worker_health=True,
        )

    def start(self) -> None:
        """Recover what an earlier process left, then start consumer and maintenance."""
        self.services.recovery.register_worker(self.worker_id, self.config.queue.num_workers)
        self.recover()
        if self.config.queue.worker_type == "process":
            self.services.close()  # forked children must open their own connections
        self.consumer.start()
        self._threads = [
            threading.Thread(target=self._beat, name="quaero-heartbeat", daemon=True),
            threading.Thread(target=self._maintain, name="quaero-maintenance", daemon=True),
        ]
        if self.config.schedules:
            self._threads.append(
                threading.Thread(target=self._schedule, name="quaero-schedules", daemon=True)
            )
        if not self.services.store.is_postgres:
            self._threads.append(
                threading.Thread(target=self._checkpoint, name="quaero-checkpoint", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        logger.info(
            "worker %s started: %d %s workers, polling every %ss",
            self.worker_id,
            self.config.queue.num_workers,
            self.config.queue.worker_type,
            self.config.queue.poll_interval,
        )

    def recover(self) -> None:
        """Expire leases of gone workers, reap expired leases, re-queue orphans."""
        recovery = self.services.recovery
        recovery.expire_dead_workers_leases(me=self.worker_id)
        recovery.reap_expired_leases()
        recovery.requeue_orphans(grace=0)

    def _beat(self) -> None:
        """The heartbeat thread: nothing else runs here, so no maintenance work (a
        purge, a sweep) can delay it and get a live worker's jobs taken over. Beats
        start every `every` seconds, however long one took (a slow database)."""
        jobs = self.config.jobs
        every = min(jobs.heartbeat_seconds, jobs.lease_seconds / 3)
        next_beat = time.monotonic() + every
        while not self._stop.wait(max(0.0, next_beat - time.monotonic())):
            next_beat = max(next_beat + every, time.monotonic())
            try:
                self.services.recovery.heartbeat(
                    self.worker_id, self.runner.executing(), self.runner.jobs_done
                )
            except Exception:  # keep beating; the next beat retries
                logger.exception("heartbeat failed")
                continue
            self.contact.beat_ok(time.monotonic())

    def _maintain(self) -> None:
        """The maintenance thread: the reaper, the orphan sweep and retention, each on
        its own schedule, in bounded steps, and failing alone (a full disk stops the
        reaper's writes, not the sweep that follows)."""
        jobs = self.config.jobs
        recovery = self.services.recovery
        orphan_every = max(ORPHAN_SWEEP_SECONDS, jobs.reaper_interval)
        next_reap = next_purge = next_sweep = time.monotonic()
        next_orphans = time.monotonic() + orphan_every
        while not self._stop.wait(0.2):
            now = time.monotonic()
            if now >= next_reap:
                next_reap = now + jobs.reaper_interval
                _guard("reaper", self._reap)
            if now >= next_purge:
                purged = _guard("retention", self._purge)
                # more may be left (or it failed): go on soon; else look again in an hour
                next_purge = now + (PURGE_EVERY_SECONDS if purged == 0 else 1.0)
            if now >= next_orphans:
                next_orphans = now + orphan_every
                _guard("orphan sweep", recovery.requeue_orphans)
            elif now - self._trouble_at() < SWEEP_WINDOW and now >= next_sweep:
                # an enqueue or a claim failed lately, or the queue was away (a message
                # sent meanwhile, by this process or another, may be lost)
                next_sweep = now + jobs.reaper_interval
                _guard("orphan sweep", lambda: recovery.requeue_orphans(grace=1.0))

    def _checkpoint(self) -> None:
        """The SQLite checkpoint thread: copies the write-ahead log into the database
        every CHECKPOINT_SECONDS beside the writers (a passive checkpoint never blocks
        them, and SQLite runs it without the GIL), so that no job's commit stops to do
        it. A commit still checkpoints past a backstop (quaero.db.SQLITE_PRAGMAS)."""
        warned_at = -1e9
        while not self._stop.wait(CHECKPOINT_SECONDS):
            try:
                self.services.store.checkpoint()
            except Exception as exc:  # a full disk…: the commits' backstop still holds
                if time.monotonic() - warned_at > 60:
                    warned_at = time.monotonic()
                    logger.warning("SQLite checkpoint failed, retrying: %s", exc)

    def _trouble_at(self) -> float:
        """When an enqueue or a claim last failed, or the queue was last found away."""
        return max(self.services.store.enqueue_failed_at, self.services.queue.away_at())

    def _schedule(self) -> None:
        """The schedules thread (part of maintenance, in a thread of its own so that a
        purge never delays a tick): wakes at each tick and races the other worker
        processes for its root (quaero.schedules)."""
        scheduler = RootScheduler(self.services.manager)
        while not _guard("schedules", lambda: scheduler.start() or True):
            if self._stop.wait(1.0):  # the database is away: try again in a second
                return
        while not self._stop.wait(scheduler.seconds_to_next() + 0.001):
            _guard("schedules", scheduler.run_due)

    def _reap(self) -> int:
        def steady() -> bool:
            return self.contact.steady(time.monotonic())

        if not steady():
            # this process was cut off from the database (or it was away): the leases
            # that lapsed meanwhile may be live workers' that have not renewed yet
            logger.info("reaper: waiting for steady contact with the database")
            return 0
        recovery = self.services.recovery
        recovery.expire_dead_workers_leases(me=self.worker_id, proceed=steady)
        reaped = recovery.reap_expired_leases(proceed=steady)
        self.services.store.settle_stranded()
        return reaped

    def _purge(self) -> int:
        days = self.config.jobs.retention_days
        purged = self.services.recovery.purge_finished(days, budget=PURGE_STEP_SECONDS)
        if purged:
            logger.info("retention: deleted %d jobs older than %s days", purged, days)
        return purged

    def run(self) -> None:
        """Run until SIGINT/SIGTERM, then stop gracefully."""
        self.start()
        try:
            health_ts = time.monotonic()
            while True:
                try:
                    health_ts = self.consumer.loop(health_ts)
                except ConsumerStopped:
                    break
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop maintenance, hand back jobs still held, and mark the worker stopped."""
        if not self.consumer.stop_flag.is_set():
            self.consumer.stop(graceful=True)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.runner.write_all_held()
        self.services.queue.return_prefetched()
        recovery = self.services.recovery
        released = recovery.release_worker_jobs(self.worker_id)
        if released:
            logger.warning("handed back %d unfinished jobs", released)
        recovery.unregister_worker(self.worker_id, self.runner.jobs_done)
        logger.info("worker %s stopped", self.worker_id)
