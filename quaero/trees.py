"""The user actions on whole trees: cancel, retry, delete, pause/resume and rerun.

`TreeActions` is a part of `quaero.jobs.JobManager` (a mixin, so the manager stays
the one writer of statuses): each action runs in one durable transaction under the
tree's exclusive guard (quaero.store `lock_chain`), so no worker's spawn or finish
in the tree interleaves with it, and recounts or shifts the counters it changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import peewee

from quaero import totals
from quaero.counts import record as record_counts
from quaero.errors import Conflict, NotFound
from quaero.models import FINAL_STATUSES, UNFINISHED, Job, JobLog, JobStatus
from quaero.store import COUNTER_COLUMN

if TYPE_CHECKING:
    from quaero.queue import JobQueue
    from quaero.store import Store

INSERT_CHUNK = 500


class TreeActions:
    """Cancel, retry, delete, pause/resume and rerun a job's subtree (JobManager's)."""

    store: Store
    db: peewee.Database
    queue: JobQueue

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
            by_type = list(
                Job.select(Job.type, Job.status, peewee.fn.COUNT(Job.id))
                .where(subtree)
                .group_by(Job.type, Job.status)
                .tuples()
            )
            by_status: dict[str, int] = {}
            for _, status, n in by_type:
                by_status[status] = by_status.get(status, 0) + n
            self.store.shift(job.ancestor_ids, {s: -n for s, n in by_status.items()})
            record_counts(self.db, [(t, s, -n) for t, s, n in by_type])
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
            # the whole tree's counters are recounted: guard it, lock from the root
            self.store.guard_tree(job.root_id, exclusive=True)
            self.store.lock([job.root_id, *job.ancestor_ids, job.id])
            again = Job.status.in_([JobStatus.FAILED, JobStatus.CANCELLED])
            if error_group is not None:
                again = (Job.status == JobStatus.FAILED) & (Job.error_group == error_group)
            retried = list(
                Job.select(Job.id, Job.priority, Job.path, Job.type, Job.status)
                .where(self._subtree(job), again)
                .tuples()
            )
            if not retried:
                raise Conflict(f"job {job_id} has no failed or cancelled jobs to retry")
            waiting = {int(p) for row in retried for p in row[2].strip("/").split("/") if p}
            waiting -= {row[0] for row in retried}
            unfinished_own_work = list(
                Job.select(Job.id, Job.priority, Job.path, Job.type, Job.status)
                .where(Job.id.in_(list(waiting)), Job.outcome.is_null(), Job.status.in_(finished))
                .tuples()
            )
            retried += unfinished_own_work
            waiting -= {row[0] for row in unfinished_own_work}
            ids = [row[0] for row in retried]
            reopened = [(t, s) for _, _, _, t, s in retried]
            reopened += list(
                Job.select(Job.type, Job.status)
                .where(Job.id.in_(list(waiting)), Job.status.in_(finished))
                .tuples()
            )
            moves = [(t, s, -1) for t, s in reopened] + [
                (t, JobStatus.PENDING, 1) for t, _ in reopened
            ]
            record_counts(self.db, moves)
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
            return [(row[0], row[1]) for row in retried]

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

        def update() -> list[tuple[int, int, float | None]]:
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
                Job.select(Job.id, Job.priority, Job.run_after)
                .where(self._subtree(job), Job.status == JobStatus.PENDING)
                .tuples()
            )

        released = self.store.transaction(update)
        # a job not due yet (delayed, or a retry in back-off) is enqueued with its eta
        self.store.enqueue_or_sweep([(i, p) for i, p, at in released if not at or at <= now])
        for job_id_, priority, at in released:
            if at and at > now:
                self.store.enqueue_or_sweep([(job_id_, priority)], at - now)
        return self.get_or_404(job_id)
