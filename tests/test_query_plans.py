"""The queries that run however many jobs are stored (the maintenance rounds, a
worker's status, a tree's running count) read an index, never the whole jobs table:
with a million jobs stored a table scan costs a second. SQLite's plans, checked with
EXPLAIN QUERY PLAN on the statements as sent, with their parameters."""

import re

import pytest

from quaero import queries
from quaero.models import ChildSpec, Job

W = "testhost:1:aaaaaa"
TABLE_SCAN = re.compile(r"^SCAN (jobs|t\d+)$")
JOBS = re.compile(r'(FROM|UPDATE|JOIN)\s+"?jobs"?(\s|$)', re.I)


@pytest.fixture
def sent(services, monkeypatch) -> list[tuple[str, tuple]]:
    """Every statement the database is sent from now on, with its parameters."""
    statements: list[tuple[str, tuple]] = []
    execute = services.db.execute_sql

    def recorded(sql, params=None):
        statements.append((sql, tuple(params or ())))
        return execute(sql, params)

    monkeypatch.setattr(services.db, "execute_sql", recorded)
    return statements


def scans_of_jobs(db, statements) -> list[tuple[str, list[str]]]:
    found = []
    for sql, params in statements:
        if not re.match(r"\s*(SELECT|UPDATE|DELETE)", sql, re.I) or not JOBS.search(sql):
            continue
        plan = [row[-1] for row in db.connection().execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        if any(TABLE_SCAN.match(step) for step in plan):
            found.append((sql, plan))
    return found


def test_maintenance_and_status_reads_use_an_index(services, sent):
    manager, recovery = services.manager, services.recovery
    recovery.register_worker(W, 4)
    root = manager.claim(manager.create_root("fanout", {}).id, W)
    ids = manager.spawn_children(root, [ChildSpec("noop", {}) for _ in range(3)])
    manager.claim(ids[0], W)
    sent.clear()

    recovery.heartbeat(W, [root.id, ids[0]])
    recovery.expire_dead_workers_leases(me="otherhost:2:bbbbbb")
    recovery.reap_expired_leases()
    recovery.requeue_orphans(grace=0)
    services.store.settle_stranded()
    queries.stats(services.queue)
    queries.live_workers()
    tree = Job.get_by_id(root.id)
    assert tree.counts["running"] == 1
    queries.attach_running([Job.get_by_id(root.id)])
    assert queries.list_jobs(queries.JobFilter(root_id=root.id, status="running"))[1] == 2

    assert len(sent) > 10
    assert scans_of_jobs(services.db, sent) == []
