"""Recovery and upkeep: the worker registry, leases and their heartbeat, the reaper, the
orphan sweep, and retention.

As rq keeps its registries and maintenance apart from `job.py`, this module finds jobs
that need recovering and moves them only through the job manager's transitions
(`back_to_pending`, `finish_own_work`), so counters move with statuses as everywhere.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import peewee

from quaero import clock, counts
from quaero.jobs import JobManager
from quaero.models import UNFINISHED, Job, JobLog, JobStatus, Worker, literal

logger = logging.getLogger(__name__)


def new_worker_id() -> str:
    """A worker id that names its host and process: `host:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"


class Recovery:
    """Keeps workers' leases, and recovers the jobs of workers that are gone."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.store = manager.store
        self.queue = manager.queue
        self.config = manager.config

    # -- the worker registry and leases ----------------------------------------------

    def register_worker(self, worker_id: str, threads: int) -> None:
        """Record a worker process as alive."""
        self.store.clock.sync()
        now = self.store.now()
        row = {
            "id": worker_id,
            "hostname": worker_id.split(":")[0],
            "pid": os.getpid(),
            "threads": threads,
            "started_at": now,
            "last_heartbeat": now,
            "clock_skew": self.store.clock.skew,
        }
        Worker.insert(row).on_conflict(
            conflict_target=[Worker.id],
            update={Worker.last_heartbeat: now, Worker.stopped_at: None},
        ).execute()

    def heartbeat(self, worker_id: str, executing: Iterable[int], jobs_done: int = 0) -> int:
        """Record the worker process as alive and renew the leases of the jobs it is
        executing right now (never all rows naming it: a job whose finish failed to
        write must lapse and be reaped); returns the number of leases renewed in `jobs`.

        The beat also lists those jobs on the worker's own row, and a listed job counts
        as leased until the beat + `lease_seconds` (`_renewed_by_beat`): on PostgreSQL
        the renewal of the rows skips those a slow transaction holds, so the lease does
        not depend on it.

        PostgreSQL stamps the beat and the leases with its own clock as each statement
        runs, so a slow round trip does not age them; then this process measures its
        offset to that clock (quaero.clock) and records its skew."""
        now: Any = self.store.now()
        lease = self.config.jobs.lease_seconds
        expires: Any = now + lease
        if self.store.is_postgres:
            now, expires = peewee.SQL(clock.NOW_EXPR), peewee.SQL(f"{clock.NOW_EXPR} + {lease:f}")
        ids = sorted(set(executing))

        def beat() -> None:
            Worker.update(
                last_heartbeat=now,
                jobs_done=jobs_done,
                stopped_at=None,
                clock_skew=self.store.clock.skew,
                executing=",".join(map(str, ids)),
            ).where(Worker.id == worker_id).execute()

        def renew() -> int:
            rows = Job.select(Job.id).where(Job.id.in_(ids)).order_by(Job.id)
            if self.store.is_postgres:
                # never wait for a row that a slow transaction of this job holds (its
                # spawn, its finish): the next beat renews it
                rows = rows.for_update("FOR UPDATE SKIP LOCKED")
            free = [job_id for (job_id,) in rows.tuples()]
            if not free:
                return 0
            return (
                Job.update(lease_expires_at=expires)
                .where(
                    Job.id.in_(free), Job.status == JobStatus.RUNNING, Job.worker_id == worker_id
                )
                .execute()
            )

        # the worker's own row first and alone: no job's lock can delay the beat that
        # tells other workers this one is alive
        self.store.transaction(beat)
        renewed = self.store.transaction(renew) if ids else 0
        self.store.clock.sync()
        return renewed

    def unregister_worker(self, worker_id: str, jobs_done: int = 0) -> None:
        """Mark a worker as stopped."""
        update = Worker.update(stopped_at=self.store.now(), jobs_done=jobs_done, executing=None)
        self.store.transaction(update.where(Worker.id == worker_id).execute)

    def release_worker_jobs(self, worker_id: str) -> int:
        """Hand back the jobs a stopping worker still holds: pending again, no lease."""
        held = list(
            Job.select().where(Job.status == literal(JobStatus.RUNNING), Job.worker_id == worker_id)
        )
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
        now = self.store.now()

        def update() -> list[Job]:
            self.store.lock(job.id for job in jobs)
            # the attempt is not counted: it never ended with an outcome
            uncounted = {"attempts": Job.attempts - 1}
            return [
                job
                for job in jobs
                if self.manager.back_to_pending(job, worker_id, message, now, **uncounted)
            ]

        released = self.store.transaction(update)
        self.store.enqueue_or_sweep([(job.id, job.priority) for job in released])
        return len(released)

    # -- recovering the jobs of workers that are gone -----------------------------------

    def expire_dead_workers_leases(
        self, me: str | None = None, proceed: Callable[[], bool] | None = None
    ) -> int:
        """Expire at once the leases of workers that are gone: a process on this host
        that no longer exists, or any worker whose heartbeat is older than
        `[jobs] worker_timeout`. A live worker beats every `heartbeat_seconds` from a
        thread of its own, so a slow job never makes it look dead. `me` (the calling
        worker) is never judged: its jobs lapse by their leases if it cannot beat.
        `proceed()`, asked once the heartbeats are read, may call the round off (see
        `reap_expired_leases`)."""
        now = self.store.now()
        host = socket.gethostname()
        holders = {
            w
            for (w,) in Job.select(Job.worker_id)
            .where(
                Job.status == literal(JobStatus.RUNNING),
                Job.worker_id.is_null(False),
                Job.lease_expires_at > 0,
            )
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
        if not dead or (proceed is not None and not proceed()):
            return 0

        def update() -> int:
            of_dead = (Job.status == literal(JobStatus.RUNNING)) & Job.worker_id.in_(dead)
            self.store.lock(job_id for (job_id,) in Job.select(Job.id).where(of_dead).tuples())
            Worker.update(executing=None).where(Worker.id.in_(dead)).execute()
            return Job.update(lease_expires_at=0).where(of_dead).execute()

        expired = self.store.transaction(update)
        if expired:
            logger.warning("workers %s are gone: %d jobs run again", ", ".join(dead), expired)
        return expired

    def reap_expired_leases(
        self, limit: int = 500, proceed: Callable[[], bool] | None = None
    ) -> int:
        """Put running jobs whose lease expired back on the queue (or fail them after
        `max_attempts`); safe when several reapers run at once. `proceed()` is asked
        before each job is moved: a worker's reaper that lost the database mid-round
        (it waited in a reconnect) stops, as live workers may not have renewed yet."""
        now = self.store.now()
        expired = list(
            Job.select()
            .where(Job.status == literal(JobStatus.RUNNING), Job.lease_expires_at < now)
            .order_by(Job.lease_expires_at)
            .limit(limit)
        )
        renewed = self._renewed_by_beat(expired, now)
        expired = [job for job in expired if job.id not in renewed]
        requeue: list[tuple[int, int]] = []
        for job in expired:
            if proceed is not None and not proceed():
                break
            holder = job.worker_id
            if job.attempts >= job.max_attempts:
                self.manager.finish_own_work(
                    job,
                    holder,
                    JobStatus.FAILED,
                    error="worker lost",
                    message=f"worker {holder} lost; no attempts left",
                    lease_expired_by=now,
                )
            elif self.store.transaction(lambda job=job: self._requeue_lost(job, now)):
                requeue.append((job.id, job.priority))
        self.store.enqueue_or_sweep(requeue)
        if expired:
            logger.warning(
                "reaper: %d expired leases, %d jobs re-queued", len(expired), len(requeue)
            )
        return len(requeue)

    def _renewed_by_beat(self, jobs: list[Job], now: float) -> set[int]:
        """The ids of `jobs` that their holder's last heartbeat listed as executing,
        within `lease_seconds` of `now`: leased, whatever their row says."""
        holders = {job.worker_id for job in jobs if job.worker_id}
        if not holders:
            return set()
        since = now - self.config.jobs.lease_seconds
        beats = (
            Worker.select(Worker.id, Worker.executing)
            .where(
                Worker.id.in_(list(holders)),
                Worker.last_heartbeat > since,
                Worker.stopped_at.is_null(),
                Worker.executing.is_null(False),
            )
            .tuples()
        )
        listed = {(w, int(i)) for w, ids in beats for i in ids.split(",") if i}
        return {job.id for job in jobs if (job.worker_id, job.id) in listed}

    def _requeue_lost(self, job: Job, now: float) -> bool:
        """`running → pending` for a job whose lease expired, if still so."""
        holder = job.worker_id
        message = f"worker {holder} lost the job; it runs again"
        return self.manager.back_to_pending(job, holder, message, now, lease_expired_by=now)

    def requeue_orphans(self, grace: float = 10.0, limit: int = 10_000) -> int:
        """Enqueue pending jobs whose message was lost (a crash between the database
        write and the enqueue, a claim that failed after its dequeue, a lost queue);
        `grace` spares jobs being enqueued right now. Returns how many.

        It reads one message, the queue's head, never the whole queue, so it costs the
        same with 10 or a million messages waiting. The queue hands out its messages by
        priority, then in the order they were enqueued, and a job's message is enqueued
        after its row was last written (`updated_at`, or `run_after` for a delay) and
        after its head job was created. So an unpaused job pending at the head's
        priority, last written more than `grace` before the head job was created, or
        pending at a higher priority, has no message left (with an empty queue: every
        pending job older than `grace`). A job behind the head is not judged until the
        head passes it, which is when its message would have been taken anyway.
        Each orphan's `updated_at` is set before it is enqueued, so a queue whose head
        stays put (no worker takes messages) does not get it again every round. A
        duplicate message (a job taken in another process just now) is harmless: only
        a `pending -> running` claim runs a job.
        """
        now = self.store.now()
        cutoff = now - grace
        head = self.queue.head()  # read first: a job enqueued after this is younger
        pending = (Job.status == literal(JobStatus.PENDING)) & (Job.paused == False)  # noqa: E712
        if head is None:  # an empty queue: every pending job older than grace
            matches = [pending & (Job.updated_at < cutoff)]
            due_by = cutoff
        else:
            head_id, priority = head
            created = Job.select(Job.created_at).where(Job.id == head_id).scalar()
            if created is None:  # not a job's message, or its job is gone: next round
                return 0
            due_by = min(cutoff, created - grace)
            matches = [
                pending & (Job.priority == priority) & (Job.updated_at < due_by),
                pending & (Job.priority > priority) & (Job.updated_at < cutoff),
            ]
        local = self.queue.local_job_ids()
        orphans: list[tuple[int, int]] = []
        for match in matches:
            rows = (
                Job.select(Job.id, Job.priority)
                .where(match, Job.run_after.is_null() | (Job.run_after < due_by))
                .limit(limit)
                .tuples()
            )
            orphans += [(job_id, prio) for job_id, prio in rows if job_id not in local]
        if not orphans:
            return 0

        def mark() -> list[tuple[int, int]]:
            ids = [job_id for job_id, _ in orphans]
            still = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                still |= {
                    job_id
                    for (job_id,) in Job.select(Job.id)
                    .where(Job.id.in_(chunk), Job.status == JobStatus.PENDING)
                    .tuples()
                }
                Job.update(updated_at=now).where(
                    Job.id.in_(chunk), Job.status == JobStatus.PENDING
                ).execute()
            return [(job_id, prio) for job_id, prio in orphans if job_id in still]

        orphans = self.store.transaction(mark)
        self.queue.enqueue(orphans)
        if orphans:
            logger.warning("re-queued %d pending jobs that had no queue message", len(orphans))
        return len(orphans)

    # -- retention -------------------------------------------------------------------

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
        cutoff = self.store.now() - older_than_days * 86_400
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
                    gone = (
                        Job.select(Job.type, Job.status, peewee.fn.COUNT(Job.id))
                        .where(Job.id.in_(ids))
                        .group_by(Job.type, Job.status)
                        .tuples()
                    )
                    counts.record(self.store.db, [(t, s, -n) for t, s, n in gone])
                    JobLog.delete().where(JobLog.job_id.in_(ids)).execute()
                    Job.delete().where(Job.id.in_(ids)).execute()
                else:
                    self.store.forget_tree_state(root_id)
                return len(ids)

            while n := self.store.transaction(delete_some):
                deleted += n
                if deadline is not None and time.monotonic() > deadline:
                    return deleted
        return deleted


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
