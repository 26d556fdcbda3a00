"""The crawler's crawl-wide state on both stores: best depths only go down, a lowered
depth of a fetched page is claimed for re-expansion once, host slots queue up."""

from __future__ import annotations

import time
from functools import partial

from quaero.executors import crawlstate

BACKENDS = ["sqlite", "postgresql"]


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
