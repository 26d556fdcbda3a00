"""The job manager: transitions, counters, progress, trees and fencing.

These drive the manager directly (no consumer), against a real SQLite database and a
real Huey SQLite queue in tmp_path.
"""

import time

import pytest

from quaero import queries
from quaero.errors import Conflict, LeaseLost, NotFound
from quaero.models import ChildSpec, Job, JobLog

BACKENDS = ["sqlite", "postgresql"]  # the same tests on both stores

W = "testhost:1:aaaaaa"


def reload(job):
    return Job.get_by_id(job.id)


def run_to_completion(manager, job, result=None):
    claimed = manager.claim(job.id, W)
    assert claimed is not None
    assert manager.complete(claimed, W, result)
    return reload(job)


def test_create_root_sets_tree_fields_and_enqueues(manager, services):
    job = manager.create_root("noop", {"a": 1}, name="first")
    job = reload(job)
    assert (job.root_id, job.parent_id, job.path, job.depth) == (job.id, None, "/", 0)
    assert job.status == "pending" and job.payload_data == {"a": 1}
    assert services.queue.queued_job_ids() == {job.id}
    assert services.queue.depth() == 1


def test_claim_is_atomic_and_a_duplicate_is_a_noop(manager):
    job = manager.create_root("noop", {})
    first = manager.claim(job.id, W)
    second = manager.claim(job.id, "other:2:bbbbbb")
    assert first is not None and first.status == "running" and first.attempts == 1
    assert second is None
    assert reload(job).worker_id == W


def test_complete_records_result_and_timing(manager):
    job = run_to_completion(manager, manager.create_root("noop", {}), {"ok": True})
    assert job.status == "completed" and job.result_data == {"ok": True}
    assert job.finished_at >= job.started_at >= job.created_at
    assert job.lease_expires_at is None and job.worker_id is None


def test_complete_by_a_worker_that_lost_the_job_is_refused(manager):
    job = manager.claim(manager.create_root("noop", {}).id, W)
    assert not manager.complete(job, "someone:else:1", {"x": 1})
    assert reload(job).status == "running"


def spawn(manager, parent, n, **kw):
    return manager.spawn_children(
        parent, [ChildSpec("noop", {"i": i}, name=f"c{i}") for i in range(n)], **kw
    )


def test_children_are_created_in_bulk_and_counted_on_every_ancestor(manager, services):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    ids = spawn(manager, root, 3)
    assert len(ids) == 3
    child = manager.claim(ids[0], W)
    grandchildren = spawn(manager, child, 2)
    root, child = reload(root), reload(child)
    assert root.counts == {
        "pending": 4,
        "running": 1,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "total": 5,
    }
    assert child.counts["pending"] == 2
    gc = Job.get_by_id(grandchildren[0])
    assert (gc.root_id, gc.parent_id, gc.depth, gc.path) == (
        root.id,
        child.id,
        2,
        f"/{root.id}/{child.id}/",
    )
    assert services.queue.queued_job_ids() >= set(ids[1:]) | set(grandchildren)


def test_parent_finishes_only_after_every_descendant(manager):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    ids = spawn(manager, root, 2)
    assert manager.complete(root, W, {"own": "done"})
    root = reload(root)
    assert root.status == "running" and root.outcome == "completed"
    assert root.total_progress == 0.0
    run_to_completion(manager, Job.get_by_id(ids[0]))
    assert reload(root).status == "running"
    assert reload(root).total_progress == 0.5
    run_to_completion(manager, Job.get_by_id(ids[1]))
    root = reload(root)
    assert root.status == "completed" and root.total_progress == 1.0
    assert root.counts["completed"] == 2 and root.finished_at is not None


def test_child_failures_are_counted_not_hidden_and_parent_still_completes(manager):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    ids = spawn(manager, root, 2)
    manager.complete(root, W, None)
    bad = manager.claim(ids[0], W)
    assert manager.fail(bad, W, "boom", "Traceback...", permanent=True) == "failed"
    run_to_completion(manager, Job.get_by_id(ids[1]))
    root = reload(root)
    assert root.status == "completed"
    assert root.counts["failed"] == 1 and root.counts["completed"] == 1
    failed = Job.get_by_id(ids[0])
    assert failed.error == "boom" and failed.traceback == "Traceback..."


