"""Retries, back-off, permanent errors, timeouts, cancel, retry, pause and retention,
with a real Huey consumer in this process."""

import time
from dataclasses import dataclass

import pytest

from quaero import config as config_mod
from quaero import queries
from quaero.executors.base import ChildSpec, Executor, PermanentError, register
from quaero.models import FINAL_STATUSES, Job, JobLog
from tests.helpers import make_config, stop_worker, wait_for

BACKENDS = ["sqlite", "postgresql"]  # the same tests on both stores
pytestmark = pytest.mark.e2e  # a real consumer runs every job: ~40 s of the fast loop


@dataclass
class Switch:
    """Whether the `test_flaky` type fails: a failure a test can heal."""

    failing: bool = True


@register
class FlakyExecutor(Executor):
    """Fails while its switch is on (the `flaky` fixture sets a fresh one per test)."""

    type = "test_flaky"
    demo = True  # a fan-out may create it (submittable types only); hidden by default
    switch = Switch()

    def run(self, ctx):
        if self.switch.failing:
            raise PermanentError("flaky is failing")
        return {"ok": True}


@pytest.fixture
def flaky(monkeypatch) -> Switch:
    """A switch of the flaky test types for this test alone, failing at first."""
    switch = Switch()
    monkeypatch.setattr(FlakyExecutor, "switch", switch)
    monkeypatch.setattr(SpawnThenFlakyExecutor, "switch", switch)
    return switch


def finished(job_id):
    job = Job.get_by_id(job_id)
    return job if job.status in FINAL_STATUSES else None


def test_transient_failures_retry_with_growing_backoff(manager, worker):
    job = manager.create_root("sleep", {"seconds": 0, "fail": "transient"}, max_attempts=3)
    job = wait_for(lambda: finished(job.id), timeout=20)
    assert job.status == "failed" and job.attempts == 3
    assert job.error == "RuntimeError: asked to fail (attempt 3)"
    assert "RuntimeError" in job.traceback
    lines = [line for line in queries.job_logs(job.id) if "retrying in" in line.message]
    assert len(lines) == 2  # attempts 1 and 2, each logged with its error
    assert "attempt 1/3 failed: RuntimeError: asked to fail (attempt 1)" in lines[0].message
    base = manager.config.jobs.retry_base_seconds
    gaps = [b.created_at - a.created_at for a, b in zip(lines, lines[1:], strict=False)]
    assert gaps[0] >= 0.5 * base * 2 - 0.02  # second back-off is ≥ half of base × 2


def test_a_transient_failure_then_success_completes(manager, worker):
    job = manager.create_root("sleep", {"seconds": 0, "fail": "transient", "fail_attempts": 1})
    job = wait_for(lambda: finished(job.id), timeout=20)
    assert job.status == "completed" and job.attempts == 2


def test_permanent_error_skips_retries(manager, worker):
    job = manager.create_root("sleep", {"seconds": 0, "fail": "permanent"}, max_attempts=5)
    job = wait_for(lambda: finished(job.id), timeout=20)
    assert job.status == "failed" and job.attempts == 1
    assert job.error == "PermanentError: asked to fail permanently"


def test_timeout_fails_the_attempt_and_frees_the_worker(tmp_path):
    from quaero.services import build_services
    from quaero.worker import WorkerService

    services = build_services(make_config(tmp_path, queue={"num_workers": 1}))
    service = WorkerService(services)
    service.start()
    try:
        manager = services.manager
        slow = manager.create_root(
            "sleep", {"seconds": 30, "steps": 300}, timeout=0.5, max_attempts=2
        )
        quick = manager.create_root("noop", {})
        started = time.monotonic()
        assert wait_for(lambda: finished(quick.id), timeout=10).status == "completed"
        slow = wait_for(lambda: finished(slow.id), timeout=15)
        assert time.monotonic() - started < 5
        assert slow.status == "failed" and slow.attempts == 2
        assert slow.error == "TimeoutError: timed out after 0.5s"
    finally:
        stop_worker(service)
        services.close()


