"""Jobs stored by type and status (quaero/counts.py, queries.stored_counts): the ledger
plus job_totals always equal a GROUP BY over the rows, through every kind of move, on
SQLite and on PostgreSQL + Redis."""

import time

import peewee

from quaero import counts, queries
from quaero.models import ChildSpec, Job

BACKENDS = ["sqlite", "postgresql"]

W = "testhost:1:aaaaaa"


def counted_rows() -> dict[tuple[str, str], int]:
    rows = Job.select(Job.type, Job.status, peewee.fn.COUNT(Job.id)).group_by(Job.type, Job.status)
    return {(t, s): n for t, s, n in rows.tuples()}


def assert_counts_match() -> None:
    stored = {key: n for key, n in queries.stored_counts().items() if n}
    assert stored == counted_rows()
    by_status = {s: 0 for s in ("pending", "running", "completed", "failed", "cancelled")}
    for (_, status), n in stored.items():
        by_status[status] += n
    assert queries.status_counts() == by_status


def test_stored_counts_follow_every_move(manager, recovery):
    root = manager.claim(manager.create_root("fanout", {}).id, W)
    assert_counts_match()
    kids = manager.spawn_children(root, [ChildSpec("noop", {"i": i}) for i in range(4)])
    kids += manager.spawn_children(root, [ChildSpec("sleep", {}, dedup_key="s")], position=4)
    manager.spawn_children(root, [ChildSpec("sleep", {}, dedup_key="s")], position=5)  # skipped
    assert_counts_match()
    manager.complete(root, W, {"ok": True})
    done = manager.claim(kids[0], W)
    manager.complete(done, W, 1)
    failed = manager.claim(kids[1], W)
    manager.fail(failed, W, "boom", None, permanent=True)
    assert_counts_match()
    for kid in kids[2:]:
        manager.cancel_tree(kid)
    assert Job.get_by_id(root.id).status == "completed"  # settled with its last child
    assert_counts_match()
    manager.retry_tree(root.id)  # the failed and cancelled run again; the root waits again
    assert Job.get_by_id(root.id).status == "running"
    assert_counts_match()
    manager.cancel_tree(root.id)
    assert_counts_match()
    manager.delete_tree(root.id)
    assert_counts_match()
    other = manager.create_root("noop", {})
    manager.complete(manager.claim(other.id, W), W, None)
    Job.update(finished_at=time.time() - 10 * 86_400).where(Job.id == other.id).execute()
    assert recovery.purge_finished(1) == 1
    assert_counts_match()
    assert counted_rows() == {}


def test_the_ledger_is_rebuilt_from_rows_inserted_behind_quaeros_back(manager):
    manager.complete(manager.claim(manager.create_root("noop", {}).id, W), W, None)
    Job.insert_many(
        [
            {"root_id": 0, "path": "/", "type": "noop", "status": s, "created_at": 0.0,
             "updated_at": 0.0}
            for s in ("pending", "failed", "failed")
        ]
    ).execute()  # fmt: skip
    counts.recount(Job._meta.database)
    assert_counts_match()