def test_parent_whose_own_work_failed_is_failed_once_children_finish(manager):
    root = manager.claim(manager.create_root("noop", {}, max_attempts=1).id, W)
    ids = spawn(manager, root, 1)
    assert manager.fail(root, W, "own work broke", None, permanent=False) == "failed"
    assert reload(root).status == "running"
    run_to_completion(manager, Job.get_by_id(ids[0]))
    assert reload(root).status == "failed"


def test_grandchildren_settle_the_whole_chain(manager):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    (child_id,) = spawn(manager, root, 1)
    manager.complete(root, W, None)
    child = manager.claim(child_id, W)
    (gc_id,) = spawn(manager, child, 1)
    manager.complete(child, W, None)
    assert reload(child).status == "running"
    run_to_completion(manager, Job.get_by_id(gc_id))
    assert reload(child).status == "completed"
    root = reload(root)
    assert root.status == "completed" and root.counts["completed"] == 2


def test_transient_failure_goes_back_to_pending_with_backoff(manager, services):
    job = manager.claim(manager.create_root("noop", {}, max_attempts=3).id, W)
    assert manager.fail(job, W, "flaky", None, permanent=False) == "pending"
    job = reload(job)
    assert job.status == "pending" and job.run_after > time.time() - 0.01
    message = services.queue.huey.storage.enqueued_items()[-1]
    task = services.queue.huey.deserialize_task(message)
    assert task.args == (job.id,) and task.eta is not None  # Huey delays it, no worker sleeps
    logs = [line.message for line in queries.job_logs(job.id)]
    assert any("attempt 1/3 failed: flaky; retrying" in m for m in logs)


def test_retry_delay_grows_exponentially_with_jitter(manager):
    base = manager.config.jobs.retry_base_seconds
    for attempt in (1, 2, 3, 4):
        delays = [manager.retry_delay(attempt) for _ in range(50)]
        assert all(
            0.5 * base * 2 ** (attempt - 1) <= d < 1.5 * base * 2 ** (attempt - 1) for d in delays
        )
        assert len(set(delays)) > 1


def test_last_attempt_failure_is_final(manager):
    job = manager.claim(manager.create_root("noop", {}, max_attempts=1).id, W)
    assert manager.fail(job, W, "no luck", None, permanent=False) == "failed"
    assert reload(job).status == "failed"


def test_spawn_deduplicates_within_a_tree_only(manager):
    a = manager.claim(manager.create_root("noop", {}).id, W)
    b = manager.claim(manager.create_root("noop", {}).id, W)
    specs = [ChildSpec("noop", {}, dedup_key=k) for k in ("x", "y", "x")]
    assert len(manager.spawn_children(a, specs)) == 2
    assert manager.spawn_children(a, [ChildSpec("noop", {}, dedup_key="y")]) == []
    assert len(manager.spawn_children(b, specs)) == 2
    assert reload(a).counts["total"] == 2


def test_a_spawn_past_one_insert_chunk_keeps_order_fields_and_known_keys(manager, services):
    """Over INSERT_CHUNK children (PostgreSQL inserts a column an array, SQLite a row
    of values): every field arrives, ids and queue order follow the specs, and keys
    the tree has, or that repeat, are skipped."""
    root = manager.claim(manager.create_root("noop", {}, priority=2).id, W)
    manager.spawn_children(root, [ChildSpec("noop", {}, dedup_key="k7")])
    specs = [
        ChildSpec("sleep", {"i": i, "s": "é'\\"}, name=f"c{i}", dedup_key=f"k{i % 1100}")
        for i in range(1200)
    ]
    specs.append(ChildSpec("noop", {"last": True}, priority=9, max_attempts=7))
    ids = manager.spawn_children(root, specs)
    assert len(ids) == 1100 and ids == sorted(ids)  # k7 known, k0..k99 repeated
    rows = list(Job.select().where(Job.id.in_(ids)).order_by(Job.id))
    assert [r.dedup_key for r in rows[:3]] == ["k0", "k1", "k2"] and rows[7].dedup_key == "k8"
    first, last = rows[0], rows[-1]
    assert (first.type, first.name, first.payload_data) == ("sleep", "c0", {"i": 0, "s": "é'\\"})
    assert (first.parent_id, first.root_id, first.depth, first.path) == (
        root.id,
        root.id,
        1,
        f"/{root.id}/",
    )
    assert (first.priority, first.max_attempts, first.status, first.paused) == (
        2,
        3,
        "pending",
        False,
    )
    assert (last.dedup_key, last.priority, last.max_attempts) == (None, 9, 7)
    assert reload(root).counts["pending"] == 1101
    assert services.queue.queued_job_ids() >= set(ids)