def test_cancel_of_a_1000_job_tree_starts_no_child_afterwards(manager, worker):
    root = manager.create_root(
        "fanout", {"children": 1000, "child_type": "sleep", "child_payload": {"seconds": 0.02}}
    )
    wait_for(lambda: Job.get_by_id(root.id).n_completed >= 20, timeout=20)
    manager.cancel_tree(root.id)
    cancel_returned = time.time()
    time.sleep(1.0)  # a window in which no child may start: a wait for no event
    late = Job.select().where(Job.root_id == root.id, Job.started_at > cancel_returned).count()
    assert late == 0
    root = Job.get_by_id(root.id)
    assert root.status == "cancelled" and root.n_open == 0
    assert root.n_cancelled + root.n_completed == 1000
    assert (
        Job.select()
        .where(
            Job.root_id == root.id,
            Job.status == "completed",
            Job.finished_at > cancel_returned + 0.1,
        )
        .count()
        == 0
    )


def test_retry_reruns_failed_jobs_only_and_the_root_follows(manager, worker, flaky):
    root2 = manager.create_root("fanout", {"children": 4, "child_type": "test_flaky"})
    root2 = wait_for(lambda: finished(root2.id), timeout=20)
    assert root2.status == "completed" and root2.n_failed == 4
    completed_before = {
        j.id: (j.started_at, j.attempts)
        for j in Job.select().where(Job.root_id == root2.id, Job.status == "completed")
    }
    flaky.failing = False
    retried = manager.retry_tree(root2.id)
    assert retried.status == "running" and retried.n_open > 0
    root2 = wait_for(lambda: finished(root2.id), timeout=20)
    assert root2.status == "completed" and root2.n_completed == 4 and root2.n_failed == 0
    after = {
        j.id: (j.started_at, j.attempts)
        for j in Job.select().where(Job.id.in_(list(completed_before)))
    }
    assert after == completed_before  # the root's own completed work did not run again


def test_retry_of_a_tree_without_failures_is_a_conflict(manager, worker):
    from quaero.errors import Conflict

    root = manager.create_root("noop", {})
    wait_for(lambda: finished(root.id), timeout=10)
    with pytest.raises(Conflict):
        manager.retry_tree(root.id)


def test_pause_holds_pending_jobs_and_resume_releases_them(manager, worker):
    root = manager.create_root(
        "fanout", {"children": 60, "child_type": "sleep", "child_payload": {"seconds": 0.05}}
    )
    wait_for(lambda: Job.get_by_id(root.id).n_completed >= 4, timeout=20)
    manager.set_paused(root.id, True)
    wait_for(lambda: Job.get_by_id(root.id).counts["running"] == 0)
    # read after: the row read above came before its count of running jobs, so jobs
    # that finished between the two are in this one's n_completed, not in that one's
    held = Job.get_by_id(root.id)
    time.sleep(0.6)  # a window in which nothing may start: a wait for no event
    still = Job.get_by_id(root.id)
    assert still.counts["running"] == 0 and still.counts["pending"] > 0
    assert still.n_completed == held.n_completed
    manager.set_paused(root.id, False)
    root = wait_for(lambda: finished(root.id), timeout=30)
    assert root.status == "completed" and root.n_completed == 60


def test_rerun_makes_a_new_root_with_overrides(manager, worker):
    first = manager.create_root("sleep", {"seconds": 0, "steps": 1})
    wait_for(lambda: finished(first.id), timeout=10)
    again = manager.rerun(first.id, {"steps": 2})
    again = wait_for(lambda: finished(again.id), timeout=10)
    assert again.id != first.id and again.parent_id is None
    assert again.payload_data == {"seconds": 0, "steps": 2} and again.status == "completed"


