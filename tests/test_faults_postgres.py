"""PostgreSQL goes away under a running crawl (issue 12, point 1): every backend is
terminated, or the server crashes (`pg_ctl stop -m immediate`) and is back 5 s later.

One `web` and two `worker` processes on the test's own PostgreSQL and Redis. While the
database is away the API answers 503, never 500; /healthz is 200 again within 5 s of its
return; the crawl ends with every page fetched into exactly one job, none lost, none
stuck, and no quaero process restarted.
"""

import time

import pytest

from tests.faults import (
    FINAL,
    Monitor,
    crawl,
    get_json,
    record_figures,
    start_stack,
    tree_rows,
    wait_final,
    wait_until,
)
from tests.sites import TestSite

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

DEPTH = 8


@pytest.fixture
def stack(tmp_path, own_pg, own_redis):
    stack = start_stack(tmp_path, own_pg, own_redis)
    yield stack
    stack.stop()


def done_pages(base: str, root_id: int) -> int:
    return get_json(base, f"/api/jobs/{root_id}").get("counts", {}).get("completed", 0)


def crawl_through(stack, site, fault, scenario: str, text: str) -> dict:
    """Start a crawl, run `fault()` once 40 pages are done, and count the outcome."""
    expected = site.expected_urls(DEPTH, include_blocked=True)
    with Monitor(stack.base) as monitor:
        root_id = crawl(stack.base, site.url("/"), DEPTH)
        wait_until(lambda: done_pages(stack.base, root_id) >= 40, 60)
        figures = fault(monitor) or {}
        fault_over = time.monotonic()
        root = wait_final(stack.base, root_id, timeout=120)
        figures["finished_after_s"] = round(time.monotonic() - fault_over, 1)
    rows = tree_rows(stack.db_url, root_id)
    urls = [url for url, _ in rows]
    figures.update(
        pages=len(expected),
        lost=len(expected - set(urls)),
        duplicated=len(urls) - len(set(urls)),
        stuck=sum(1 for _, status in rows if status not in FINAL),
        refetched=sum(n - 1 for path, n in site.hits.items() if path != "/robots.txt"),
        statuses=sorted(monitor.statuses()),
    )
    print(f"\n{figures}")
    assert root["status"] == "completed", root
    assert sorted(set(urls)) == sorted(expected)
    assert figures["lost"] == figures["duplicated"] == figures["stuck"] == 0
    assert all(s == "completed" for url, s in rows if not url.endswith("/missing"))
    assert 500 not in monitor.statuses() and 0 not in monitor.statuses()
    assert stack.alive(), "a quaero process died"
    record_figures(
        scenario,
        text,
        lost=figures["lost"],
        stuck=figures["stuck"],
        run_twice=figures["refetched"],
        in_flight_on_cut_worker=None,
        recover_s=figures["finished_after_s"],
        healthy_after_s=figures["healthy_after_s"],
    )
    return figures


def test_all_backends_terminated_mid_crawl(stack, own_pg):
    def terminate(monitor):
        killed = own_pg.terminate_backends()
        at = time.monotonic()
        assert killed >= 3  # web and both workers had connections
        # every connection of every process died: they are replaced on their next use
        wait_until(lambda: get_json(stack.base, "/api/stats").get("counts"), 5, 0.05)
        healthy = time.monotonic() - at
        return {"terminated": killed, "healthy_after_s": round(healthy, 2)}

    with TestSite(n_pages=600, seed=12, delay=0.05) as site:
        crawl_through(
            stack,
            site,
            terminate,
            "postgres-backends-terminated",
            "every PostgreSQL backend terminated mid-crawl (2 workers)",
        )


def test_postgres_crash_and_restart_mid_crawl(stack, own_pg):
    def crash_and_restart(monitor):
        own_pg.stop("immediate")
        down_at = time.monotonic()
        time.sleep(5)
        during = monitor.statuses(since=down_at + 0.5, until=time.monotonic())
        own_pg.start()
        back_at = time.monotonic()
        wait_until(lambda: get_json(stack.base, "/healthz").get("status") == "ok", 5, 0.05)
        healthy = time.monotonic() - back_at
        assert during == {503}, during  # the API answered, with 503, the whole time
        return {"down_s": round(back_at - down_at, 1), "healthy_after_s": round(healthy, 2)}

    with TestSite(n_pages=600, seed=13, delay=0.05) as site:
        crawl_through(
            stack,
            site,
            crash_and_restart,
            "postgres-crash-restart",
            "PostgreSQL crashes (stop -m immediate) mid-crawl, back 5 s later",
        )
