"""Clock skew between workers (issue 19, point 1): one clock, the database's.

Three worker processes on the test's own PostgreSQL and Redis, one of them 60 s ahead
and one 60 s behind (`QUAERO_CLOCK_SKEW_SECONDS`, quaero's test seam: libfaketime makes
Python's `time.sleep` fail with EINVAL, see docs/faults.md). Over a crawl and a fan-out
no job is taken from a live worker and none runs twice; a retry starts after the
back-off it logged (±1 s of real time); every time stored is the database's; and
/api/stats shows each worker's measured skew.
"""

import time

import psycopg
import pytest
import requests

from tests.faults import (
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

SKEWS = (0.0, 60.0, -60.0)
DEPTH = 6


@pytest.fixture
def stack(tmp_path, own_pg, own_redis):
    envs = [{"QUAERO_CLOCK_SKEW_SECONDS": str(skew)} for skew in SKEWS]
    # back-offs of 1-3 s, long enough to see a start that is early or late
    settings = "[jobs]\nretry_base_seconds = 2"
    stack = start_stack(tmp_path, own_pg, own_redis, workers=3, settings=settings, envs=envs)
    yield stack
    stack.stop()


def submit(base, type_, payload, **extra):
    answer = requests.post(
        f"{base}/api/jobs", json={"type": type_, "payload": payload, **extra}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_skewed_workers_share_the_databases_clock(stack):
    started = time.time()
    # each worker shows the skew it measured against the database's clock
    by_pid = {w.proc.pid: skew for w, skew in zip(stack.workers, SKEWS, strict=True)}

    def skews():
        workers = get_json(stack.base, "/api/stats").get("workers", [])
        seen = {w["pid"]: w.get("clock_skew") for w in workers}
        return seen if len(seen) == 3 and None not in seen.values() else None

    with TestSite(n_pages=300, seed=19, delay=0.02) as site:
        crawl_id = crawl(stack.base, site.url("/"), DEPTH)
        fanout_id = submit(
            stack.base,
            "fanout",
            {
                "children": 150,
                "batch": 10,
                "child_type": "sleep",
                "child_payload": {"seconds": 0.3},
            },
        )
        # retries: each fails its first attempt and logs the back-off it waits; a high
        # priority, so that the second attempt does not queue behind the fan-out
        failing = {"seconds": 0, "fail": "transient", "fail_attempts": 1}
        retry_ids = [submit(stack.base, "sleep", failing, priority=10) for _ in range(6)]
        roots = [wait_final(stack.base, i, 120) for i in [crawl_id, fanout_id, *retry_ids]]
        expected = site.expected_urls(DEPTH, include_blocked=True)
        hits = dict(site.hits)
    finished = time.time()
    assert [r["status"] for r in roots] == ["completed"] * len(roots), roots

    rows = tree_rows(stack.db_url, crawl_id)
    urls = [url for url, _ in rows]
    with psycopg.connect(stack.db_url) as db:
        attempts = db.execute(
            "SELECT id, attempts FROM jobs WHERE attempts != 1 AND id != ALL(%s)", (retry_ids,)
        ).fetchall()
        taken = db.execute(
            "SELECT COUNT(*) FROM job_logs WHERE message LIKE '%%lost%%'"
        ).fetchone()[0]
        # every time written is the database's: within the test's run, in order
        times = db.execute(
            "SELECT MIN(created_at), MAX(COALESCE(finished_at, 0)), "
            # processes read the database's clock to within their offsets' error (ms)
            "COUNT(*) FILTER (WHERE started_at < created_at - 0.1"
            " OR finished_at < started_at - 0.1) "
            "FROM jobs"
        ).fetchone()
        log_times = db.execute("SELECT MIN(created_at), MAX(created_at) FROM job_logs").fetchone()
        retries = db.execute(
            "SELECT j.id, j.started_at, l.created_at, l.message FROM jobs j JOIN job_logs l"
            " ON l.job_id = j.id AND l.message LIKE 'attempt 1/%%retrying in%%'"
            " WHERE j.id = ANY(%s)",
            (retry_ids,),
        ).fetchall()
    late = []
    for _job_id, second_start, failed_at, message in retries:
        promised = float(message.rsplit("retrying in ", 1)[1].rstrip("s"))
        late.append(round(second_start - failed_at - promised, 2))
    children = get_json(stack.base, f"/api/jobs/{fanout_id}")["counts"]
    figures = {
        "lost": len(expected - set(urls)),
        "stuck": 0,
        "run_twice": len(attempts) + sum(n - 1 for p, n in hits.items() if p != "/robots.txt"),
        "taken_from_live": taken,
        "in_flight_on_cut_worker": 0,
        "retry_start_error_s": max(abs(x) for x in late) if late else None,
        "recover_s": None,
    }
    print(f"\n{figures}")
    assert sorted(set(urls)) == sorted(expected) and len(urls) == len(set(urls))
    assert children["total"] == children["completed"] == 150
    assert taken == 0 and attempts == [], attempts
    assert all(n == 1 for p, n in hits.items() if p != "/robots.txt")
    assert len(retries) == len(retry_ids)
    assert all(abs(x) <= 1.0 for x in late), late
    assert started - 1 <= times[0] and times[1] <= finished + 1, (started, finished, times)
    assert times[2] == 0
    assert started - 1 <= log_times[0] and log_times[1] <= finished + 1, log_times
    seen = wait_until(skews, 5)
    for pid, skew in by_pid.items():
        assert abs(seen[pid] - skew) < 1, seen
    figures["measured_skew_s"] = sorted(round(s, 2) for s in seen.values())
    record_figures(
        "clock-skew",
        "three workers, clocks +60 s, -60 s and right, over a crawl, a fan-out and retries",
        **figures,
    )
