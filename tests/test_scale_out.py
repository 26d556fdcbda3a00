"""Scale-out for real: one `web` process and three `worker` processes on Redis and
PostgreSQL crawl a local site; one worker is killed mid-crawl and nothing is lost."""

import signal

import psycopg
import pytest
import requests

from tests.helpers import scale_out_backend, wait_for, wait_for_job
from tests.procs import RunPy, free_port, write_config
from tests.sites import TestSite

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path):
    """Start one web and N workers sharing a fresh schema and queue name."""
    started: list[RunPy] = []
    with scale_out_backend() as backend:
        port = free_port()
        db_url = backend["database"]["url"]
        text = f"""
[queue]
backend = "redis"
url = "{backend["queue"]["url"]}"
name = "{backend["queue"]["name"]}"
num_workers = 5
[database]
url = "{db_url}"
max_connections = 10
[jobs]
lease_seconds = 4
reaper_interval = 0.5
"""
        config = write_config(tmp_path, port, text)

        def start(workers: int) -> tuple[str, list[RunPy]]:
            base = f"http://127.0.0.1:{port}"
            web = RunPy("web", config).start()
            started.append(web)
            web.wait_healthy(base)
            procs = [RunPy("worker", config).start() for _ in range(workers)]
            started.extend(procs)
            wait_for(
                lambda: (
                    requests.get(f"{base}/api/stats", timeout=5).json()["workers_alive"] == workers
                ),
                timeout=30,
            )
            return base, procs

        yield start, db_url
        for p in started:
            p.stop()


def crawl(base, site, depth):
    response = requests.post(
        f"{base}/api/jobs",
        json={
            "type": "crawler",
            "payload": {"url": site.url("/"), "depth": depth, "max_pages": 1000},
        },
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def pages_of(db_url, root_id):
    with psycopg.connect(db_url) as db:
        return db.execute(
            "SELECT payload::json->>'url', status FROM jobs WHERE root_id = %s AND id != %s",
            (root_id, root_id),
        ).fetchall()


def test_one_web_three_workers_crawl_each_page_once(cluster):
    start, db_url = cluster
    base, workers = start(3)
    with TestSite(n_pages=800, seed=11, delay=0.01) as site:
        depth = 6
        expected = site.expected_urls(depth, include_blocked=True)
        assert len(expected) >= 500
        root_id = crawl(base, site, depth)
        root = wait_for_job(base, root_id, timeout=180)
        assert root["status"] == "completed"
        urls = [url for url, _ in pages_of(db_url, root_id)]
        assert sorted(urls) == sorted(expected)
        assert set(site.fetched_urls()) == set(site.expected_urls(depth))
        assert all(n == 1 for path, n in site.hits.items() if path != "/robots.txt")
        stats = requests.get(f"{base}/api/stats", timeout=5).json()
        done = {w["id"]: w["jobs_done"] for w in stats["workers"]}
        print(
            f"\nscale-out: {len(expected)} pages in {root['duration']:.1f}s, "
            f"jobs per worker {sorted(done.values())}"
        )
        assert len(done) == 3 and all(n > 0 for n in done.values())  # every worker took part
        for worker in workers:  # locks are taken in one order (Store.guard_tree)
            assert "deadlock" not in worker.output()


def test_sigkill_one_of_three_workers_loses_nothing(cluster):
    start, db_url = cluster
    base, workers = start(3)
    with TestSite(n_pages=600, seed=4, delay=0.05) as site:
        depth = 5
        expected = site.expected_urls(depth, include_blocked=True)
        root_id = crawl(base, site, depth)
        wait_for(
            lambda: (
                requests.get(f"{base}/api/jobs/{root_id}", timeout=5).json()["counts"]["completed"]
                >= 60
            ),
            timeout=60,
        )
        workers[0].signal(signal.SIGKILL)
        workers[0].wait(10)
        root = wait_for_job(base, root_id, timeout=180)
        pages = pages_of(db_url, root_id)
        assert root["status"] == "completed"
        assert sorted(url for url, _ in pages) == sorted(expected)
        assert all(status == "completed" for url, status in pages if not url.endswith("/missing"))
        repeated = sum(n - 1 for path, n in site.hits.items() if path != "/robots.txt")
        print(f"\nkilled 1 of 3 workers: {len(pages)} pages, repeated fetches {repeated}")
        assert repeated <= 5  # only the killed worker's in-flight fetches (5 threads)
