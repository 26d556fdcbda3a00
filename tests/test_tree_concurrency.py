"""Concurrent writers of one tree: finishes, spawns and a cancel from many threads.

On PostgreSQL the finishes of one tree run side by side (they share the tree's guard and
hold its root row only for their counter update), so these check what the root lock
used to guarantee: counters that match the rows, every parent settled exactly once,
every finish counted once in the totals, and no deadlock.
"""

import random
from concurrent.futures import ThreadPoolExecutor

from quaero import totals
from quaero.models import ChildSpec, Job

BACKENDS = ["sqlite", "postgresql"]

W = "testhost:1:aaaaaa"
COUNTERS = ("n_open", "n_completed", "n_failed", "n_cancelled")
COLUMN = {
    "pending": "n_open",
    "running": "n_open",
    "completed": "n_completed",
    "failed": "n_failed",
    "cancelled": "n_cancelled",
}


def spawn(manager, parent, n):
    specs = [ChildSpec("noop", {"i": i}, name=f"c{i}") for i in range(n)]
    return manager.spawn_children(parent, specs)


def build_tree(manager, mids=4, leaves=12):
    """A running root with `mids` running children, each with `leaves` running children."""
    root = manager.claim(manager.create_root("noop", {}).id, W)
    middle = [manager.claim(i, W) for i in spawn(manager, root, mids)]
    bottom = [manager.claim(i, W) for mid in middle for i in spawn(manager, mid, leaves)]
    return root, middle, bottom


def recounted(job_id):
    """A job's descendant counters recounted from the rows."""
    job = Job.get_by_id(job_id)
    counts = dict.fromkeys(COUNTERS, 0)
    for (status,) in (
        Job.select(Job.status)
        .where(Job.root_id == job.root_id, Job.path.startswith(job.descendant_prefix))
        .tuples()
    ):
        counts[COLUMN[status]] += 1
    return counts


def stored(job_id):
    job = Job.get_by_id(job_id)
    return {column: getattr(job, column) for column in COUNTERS}


def finished_in_totals(services):
    return sum(n for _, _, _, n, _ in totals.read_totals(services.db))


def test_concurrent_finishes_settle_every_parent_exactly_once(manager, services, caplog):
    root, middle, bottom = build_tree(manager)
    everyone = [root, *middle, *bottom]
    random.Random(7).shuffle(everyone)
    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda job: manager.complete(job, W, None), everyone))
    assert all(done)
    for job in [root, *middle]:
        row = Job.get_by_id(job.id)
        assert row.status == "completed" and row.finished_at is not None
        assert stored(job.id) == recounted(job.id)
    assert stored(root.id)["n_completed"] == len(middle) + len(bottom)
    # each of the 53 jobs finished once: a parent settled twice would count twice
    assert finished_in_totals(services) == len(everyone)
    assert "deadlock" not in caplog.text  # hot writers lock in one order: none retried


def test_a_cancel_among_concurrent_finishes_keeps_the_counters_exact(manager, services, caplog):
    root, middle, bottom = build_tree(manager)
    target = middle[1]
    work = [lambda job=job: manager.complete(job, W, None) for job in bottom]
    work.insert(len(work) // 2, lambda: manager.cancel_tree(target.id))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda fn: fn(), work))
    assert Job.get_by_id(target.id).status == "cancelled"
    for job in [root, *middle]:
        assert stored(job.id) == recounted(job.id), job.id
    for mid in middle:
        if mid is not target:
            assert manager.complete(mid, W, None)
    assert manager.complete(root, W, None)
    row = Job.get_by_id(root.id)
    assert row.status == "completed" and stored(root.id) == recounted(root.id)
    assert row.n_open == 0
    assert "deadlock" not in caplog.text


def test_a_parent_left_due_by_a_process_that_died_after_the_commit_is_settled(
    manager, services, monkeypatch
):
    """On PostgreSQL the last child's finish settles its parent just after its commit;
    if the process dies in between, the reaper's `settle_stranded` settles it."""
    root = manager.claim(manager.create_root("noop", {}).id, W)
    child = manager.claim(spawn(manager, root, 1)[0], W)
    assert manager.complete(root, W, None)  # own work done: it waits for its child
    monkeypatch.setattr(services.store, "settle_now", lambda job_id, root_id: None)
    assert manager.complete(child, W, None)
    row = Job.get_by_id(root.id)
    if services.store.is_postgres:  # SQLite settles in the finishing transaction
        assert (row.status, row.n_open, row.outcome) == ("running", 0, "completed")
    monkeypatch.undo()
    services.store.settle_stranded()
    row = Job.get_by_id(root.id)
    assert row.status == "completed" and row.finished_at is not None
    assert stored(root.id) == recounted(root.id)
    assert services.store.settle_stranded() == 0
    assert finished_in_totals(services) == 2
