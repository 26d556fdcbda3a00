"""Property-based tests of the job state machine (hypothesis): no sequence of manager
operations reaches an illegal state, and every job's counters (and the jobs stored by
type and status, quaero/counts.py) always equal the statuses of the rows, on SQLite and
on PostgreSQL + Redis."""

import time
from collections import Counter

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from peewee import fn

from quaero import counts, queries
from quaero.errors import Conflict
from quaero.models import FINAL_STATUSES, STATUSES, ChildSpec, Job, JobLog
from quaero.services import Services

BACKENDS = ["sqlite", "postgresql"]  # the same sequences on both stores
pytestmark = pytest.mark.long  # 100 sequences on each store (make test-fast runs 10)

W = "host:1:abcdef"
FINAL = {s.value for s in FINAL_STATUSES}


class JobTrees(RuleBasedStateMachine):
    """Random sequences of operations on one store, emptied before each example."""

    #: the store under test, set by the test that runs the machine
    services: Services

    def __init__(self):
        super().__init__()
        Job.delete().execute()
        JobLog.delete().execute()
        counts.recount(Job._meta.database)  # the rows went behind quaero's back
        self.services.queue.huey.storage.flush_queue()
        self.manager = self.services.manager
        self.cancelled_ever: set[int] = set()

    def jobs(self, *statuses):
        query = Job.select()
        if statuses:
            query = query.where(Job.status.in_(statuses))
        return list(query.order_by(Job.id))

    @rule(max_attempts=st.integers(1, 3))
    def create_root(self, max_attempts):
        self.manager.create_root("noop", {}, max_attempts=max_attempts)

    @precondition(lambda self: Job.select().where(Job.status == "pending").exists())
    @rule(data=st.data())
    def claim(self, data):
        job = data.draw(st.sampled_from(self.jobs("pending")))
        claimed = self.manager.claim(job.id, W)
        assert claimed is None or claimed.status == "running"
        assert claimed is not None or job.paused or job.run_after

    def running_own_work(self):
        return [j for j in self.jobs("running") if j.worker_id == W]

    @precondition(lambda self: bool(self.running_own_work()))
    @rule(data=st.data(), n=st.integers(1, 3), dup=st.booleans())
    def spawn(self, data, n, dup):
        parent = data.draw(st.sampled_from(self.running_own_work()))
        specs = [ChildSpec("noop", {}, dedup_key="same" if dup else None) for _ in range(n)]
        self.manager.spawn_children(parent, specs, root_limit=30)

    @precondition(lambda self: bool(self.running_own_work()))
    @rule(data=st.data(), how=st.sampled_from(["complete", "transient", "permanent"]))
    def finish_own_work(self, data, how):
        job = data.draw(st.sampled_from(self.running_own_work()))
        if how == "complete":
            assert self.manager.complete(job, W, {"ok": 1})
        else:
            assert self.manager.fail(job, W, "err", None, how == "permanent") in (
                "pending",
                "failed",
            )

    @precondition(lambda self: Job.select().where(Job.status.in_(["pending", "running"])).exists())
    @rule(data=st.data())
    def cancel(self, data):
        job = data.draw(st.sampled_from(self.jobs("pending", "running")))
        prefix = f"{job.path}{job.id}/"
        self.cancelled_ever |= {
            j.id
            for j in self.jobs("pending", "running")
            if j.id == job.id or j.path.startswith(prefix)
        }
        assert self.manager.cancel_tree(job.id).status == "cancelled"

    @precondition(lambda self: Job.select().exists())
    @rule(data=st.data())
    def retry(self, data):
        job = data.draw(st.sampled_from(self.jobs()))
        try:
            self.manager.retry_tree(job.id)
        except Conflict:
            pass
        else:
            self.cancelled_ever.clear()  # a retry may legally revive cancelled jobs

    @precondition(lambda self: Job.select().where(Job.status.in_(list(FINAL))).exists())
    @rule(data=st.data())
    def delete(self, data):
        job = data.draw(st.sampled_from(self.jobs(*FINAL)))
        try:
            self.manager.delete_tree(job.id)
        except Conflict:
            raise AssertionError("a finished job's tree must be deletable") from None

    @precondition(lambda self: bool(self.running_own_work()))
    @rule(data=st.data())
    def lose_worker(self, data):
        job = data.draw(st.sampled_from(self.running_own_work()))
        Job.update(lease_expires_at=time.time() - 1).where(Job.id == job.id).execute()
        self.services.recovery.reap_expired_leases()

    @precondition(lambda self: Job.select().where(Job.parent_id.is_null()).exists())
    @rule(data=st.data(), paused=st.booleans())
    def pause_or_resume(self, data, paused):
        job = data.draw(st.sampled_from(list(Job.select().where(Job.parent_id.is_null()))))
        try:
            self.manager.set_paused(job.id, paused)
        except Conflict:
            pass

    @rule()
    def purge_finished_trees(self):
        self.services.recovery.purge_finished(0.0)

    @invariant()
    def stored_counts_equal_the_rows(self):
        rows = Job.select(Job.type, Job.status, fn.COUNT(Job.id)).group_by(Job.type, Job.status)
        actual = {(t, s): n for t, s, n in rows.tuples()}
        assert {k: n for k, n in queries.stored_counts().items() if n} == actual

    @invariant()
    def counters_equal_the_rows(self):
        jobs = {j.id: j for j in self.jobs()}
        actual = {job_id: Counter() for job_id in jobs}
        for j in jobs.values():
            assert j.status in STATUSES
            for ancestor in j.ancestor_ids:
                actual[ancestor][j.status] += 1
        for job_id, j in jobs.items():
            expected = {s: actual[job_id][s] for s in STATUSES}
            assert {s: j.counts[s] for s in STATUSES} == expected, (job_id, expected)

    @invariant()
    def states_are_legal(self):
        jobs = {j.id: j for j in self.jobs()}
        for j in jobs.values():
            if j.status in FINAL:
                assert j.n_open == 0  # finished means a finished subtree
                assert j.worker_id is None and j.lease_expires_at is None
            if j.status == "running" and j.worker_id is None:
                assert j.outcome is not None and j.n_open > 0
            if j.status == "pending":
                assert j.worker_id is None and j.outcome is None
            if j.id in self.cancelled_ever:
                assert j.status != "completed"  # a cancelled job never completes
            for ancestor in j.ancestor_ids:
                assert ancestor in jobs  # no orphans after deletes


def test_no_sequence_of_operations_breaks_the_state_machine(services, monkeypatch):
    monkeypatch.setattr(JobTrees, "services", services, raising=False)
    run_state_machine_as_test(
        JobTrees,
        # examples: the profile's (100 by default; `make test-fast` runs the "fast" one)
        settings=settings(
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
