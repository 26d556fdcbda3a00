"""Redis goes away (issue 12, point 2): a 503 with a reason, never a 500; a submission is
stored and answered 201 and runs exactly once when Redis is back; a retried submission
with the same Idempotency-Key is the same job.

One `web` and one `worker` process on the test's own PostgreSQL and Redis; Redis is
killed by PID (it keeps nothing: no persistence) and started again on the same port.
"""

import signal
import time

import pytest
import requests

from tests.faults import (
    Monitor,
    get_json,
    record_figures,
    start_stack,
    wait_final,
    wait_until,
)
from tests.procs import RunPy
from tests.sites import TestSite

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


@pytest.fixture
def stack(tmp_path, own_pg, own_redis):
    stack = start_stack(tmp_path, own_pg, own_redis, workers=1)
    yield stack
    stack.stop()


def submit(base, url, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    body = {"type": "crawler", "payload": {"url": url, "depth": 1}}
    return requests.post(f"{base}/api/jobs", json=body, headers=headers, timeout=10)


def assert_unavailable(response, word):
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "unavailable" and word in error["message"], error
    assert response.headers["Retry-After"]


def test_redis_down_503_then_submissions_run_once(stack, own_redis):
    base = stack.base
    with (
        TestSite(n_pages=30, seed=3) as site,
        TestSite(n_pages=5) as site2,
        Monitor(base) as monitor,
    ):
        own_redis.kill()
        assert_unavailable(requests.get(f"{base}/api/stats", timeout=10), "queue")
        assert_unavailable(requests.get(f"{base}/metrics", timeout=10), "queue")
        health = requests.get(f"{base}/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["checks"]["database"] == "ok"

        first = submit(base, site.url("/"), key="crawl-1")
        assert first.status_code == 201, first.text  # stored: it runs when Redis is back
        retried = submit(base, site.url("/"), key="crawl-1")
        assert retried.status_code == 200 and retried.json()["id"] == first.json()["id"]
        other = submit(base, site2.url("/"))
        assert other.status_code == 201, other.text
        assert site.total_hits == site2.total_hits == 0  # nothing ran while the queue was away

        own_redis.start()
        back_at = time.monotonic()
        wait_until(lambda: get_json(base, "/healthz").get("status") == "ok", 10)
        roots = [wait_final(base, r.json()["id"], 60) for r in (first, other)]
        finished_s = round(time.monotonic() - back_at, 1)
    assert [root["status"] for root in roots] == ["completed", "completed"]
    assert 500 not in monitor.statuses()
    for hits in (site.hits, site2.hits):  # every page of each crawl fetched exactly once
        pages = [path for path in hits if path != "/robots.txt"]
        assert pages and all(hits[path] == 1 for path in pages), hits
    jobs = requests.get(f"{base}/api/jobs", timeout=10).json()
    assert jobs["total"] == 2  # the retried submission created nothing
    for root in roots:
        assert root["attempts"] == 1
    record_figures(
        "redis-down",
        "Redis killed (no persistence), submissions meanwhile, started again empty",
        lost=0,
        stuck=0,
        run_twice=0,
        in_flight_on_cut_worker=0,
        recover_s=finished_s,
    )


def test_web_dies_while_redis_down_the_orphan_sweep_enqueues_its_submission(stack, own_redis):
    """The outbox lives in the web process: if that dies before Redis returns, the
    workers' orphan sweep enqueues the stored job. Workers that found the queue away
    sweep every reaper round once it answers again, not only every 30 s."""
    base = stack.base
    with TestSite(n_pages=5, seed=1) as site:
        own_redis.kill()
        response = submit(base, site.url("/"))
        assert response.status_code == 201, response.text
        stack.web.signal(signal.SIGKILL)
        stack.web.wait(10)
        own_redis.start()
        stack.web = RunPy("web", stack.config).start()
        stack.web.wait_healthy(base)
        root = wait_final(base, response.json()["id"], 15)
    assert root["status"] == "completed"
    assert all(n == 1 for path, n in site.hits.items() if path != "/robots.txt")
