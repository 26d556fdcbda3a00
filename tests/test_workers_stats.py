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