def test_root_limit_caps_the_tree(manager):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    assert len(spawn(manager, root, 3, root_limit=5)) == 3
    child = manager.claim(Job.select().where(Job.parent_id == root.id).first().id, W)
    assert len(spawn(manager, child, 10, root_limit=5)) == 2
    assert reload(root).counts["total"] == 5


def test_cancel_tree_cancels_unfinished_descendants_and_fixes_counts(manager):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    ids = spawn(manager, root, 3)
    run_to_completion(manager, Job.get_by_id(ids[0]))
    running = manager.claim(ids[1], W)
    (gc,) = spawn(manager, running, 1)
    cancelled = manager.cancel_tree(root.id)
    assert cancelled.status == "cancelled"
    statuses = {j.id: j.status for j in Job.select()}
    assert statuses[ids[0]] == "completed"
    assert statuses[ids[1]] == statuses[ids[2]] == statuses[gc] == "cancelled"
    root = reload(root)
    assert root.counts == {
        "pending": 0,
        "running": 0,
        "completed": 1,
        "failed": 0,
        "cancelled": 3,
        "total": 4,
    }
    assert reload(running).counts["cancelled"] == 1
    # the running child's worker finishing later changes nothing
    assert not manager.complete(running, W, {"late": True})
    assert Job.get_by_id(ids[1]).status == "cancelled"
    assert manager.claim(ids[2], W) is None


def test_cancel_a_subtree_settles_the_parent(manager):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    (child_id,) = spawn(manager, root, 1)
    manager.complete(root, W, None)
    manager.cancel_tree(child_id)
    root = reload(root)
    assert root.status == "completed" and root.counts["cancelled"] == 1


def test_cancel_finished_job_is_a_conflict_and_unknown_is_not_found(manager):
    job = run_to_completion(manager, manager.create_root("noop", {}))
    with pytest.raises(Conflict):
        manager.cancel_tree(job.id)
    with pytest.raises(NotFound):
        manager.cancel_tree(987654)


def test_delete_tree_removes_jobs_and_logs_and_refuses_unfinished(manager):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    ids = spawn(manager, root, 2)
    manager.log(ids[0], "info", "hello")
    with pytest.raises(Conflict):
        manager.delete_tree(root.id)
    manager.complete(root, W, None)
    for i in ids:
        run_to_completion(manager, Job.get_by_id(i))
    assert manager.delete_tree(root.id) == 3
    assert Job.select().count() == 0 and JobLog.select().count() == 0


def test_delete_subtree_adjusts_ancestor_counts(manager):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    ids = spawn(manager, root, 2)
    run_to_completion(manager, Job.get_by_id(ids[0]))
    assert manager.delete_tree(ids[0]) == 1
    assert reload(root).counts == {
        "pending": 1,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "total": 1,
    }


def test_logs_filter_by_minimum_level_and_tail(manager):
    job = manager.create_root("noop", {})
    for level in ("debug", "info", "warning", "error"):
        manager.log(job.id, level, f"a {level} line")
    levels = [line.level for line in queries.job_logs(job.id, level="warning")]
    assert levels == ["warning", "error"]
    tail = queries.job_logs(job.id, limit=2)
    assert [line.level for line in tail] == ["warning", "error"]
    after = queries.job_logs(job.id, after_id=tail[0].id)
    assert [line.level for line in after] == ["error"]


def test_roots_listing_filters_pages_and_searches(manager):
    for i in range(5):
        manager.create_root("noop", {}, name=f"job {i}")
    done = run_to_completion(manager, manager.create_root("noop", {}, name="special one"))
    page, total = queries.list_jobs(queries.JobFilter(limit=2))
    assert total == 6 and [j.id for j in page] == [done.id, done.id - 1]
    page, total = queries.list_jobs(queries.JobFilter(status="completed"))
    assert total == 1 and page[0].id == done.id
    page, total = queries.list_jobs(queries.JobFilter(q="special"))
    assert [j.id for j in page] == [done.id]
    page, total = queries.list_jobs(queries.JobFilter(limit=2, offset=4))
    assert total == 6 and len(page) == 2


