"""End to end: a real Huey consumer and a real waitress server crawl a local site
through `POST /api/jobs`; the site counts what was fetched."""

import pytest
import requests

from tests.helpers import wait_for_job
from tests.sites import TestSite

pytestmark = pytest.mark.e2e


@pytest.fixture
def site():
    with TestSite(n_pages=300, seed=7) as s:
        yield s


def all_children(base, job_id):
    jobs, offset = [], 0
    while True:
        body = requests.get(
            f"{base}/api/jobs/{job_id}/children", params={"limit": 500, "offset": offset}, timeout=5
        ).json()
        # listings carry summaries: each page's payload and result are in its details
        jobs += [requests.get(f"{base}/api/jobs/{j['id']}", timeout=5).json() for j in body["jobs"]]
        offset += len(body["jobs"])
        if offset >= body["total"]:
            return jobs


def descendants(base, job_id):
    out = []
    for child in all_children(base, job_id):
        out.append(child)
        if child["counts"]["total"]:
            out += descendants(base, child["id"])
    return out


@pytest.mark.parametrize("depth", [0, 3])
def test_crawl_fetches_each_expected_url_once(live_server, worker, site, depth):
    response = requests.post(
        f"{live_server}/api/jobs",
        json={
            "type": "crawler",
            "payload": {"url": site.url("/"), "depth": depth, "max_pages": 1000},
        },
        timeout=5,
    )
    assert response.status_code == 201, response.text
    root = wait_for_job(live_server, response.json()["id"], timeout=120)

    expected = site.expected_urls(depth)
    pages = descendants(live_server, root["id"])
    fetched = site.fetched_urls()
    print(f"depth {depth}: {len(pages)} page jobs, {site.total_hits} hits, {root['duration']:.2f}s")

    # every expected URL fetched exactly once, nothing else fetched
    assert set(fetched) == set(expected)
    assert all(site.hits[path] == 1 for path in site.hits if path != "/robots.txt")
    assert site.hits.get("/robots.txt", 0) <= 1
    # one job per page (robots-blocked pages are jobs that never fetch)
    urls = [p["payload"]["url"] for p in pages]
    assert len(urls) == len(set(urls))
    assert set(site.expected_urls(depth, include_blocked=True)) == set(urls)

    assert root["status"] == "completed" and root["progress"] == 1.0
    counts = root["counts"]
    assert counts["total"] == len(pages) and counts["pending"] == counts["running"] == 0
    missing = [p for p in pages if p["payload"]["url"].endswith("/missing")]
    assert counts["failed"] == len(missing)
    assert counts["completed"] == len(pages) - len(missing)
    for page in missing:
        assert page["status"] == "failed" and "404" in page["error"]
        assert page["attempts"] == 1  # a 404 is permanent: no retries
    for page in pages:
        if page["status"] == "completed" and not page["result"].get("blocked_by_robots"):
            assert page["result"]["status_code"] == 200
            assert page["result"]["depth"] == page["depth"] - 1
            assert page["result"]["title"]

    logs = requests.get(f"{live_server}/api/jobs/{root['id']}/logs", timeout=5).json()["logs"]
    assert any("crawl of" in line["message"] for line in logs)
    start = all_children(live_server, root["id"])
    assert len(start) == 1 and start[0]["payload"]["url"] == site.url("/")
    page_logs = requests.get(f"{live_server}/api/jobs/{start[0]['id']}/logs", timeout=5).json()[
        "logs"
    ]
    assert any(line["message"].startswith("GET ") for line in page_logs)


def test_max_pages_caps_the_crawl(live_server, worker, site):
    job = requests.post(
        f"{live_server}/api/jobs",
        json={
            "type": "crawler",
            "payload": {"url": site.url("/"), "depth": 5, "max_pages": 25},
        },
        timeout=5,
    ).json()
    root = wait_for_job(live_server, job["id"], timeout=60)
    assert root["status"] == "completed"
    assert root["counts"]["total"] == 25
    assert len(site.fetched_urls()) <= 25


def test_cancel_stops_a_running_crawl(live_server, worker):
    with TestSite(n_pages=300, seed=3, delay=0.2) as slow:
        job = requests.post(
            f"{live_server}/api/jobs",
            json={
                "type": "crawler",
                "payload": {"url": slow.url("/"), "depth": 5},
            },
            timeout=5,
        ).json()
        wait = __import__("tests.helpers", fromlist=["wait_for"]).wait_for
        wait(
            lambda: (
                requests.get(f"{live_server}/api/jobs/{job['id']}", timeout=5).json()["counts"][
                    "completed"
                ]
                >= 3
            ),
            timeout=30,
        )
        cancelled = requests.post(f"{live_server}/api/jobs/{job['id']}/cancel", timeout=5)
        assert cancelled.status_code == 200
        hits_at_cancel = slow.total_hits
        root = wait_for_job(live_server, job["id"], timeout=10)
        assert root["status"] == "cancelled"
        import time

        time.sleep(1.0)  # a window in which no new fetch may start: a wait for no event
        assert slow.total_hits <= hits_at_cancel + 4  # at most the fetches in flight
        final = requests.get(f"{live_server}/api/jobs/{job['id']}", timeout=5).json()
        assert final["counts"]["pending"] == final["counts"]["running"] == 0
        assert final["counts"]["cancelled"] > 0
