"""Live workers in /api/stats (issue 16, point 6): host, pid, threads, the jobs each
runs (their ids, for links), jobs done and the last heartbeat."""

import requests

from tests.helpers import wait_for


def test_stats_list_each_live_worker_with_its_running_jobs(live_server, manager, worker):
    job = manager.create_root("sleep", {"seconds": 3, "steps": 3}, name="slow")

    def running_worker():
        workers = requests.get(f"{live_server}/api/stats", timeout=5).json()["workers"]
        return next((w for w in workers if job.id in w["running_jobs"]), None)

    w = wait_for(running_worker, timeout=15)
    assert w["running"] >= 1 and w["pid"] > 0 and w["threads"] == 4 and w["hostname"]
    assert w["last_heartbeat"] and w["jobs_done"] >= 0


def test_a_worker_lists_its_oldest_running_jobs_and_counts_them_all(manager, recovery, monkeypatch):
    """The count and the list come from one read while the list is whole (a job
    claimed between two reads was listed but not counted); past RUNNING_LISTED the
    list is cut and the count is read on its own."""
    from quaero import queries

    w = "elsewhere:1:aaaaaa"
    recovery.register_worker(w, 4)
    ids = [manager.claim(manager.create_root("noop", {}).id, w).id for _ in range(3)]
    (mine,) = [x for x in queries.live_workers() if x["id"] == w]
    assert mine["running"] == 3 and mine["running_jobs"] == ids
    monkeypatch.setattr(queries, "RUNNING_LISTED", 2)
    (mine,) = [x for x in queries.live_workers() if x["id"] == w]
    assert mine["running"] == 3 and mine["running_jobs"] == ids[:2]