def test_a_cancelled_parent_spawns_nothing(manager):
    root = manager.claim(manager.create_root("noop", {}).id, W)
    manager.cancel_tree(root.id)
    with pytest.raises(LeaseLost):
        spawn(manager, root, 3)
    assert Job.select().count() == 1 and reload(root).counts["total"] == 0


def test_a_stale_attempt_is_fenced_from_every_write(manager, services, recovery):
    """Once another attempt took the job over, the old one can neither log, report
    progress, spawn nor finish it, even from the same worker id."""
    stale = manager.claim(manager.create_root("noop", {}).id, W)
    Job.update(lease_expires_at=time.time() - 1).where(Job.id == stale.id).execute()
    assert recovery.reap_expired_leases() == 1
    live = manager.claim(stale.id, W)
    assert live.lease_epoch == stale.lease_epoch + 1
    assert not manager.still_held(stale) and manager.still_held(live)
    assert manager.write_report(stale, [("info", "stale line", time.time())], 0.9) is False
    with pytest.raises(LeaseLost):
        spawn(manager, stale, 2)
    assert manager.complete(stale, W, {"from": "stale"}) is False
    assert manager.fail(stale, W, "boom", None, permanent=True) == ""
    assert recovery.hand_back(stale, W) is False
    job = reload(live)
    assert job.status == "running" and job.progress == 0 and job.counts["total"] == 0
    assert not [line for line in queries.job_logs(job.id) if line.message == "stale line"]
    assert manager.complete(live, W, {"from": "live"}) is True
    assert reload(live).result_data == {"from": "live"}


def test_children_without_a_key_are_keyed_by_position_so_a_rerun_adds_none(
    manager, services, recovery
):
    from quaero.executors.base import JobContext

    parent = manager.claim(manager.create_root("noop", {}).id, W)
    first = JobContext(manager, parent, manager.config)
    assert len(first.spawn([ChildSpec("noop", name=f"c{i}") for i in range(3)])) == 3
    recovery.release_worker_jobs(W)  # the attempt ends before its own work is done
    again = manager.claim(parent.id, W)
    second = JobContext(manager, again, manager.config)
    assert second.spawn([ChildSpec("noop", name=f"c{i}") for i in range(5)]) != []
    names = [j.name for j in Job.select().where(Job.parent_id == parent.id).order_by(Job.id)]
    assert names == ["c0", "c1", "c2", "c3", "c4"]
    assert reload(parent).counts["total"] == 5


def test_resuming_a_delayed_job_schedules_it_for_its_time(manager, services):
    """Resume enqueues a job that is not due yet with its eta, for Huey's schedule (a
    message without one is taken early and dropped: the job waited for the sweep)."""
    later = manager.create_root("noop", {}, run_after=time.time() + 60)
    now = manager.create_root("noop", {})
    for job in (later, now):
        manager.set_paused(job.id, True)
    services.queue.huey.storage.flush_queue()
    services.queue.huey.storage.flush_schedule()
    for job in (later, now):
        manager.set_paused(job.id, False)
    huey = services.queue.huey
    etas = {
        task.args[0]: task.eta for task in map(huey.deserialize_task, huey.storage.enqueued_items())
    }
    assert etas.keys() == {later.id, now.id} and etas[now.id] is None
    assert etas[later.id] is not None


def test_many_log_lines_are_written_in_chunks_with_levels_and_lengths_checked(services):
    from quaero.models import JobLog
    from quaero.store import LOG_ROWS_PER_INSERT, MAX_LOG_MESSAGE

    store = services.store
    job = services.manager.create_root("noop", {})
    n = LOG_ROWS_PER_INSERT * 2 + 7
    lines = [(job.id, "debug" if i % 2 else "nonsense", f"line {i} 100%", 1.5) for i in range(n)]
    lines.append((job.id, "error", "x" * (MAX_LOG_MESSAGE + 10), 2.0))
    store.transaction(lambda: store.write_logs(lines))
    mine = JobLog.created_at.in_([1.5, 2.0])  # not the line that create_root wrote
    rows = list(JobLog.select().where(JobLog.job_id == job.id, mine).order_by(JobLog.id))
    assert len(rows) == n + 1
    assert rows[0].level == "info" and rows[0].message == "line 0 100%"  # unknown: info
    assert rows[1].level == "debug" and rows[n - 1].message == f"line {n - 1} 100%"
    assert rows[-1].level == "error" and len(rows[-1].message) == MAX_LOG_MESSAGE
