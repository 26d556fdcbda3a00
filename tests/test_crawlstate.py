"""The crawler's crawl-wide state on both stores: best depths only go down, a lowered
depth of a fetched page is claimed for re-expansion once, host slots queue up."""

from __future__ import annotations

import time
from functools import partial

import pytest

from quaero.executors import crawlstate
from quaero.executors.base import ChildSpec, JobCancelled, JobContext
from quaero.executors.crawler import _inside
from quaero.models import Job

BACKENDS = ["sqlite", "postgresql"]
W = "testhost:1:aaaaaa"


def test_depths_only_go_down_and_each_improvement_is_claimed_once(manager):
    db, tx = manager.db, partial(manager.store.transaction, durable=False)
    found = partial(crawlstate.found_at, db, tx)
    assert found(1, ["u/a", "u/b"], 3, finder=10) == []  # first seen: nothing fetched
    assert crawlstate.record_fetched(db, tx, 1, "u/a", 3, ["u/x"]) == 3
    assert found(1, ["u/a"], 4, finder=11) == []  # farther: no change
    assert found(1, ["u/a", "u/b"], 2, finder=12) == [("u/a", 2, ["u/x"])]
    assert found(1, ["u/a"], 2, finder=13) == []  # the same depth again: claimed
    # a page found nearer before its fetch stored its links expands at the nearer depth
    assert crawlstate.record_fetched(db, tx, 1, "u/b", 3, []) == 2
    assert found(2, ["u/a"], 1, finder=14) == []  # another crawl: its own rows


def test_a_new_attempt_of_the_finder_gets_its_claim_back(manager):
    """The claim committed, the spawns after it were lost (a crash): the finder's next
    attempt follows the stored links again; no other job does."""
    db, tx = manager.db, partial(manager.store.transaction, durable=False)
    found = partial(crawlstate.found_at, db, tx)
    crawlstate.record_fetched(db, tx, 1, "u/a", 3, ["u/x"])
    assert found(1, ["u/a"], 2, finder=20) == [("u/a", 2, ["u/x"])]
    assert found(1, ["u/a"], 2, finder=21) == []
    assert found(1, ["u/a"], 2, finder=20) == [("u/a", 2, ["u/x"])]


def test_host_slots_are_delay_apart(manager):
    db, tx = manager.db, partial(manager.store.transaction, durable=False)
    before = time.time()
    slots = [
        crawlstate.take_host_slot(db, tx, 7, "http://h:80", 0.5, time.time()) for _ in range(3)
    ]
    assert before <= slots[0] <= time.time()
    step = 0.5 + crawlstate.SLOT_MARGIN
    assert abs(slots[1] - slots[0] - step) < 1e-6 and abs(slots[2] - slots[1] - step) < 1e-6
    other = crawlstate.take_host_slot(db, tx, 7, "http://other:80", 0.5, time.time())
    assert other < slots[1]  # another host is not held up


def _claimed_twice(manager, recovery):
    """A page job's stale attempt and the live one that took it over (lease expired)."""
    stale = manager.claim(manager.create_root("noop", {}).id, W)
    Job.update(lease_expires_at=time.time() - 1).where(Job.id == stale.id).execute()
    assert recovery.reap_expired_leases() == 1
    live = manager.claim(stale.id, W)
    assert live.lease_epoch == stale.lease_epoch + 1
    return stale, live


def _pages(db, root_id: int) -> list[tuple[str, int]]:
    sql = f"SELECT url, depth FROM crawl_pages WHERE root_id = {db.param}"
    rows = db.execute_sql(sql, (root_id,))
    return sorted(rows.fetchall())


def test_a_stale_attempt_writes_no_crawl_state(manager, recovery, config):
    """Crawl state is written in a transaction that proves the attempt still holds its
    job (issue 19): once another attempt took the job over, the old one's writes, and
    the spawns that go with them, are refused and leave nothing behind."""
    stale, live = _claimed_twice(manager, recovery)
    db, root_id = manager.db, stale.root_id

    def record(db) -> list[ChildSpec]:
        crawlstate.record_fetched(db, _inside, root_id, "u/a", 0, ["u/b"])
        crawlstate.found_at(db, _inside, root_id, ["u/b"], 1, finder=stale.id)
        return [ChildSpec("noop", {}, "u/b", "u/b")]

    old = JobContext(manager, stale, config)
    with pytest.raises(JobCancelled):
        old.spawn([], prepare=record)
    with pytest.raises(JobCancelled):  # the politeness slots too
        old.write(lambda db: crawlstate.take_host_slot(db, _inside, root_id, "h", 1.0, 0.0))
    assert _pages(db, root_id) == []
    assert db.execute_sql("SELECT COUNT(*) FROM crawl_hosts").fetchone()[0] == 0
    assert Job.select().count() == 1

    new = JobContext(manager, live, config)
    assert len(new.spawn([], prepare=record)) == 1
    assert _pages(db, root_id) == [("u/a", 0), ("u/b", 1)]
    assert new.write(lambda db: crawlstate.take_host_slot(db, _inside, root_id, "h", 1.0, 5.0)) == 5


def test_only_new_children_are_built_from_a_spawn(manager, config):
    """A spawn reads the tree's known keys first: known and repeated keys are dropped."""
    job = manager.claim(manager.create_root("noop", {}).id, W)
    ctx = JobContext(manager, job, config)
    first = ctx.spawn([ChildSpec("noop", {}, "a", "a"), ChildSpec("noop", {}, "b", "b")])
    specs = [ChildSpec("noop", {}, key, key) for key in ("b", "c", "a", "c", "d")]
    again = ctx.spawn(specs)
    assert len(first) == 2 and len(again) == 2
    names = [j.name for j in Job.select().where(Job.parent_id == job.id).order_by(Job.id)]
    assert names == ["a", "b", "c", "d"]
