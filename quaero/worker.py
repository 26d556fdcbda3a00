"""Workers: the Huey consumer that runs jobs, their heartbeat, and the reaper.

`Runner.run(job_id)` is what the Huey task calls: it claims the job (`pending →
running`, a no-op for duplicates), runs its executor through a JobContext, and records
the outcome. `WorkerService` starts the consumer with `[queue] num_workers` workers and a
maintenance thread that renews leases and recovers lost jobs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from huey.consumer import Consumer, ConsumerStopped, Worker

from quaero.executors.base import JobCancelled, JobContext, PermanentError, get_executor
from quaero.jobs import new_worker_id
from quaero.services import Services

logger = logging.getLogger(__name__)


class Runner:
    """Runs one job by id; the boundary where executor exceptions become job states."""

    def __init__(self, services: Services, worker_id: str) -> None:
        self.services = services
        self.manager = services.manager
        self.worker_id = worker_id
        self.in_flight: set[int] = set()
        self.jobs_done = 0
        self._lock = threading.Lock()

    def run(self, job_id: int) -> None:
        """Claim and execute a job; never lets an exception leave it `running`."""
        job = self.manager.claim(job_id, self.worker_id)
        if job is None:
            logger.debug("job %s not claimable (duplicate, cancelled or not due)", job_id)
            return
        with self._lock:
            self.in_flight.add(job_id)
        try:
            self._execute(job)
        finally:
            with self._lock:
                self.in_flight.discard(job_id)
                self.jobs_done += 1

    def _execute(self, job) -> None:
        try:
            executor = get_executor(job.type)()
        except KeyError:
            self.manager.fail(job, self.worker_id, f"unknown job type {job.type!r}", None, True)
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
        if exc is None:
            if not self.manager.complete(job, self.worker_id, outcome.result, ctx.drain()):
                logger.info("job %s finished but was no longer held here; result dropped", job.id)
        elif isinstance(exc, JobCancelled):
            ctx.flush()
            logger.info("job %s stopped after cancellation", job.id)
        else:
            permanent = isinstance(exc, PermanentError)
            if not permanent:
                logger.warning("job %s (%s) failed: %s", job.id, job.type, _describe(exc))
            self.manager.fail(
                job, self.worker_id, _describe(exc), outcome.traceback, permanent, ctx.drain()
            )


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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class WakeableWorker(Worker):
    """A Huey worker whose idle wait ends early when this process enqueues a job."""

    wakeup: threading.Condition | None = None

    def sleep(self) -> None:
        if self.wakeup is None:
            return super().sleep()
        with self.wakeup:
            self.wakeup.wait(self.delay)
        return None


class QuaeroConsumer(Consumer):
    """Huey's consumer: wakeable workers, and SIGINT and SIGTERM both asking for a
    graceful stop."""

    worker_class = WakeableWorker

    def __init__(self, huey, wakeup: threading.Condition | None = None, **options) -> None:
        self._wakeup = wakeup
        super().__init__(huey, **options)

    def _create_worker(self):
        worker = super()._create_worker()
        worker.wakeup = self._wakeup
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
        self._stop = threading.Event()
        self._maintenance: threading.Thread | None = None
        q = self.config.queue
        self.consumer = QuaeroConsumer(
            services.queue.huey,
            wakeup=services.queue.wakeup if q.worker_type == "thread" else None,
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
        manager = self.services.manager
        manager.register_worker(self.worker_id, self.config.queue.num_workers)
        self.recover()
        if self.config.queue.worker_type == "process":
            self.services.close()  # forked children must open their own connections
        self.consumer.start()
        self._maintenance = threading.Thread(
            target=self._maintain, name="quaero-maintenance", daemon=True
        )
        self._maintenance.start()
        logger.info(
            "worker %s started: %d %s workers, polling every %ss",
            self.worker_id,
            self.config.queue.num_workers,
            self.config.queue.worker_type,
            self.config.queue.poll_interval,
        )

    def recover(self) -> None:
        """Expire leases of dead local processes, reap expired leases, re-queue orphans."""
        manager = self.services.manager
        manager.expire_dead_local_leases()
        manager.reap_expired_leases()
        manager.requeue_orphans(grace=0)

    def _maintain(self) -> None:
        jobs = self.config.jobs
        heartbeat_every = max(0.5, jobs.lease_seconds / 3)
        orphan_every = max(30.0, jobs.reaper_interval * 6)
        purge_every = 3600.0
        next_beat = next_reap = next_purge = time.monotonic()
        next_orphans = time.monotonic() + orphan_every
        while not self._stop.wait(0.2):
            now = time.monotonic()
            try:
                if now >= next_beat:
                    next_beat = now + heartbeat_every
                    self.services.manager.heartbeat(self.worker_id, self.runner.jobs_done)
                if now >= next_reap:
                    next_reap = now + jobs.reaper_interval
                    self.services.manager.expire_dead_local_leases()
                    self.services.manager.reap_expired_leases()
                if now >= next_purge:
                    next_purge = now + purge_every
                    purged = self.services.manager.purge_finished(jobs.retention_days)
                    if purged:
                        logger.info(
                            "retention: deleted %d jobs older than %s days",
                            purged,
                            jobs.retention_days,
                        )
                if now >= next_orphans:
                    next_orphans = now + orphan_every
                    self.services.manager.requeue_orphans()
            except Exception:  # keep the thread alive; the next round retries
                logger.exception("maintenance round failed")

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
        self.services.queue.return_prefetched()
        manager = self.services.manager
        released = manager.release_worker_jobs(self.worker_id)
        if released:
            logger.warning("handed back %d unfinished jobs", released)
        manager.unregister_worker(self.worker_id, self.runner.jobs_done)
        logger.info("worker %s stopped", self.worker_id)
