"""Whatever happens to a worker process, every job reaches a final state and none is
lost: SIGKILL mid-crawl, a crash between the database write and the enqueue, SIGTERM."""

import signal
import sqlite3
import time

import pytest
import requests

from tests.helpers import wait_for
from tests.procs import free_port, write_config
from tests.sites import TestSite

pytestmark = pytest.mark.e2e


def job(base, job_id):
    return requests.get(f"{base}/api/jobs/{job_id}", timeout=5).json()


def rows(tmp_path, sql):
    with sqlite3.connect(tmp_path / "data" / "quaero.db") as db:
        return db.execute(sql).fetchall()


def test_sigkill_mid_crawl_loses_nothing(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, "[queue]\nnum_workers = 5")
    with TestSite(n_pages=600, seed=11, delay=0.05) as site:
        depth = 6
        expected = site.expected_urls(depth, include_blocked=True)
        assert len(expected) >= 300
        serve = procs("serve", config)
        serve.wait_healthy(base)
        root_id = requests.post(
            f"{base}/api/jobs",
            json={
                "type": "crawler",
                "payload": {"url": site.url("/"), "depth": depth, "max_pages": 1000},
            },
            timeout=5,
        ).json()["id"]

        def busy():
            c = job(base, root_id)["counts"]
            return c if c["completed"] >= 40 and c["pending"] + c["running"] >= 100 else None

        counts = wait_for(busy, timeout=60)
        hits_before = site.total_hits
        serve.signal(signal.SIGKILL)
        serve.wait(10)
        in_flight = rows(tmp_path, "SELECT COUNT(*) FROM jobs WHERE status = 'running'")[0][0]
        # own work done, waiting for children, holds no lease: not in flight
        fetching = rows(
            tmp_path,
            "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND lease_expires_at IS NOT NULL",
        )[0][0]

        restarted = procs("serve", config)
        restarted.wait_healthy(base)
        root = wait_for(
            lambda: (j := job(base, root_id))["status"] in ("completed", "failed") and j,
            timeout=120,
        )

        pages = rows(
            tmp_path,
            f"SELECT json_extract(payload, '$.url'), status FROM jobs "
            f"WHERE root_id = {root_id} AND id != {root_id}",
        )
        urls = [url for url, _ in pages]
        extra = site.total_hits - len(site.fetched_urls()) - site.hits.get("/robots.txt", 0)
        print(
            f"\nchaos: {len(expected)} pages, killed at {counts}, running at kill "
            f"{in_flight} ({fetching} fetching), hits before kill {hits_before}, "
            f"total hits {site.total_hits}, repeated fetches {extra}"
        )
        assert sorted(urls) == sorted(expected)  # every page one job, exactly once
        by_status = {url: status for url, status in pages}
        assert all(
            status == "completed"
            for url, status in by_status.items()
            if not url.endswith("/missing")
        )
        assert (
            rows(tmp_path, "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')")[0][0]
            == 0
        )
        assert root["status"] == "completed" and root["counts"]["total"] == len(expected)
        assert set(site.fetched_urls()) == set(site.expected_urls(depth))
        assert extra <= fetching  # only what was in flight at the kill ran twice


def test_crash_between_database_write_and_enqueue(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port)
    faulty = procs("serve", config, env={"QUAERO_FAULT": "before-enqueue"})
    faulty.wait_healthy(base)
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{base}/api/jobs", json={"type": "noop"}, timeout=10)
    assert faulty.wait(10) == 70
    ((job_id, status),) = rows(tmp_path, "SELECT id, status FROM jobs")
    assert status == "pending"
    with sqlite3.connect(tmp_path / "data" / "queue.db") as q:
        assert q.execute("SELECT COUNT(*) FROM task").fetchone()[0] == 0  # never enqueued

    healthy = procs("serve", config)
    healthy.wait_healthy(base)
    assert wait_for(lambda: job(base, job_id)["status"] == "completed", timeout=20)


def test_sigterm_stops_within_grace_and_a_restart_finishes_the_rest(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, "[queue]\nnum_workers = 4\n[jobs]\nshutdown_grace = 1")
    serve = procs("serve", config)
    serve.wait_healthy(base)
    ids = [
        requests.post(
            f"{base}/api/jobs",
            json={"type": "sleep", "payload": {"seconds": 3, "steps": 30}},
            timeout=5,
        ).json()["id"]
        for _ in range(10)
    ]
    wait_for(
        lambda: requests.get(f"{base}/api/stats", timeout=5).json()["counts"]["running"] == 4,
        timeout=20,
    )
    started = time.monotonic()
    serve.signal(signal.SIGTERM)
    assert serve.wait(15) == 0
    took = time.monotonic() - started
    assert took < 1 + 4, f"stopped after {took:.1f}s"
    leftover = rows(
        tmp_path, "SELECT status, worker_id, lease_expires_at FROM jobs WHERE status != 'completed'"
    )
    assert {status for status, _, _ in leftover} <= {"pending"}
    assert all(w is None and lease is None for _, w, lease in leftover)  # handed back
    assert "Traceback" not in serve.output()

    again = procs("serve", config)
    again.wait_healthy(base)
    for job_id in ids:
        wait_for(lambda j=job_id: job(base, j)["status"] == "completed", timeout=60)
    assert rows(tmp_path, "SELECT COUNT(*) FROM jobs WHERE status = 'completed'")[0][0] == 10


def test_a_paused_crawl_survives_a_restart(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, "[queue]\nnum_workers = 3")
    with TestSite(n_pages=300, seed=8, delay=0.05) as site:
        serve = procs("serve", config)
        serve.wait_healthy(base)
        root_id = requests.post(
            f"{base}/api/jobs",
            json={"type": "crawler", "payload": {"url": site.url("/"), "depth": 4}},
            timeout=5,
        ).json()["id"]
        wait_for(lambda: job(base, root_id)["counts"]["completed"] >= 10, timeout=30)
        assert requests.post(f"{base}/api/jobs/{root_id}/pause", timeout=5).status_code == 200
        serve.signal(signal.SIGTERM)
        assert serve.wait(20) == 0
        frontier = rows(
            tmp_path,
            f"SELECT COUNT(*) FROM jobs WHERE root_id = {root_id} "
            "AND status = 'pending' AND paused",
        )[0][0]
        assert frontier > 0

        again = procs("serve", config)
        again.wait_healthy(base)
        hits = site.total_hits
        time.sleep(1.5)  # a paused tree stays put, restart or not
        assert site.total_hits == hits
        assert job(base, root_id)["counts"]["pending"] == frontier
        assert requests.post(f"{base}/api/jobs/{root_id}/resume", timeout=5).status_code == 200
        root = wait_for(
            lambda: (j := job(base, root_id))["status"] == "completed" and j, timeout=90
        )
        assert root["counts"]["total"] == len(site.expected_urls(4, include_blocked=True))