def test_retention_purges_old_finished_trees_only(manager, recovery, worker, monkeypatch):
    # the worker's own retention (at its start, then hourly) must not purge it first
    keep = config_mod.replace(worker.config, jobs={"retention_days": 10_000})
    monkeypatch.setattr(worker, "config", keep)
    old = manager.create_root("fanout", {"children": 3})
    recent = manager.create_root("noop", {})
    wait_for(lambda: finished(old.id) and finished(recent.id), timeout=20)
    running = manager.create_root("sleep", {"seconds": 5})
    wait_for(lambda: Job.get_by_id(running.id).status == "running", timeout=10)
    Job.update(finished_at=time.time() - 40 * 86400).where(Job.id == old.id).execute()
    assert recovery.purge_finished(30, batch=1) == 4
    assert Job.select().where(Job.root_id == old.id).count() == 0
    assert JobLog.select().where(JobLog.job_id == old.id).count() == 0
    assert Job.get_or_none(Job.id == recent.id) and Job.get_or_none(Job.id == running.id)
    manager.cancel_tree(running.id)


def test_retrying_a_cancelled_nested_fanout_keeps_exact_child_counts(manager, worker):
    """1 root → 3 fan-outs → 4 sleeps each: 16 jobs, before and after cancel + retry
    (the retried fan-outs run again and find their children already there)."""
    leaf = {"child_type": "sleep", "child_payload": {"seconds": 0.5}, "children": 4}
    payload = {"children": 3, "child_type": "fanout", "child_payload": leaf}
    root = manager.create_root("fanout", payload)
    in_tree = Job.root_id == root.id
    wait_for(lambda: Job.select().where(in_tree).count() == 16, timeout=20)
    wait_for(lambda: Job.select().where(in_tree, Job.status == "running").count())
    manager.cancel_tree(root.id)
    manager.retry_tree(root.id)
    done = wait_for(lambda: finished(root.id), timeout=30)
    assert done.status == "completed"
    assert Job.select().where(in_tree).count() == 16
    assert done.counts["total"] == done.counts["completed"] == 15


@register
class SpawnThenFlakyExecutor(Executor):
    """Spawns three children, then fails while its switch is on (the `flaky` fixture)."""

    type = "test_spawn_then_flaky"
    demo = True
    switch = Switch()

    def run(self, ctx):
        ctx.spawn([ChildSpec("noop", name=f"child {i}") for i in range(3)])
        if self.switch.failing:
            raise PermanentError("own work failed after spawning")
        return {"ok": True}


def test_retrying_below_an_ancestor_that_never_finished_reruns_it_without_duplicates(
    manager, worker
):
    """A fan-out cancelled mid-spawn; retrying one of its cancelled children re-runs
    the fan-out's own work too (no 409), which creates only the missing children."""
    root = manager.create_root("fanout", {"children": 600, "batch": 3})
    wait_for(lambda: Job.select().where(Job.parent_id == root.id).count() >= 30, timeout=20)
    manager.cancel_tree(root.id)
    assert Job.get_by_id(root.id).outcome is None  # its own work never finished
    cancelled = list(Job.select().where(Job.parent_id == root.id, Job.status == "cancelled"))
    assert cancelled
    manager.retry_tree(cancelled[0].id)
    done = wait_for(lambda: finished(root.id), timeout=60)
    assert done.status == "completed" and done.attempts == 1
    assert Job.select().where(Job.parent_id == root.id).count() == 600
    # the retried child ran; its cancelled siblings stay cancelled (not asked for)
    assert done.counts["total"] == 600 and done.counts["cancelled"] == len(cancelled) - 1
    assert Job.get_by_id(cancelled[0].id).status == "completed"


def test_retrying_a_job_whose_children_all_completed_reruns_only_its_own_work(
    manager, worker, flaky
):
    job = manager.create_root("test_spawn_then_flaky", {})
    failed = wait_for(lambda: finished(job.id), timeout=20)
    assert failed.status == "failed" and failed.n_completed == 3
    before = {j.id: (j.started_at, j.attempts) for j in Job.select().where(Job.parent_id == job.id)}
    flaky.failing = False
    manager.retry_tree(job.id)
    done = wait_for(lambda: finished(job.id), timeout=20)
    assert done.status == "completed" and done.counts["total"] == 3
    after = {j.id: (j.started_at, j.attempts) for j in Job.select().where(Job.parent_id == job.id)}
    assert after == before  # the children did not run again
