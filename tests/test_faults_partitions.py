"""Network partitions (issue 19, point 2): each worker reaches PostgreSQL and Redis
through a TCP proxy of the test's own (tests/netproxy.py), which cuts, black-holes or
slows its traffic during a crawl with 3 workers and a short lease.

Every scenario ends with the crawl complete: every page of the site in exactly one job
(0 lost, 0 duplicated), none stuck, and pages fetched twice no more than the jobs that
were in flight on the cut worker(s).
"""

from __future__ import annotations

import re
import time
from contextlib import ExitStack
from dataclasses import dataclass

import psycopg
import pytest

from tests.faults import (
    FINAL,
    crawl,
    get_json,
    record_figures,
    tree_rows,
    wait_final,
    wait_until,
)
from tests.netproxy import Proxy
from tests.procs import RunPy, free_port, write_config
from tests.sites import TestSite

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

LEASE = 4.0
DEPTH = 8
SETTINGS = """
[queue]
backend = "redis"
url = "{redis}"
num_workers = 4
[database]
url = "{pg}"
max_connections = 12
[jobs]
lease_seconds = {lease}
reaper_interval = 0.5
retry_base_seconds = 0.2
"""


@dataclass
class Node:
    """A worker process and its two proxies."""

    proc: RunPy
    pg: Proxy
    redis: Proxy

    @property
    def pid(self) -> int:
        return self.proc.proc.pid


@dataclass
class Cluster:
    base: str
    db_url: str
    web: RunPy
    nodes: list[Node]

    def worker_id(self, node: Node) -> str:
        with psycopg.connect(self.db_url) as db:
            return db.execute(
                "SELECT id FROM workers WHERE pid = %s AND stopped_at IS NULL", (node.pid,)
            ).fetchone()[0]

    def in_flight(self, worker_id: str) -> set[int]:
        """Jobs whose own work a worker is executing now."""
        with psycopg.connect(self.db_url) as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status = 'running' AND outcome IS NULL"
                " AND worker_id = %s",
                (worker_id,),
            ).fetchall()
        return {job_id for (job_id,) in rows}


def start_cluster(stack: ExitStack, tmp_path, pg, redis, lease: float = LEASE) -> Cluster:
    port = free_port()
    text = SETTINGS.format(redis=redis.url, pg=pg.url, lease=lease)
    config = write_config(tmp_path, port, text)
    base = f"http://127.0.0.1:{port}"
    web = RunPy("web", config).start()
    stack.callback(web.stop)
    web.wait_healthy(base)
    nodes = []
    for i in range(3):
        folder = tmp_path / f"w{i}"
        folder.mkdir()
        pg_proxy = Proxy(pg.port).start()
        redis_proxy = Proxy(redis.port).start()
        stack.callback(pg_proxy.stop)
        stack.callback(redis_proxy.stop)
        text = SETTINGS.format(
            redis=redis_proxy.url(redis.url), pg=pg_proxy.url(pg.url), lease=lease
        )
        proc = RunPy("worker", write_config(folder, free_port(), text)).start()
        stack.callback(proc.stop)  # after its output is saved (callbacks run last first)
        stack.callback(lambda p=proc, f=folder: (f / "worker.log").write_text(p.output()))
        nodes.append(Node(proc, pg_proxy, redis_proxy))
    wait_until(lambda: get_json(base, "/api/stats").get("workers_alive") == 3, 30)
    return Cluster(base, pg.url, web, nodes)


@pytest.fixture
def cluster(tmp_path, own_pg, own_redis, request):
    lease = getattr(request, "param", LEASE)
    with ExitStack() as stack:
        yield start_cluster(stack, tmp_path, own_pg, own_redis, lease)


def done_pages(base: str, root_id: int) -> int:
    return get_json(base, f"/api/jobs/{root_id}").get("counts", {}).get("completed", 0)


def run_scenario(cluster: Cluster, name: str, fault_text: str, fault, seed: int) -> dict:
    """A crawl; `fault(cluster)` runs once 30 pages are done and returns its figures
    (with `in_flight`, the jobs the cut worker(s) held, and `healed_at`, monotonic)."""
    with TestSite(n_pages=300, seed=seed, delay=0.3) as site:
        expected = site.expected_urls(DEPTH, include_blocked=True)
        root_id = crawl(cluster.base, site.url("/"), DEPTH)
        wait_until(lambda: done_pages(cluster.base, root_id) >= 30, 60)
        figures = fault(cluster)
        root = wait_final(cluster.base, root_id, timeout=120)
        figures["recover_s"] = round(time.monotonic() - figures.pop("healed_at"), 1)
        hits = dict(site.hits)
    rows = tree_rows(cluster.db_url, root_id)
    urls = [url for url, _ in rows]
    figures.update(
        pages=len(expected),
        lost=len(expected - set(urls)),
        duplicated=len(urls) - len(set(urls)),
        stuck=sum(1 for _, status in rows if status not in FINAL),
        run_twice=sum(n - 1 for path, n in hits.items() if path != "/robots.txt"),
    )
    print(f"\n{name}: {figures}")
    record_figures(name, fault_text, **figures)  # before the checks: failures show too
    assert root["status"] == "completed", root
    assert sorted(set(urls)) == sorted(expected)
    assert figures["lost"] == figures["duplicated"] == figures["stuck"] == 0
    assert root["counts"]["total"] == len(expected)  # exact child counts
    assert all(s == "completed" for url, s in rows if not url.endswith("/missing"))
    assert figures["run_twice"] <= figures["in_flight_on_cut_worker"], figures
    assert all(n.proc.proc.poll() is None for n in cluster.nodes), "a worker died"
    return figures


def jobs_done(cluster: Cluster, node: Node) -> int:
    workers = get_json(cluster.base, "/api/stats").get("workers", [])
    return next((w["jobs_done"] for w in workers if w["pid"] == node.pid), -1)


def test_a_worker_cut_from_postgres_for_two_leases(cluster):
    """Its jobs run elsewhere; back, its stale attempts write nothing, and it works on."""
    node = cluster.nodes[0]

    def fault(cluster):
        worker_id = cluster.worker_id(node)
        node.pg.set("cut")
        held = cluster.in_flight(worker_id)
        cut_at = time.monotonic()
        # every job it held is taken over by another worker (or finished by it)
        wait_until(lambda: not (held & cluster.in_flight(worker_id)), 3 * LEASE)
        taken_over = time.monotonic() - cut_at
        time.sleep(max(0.0, 2 * LEASE - (time.monotonic() - cut_at)))
        node.pg.set("pass")
        healed_at = time.monotonic()
        before = jobs_done(cluster, node)
        # it takes new work again (its heartbeat reports more jobs done)
        wait_until(lambda: jobs_done(cluster, node) > before + len(held), 30)
        with psycopg.connect(cluster.db_url) as db:
            # nothing of a stale attempt was written after the takeover: no job holds a
            # lease of this worker's older epochs, and its stale outcomes were dropped
            stale = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE id = ANY(%s) AND worker_id = %s"
                " AND status = 'running' AND attempts = 1",
                (list(held), worker_id),
            ).fetchone()[0]
        assert stale == 0
        return {
            "in_flight_on_cut_worker": len(held),
            "taken_over_s": round(taken_over, 1),
            "healed_at": healed_at,
        }

    figures = run_scenario(
        cluster,
        "partition-postgres-one-worker",
        f"one worker cut from PostgreSQL (reset) for 2 × lease ({2 * LEASE:g} s)",
        fault,
        seed=21,
    )
    out = node.proc.output()
    # its stale attempts were fenced: a write refused, or the attempt told by its context
    # (which reads as cancelled once the lease is gone) and stopped before writing
    refused = out.count("no longer held") + out.count("no longer holds")
    stopped = len(re.findall(r"job \d+ stopped: ", out))
    assert figures["in_flight_on_cut_worker"] == 0 or refused + stopped > 0, out[-3000:]


def test_a_worker_black_holed_from_redis(cluster):
    """Silence, no errors: it notices within its socket timeout, and nothing is lost."""
    node = cluster.nodes[1]

    def fault(cluster):
        worker_id = cluster.worker_id(node)
        held = cluster.in_flight(worker_id)
        node.redis.set("blackhole")
        cut_at = time.monotonic()
        wait_until(lambda: "queue unavailable" in node.proc.output(), 30, 0.1)
        noticed = time.monotonic() - cut_at
        time.sleep(max(0.0, 15 - noticed))
        node.redis.set("pass")
        return {
            "in_flight_on_cut_worker": len(held),
            "noticed_after_s": round(noticed, 1),
            "healed_at": time.monotonic(),
        }

    figures = run_scenario(
        cluster,
        "partition-redis-blackhole-one-worker",
        "one worker black-holed from Redis for 15 s (bytes dropped, no errors)",
        fault,
        seed=22,
    )
    assert figures["noticed_after_s"] <= 12


def test_all_workers_cut_from_redis_for_30_seconds(cluster):
    """The queue is rebuilt from `jobs` (outboxes, the orphan sweep); the crawl ends."""

    def fault(cluster):
        ids = [cluster.worker_id(n) for n in cluster.nodes]
        held = set().union(*(cluster.in_flight(w) for w in ids))
        for node in cluster.nodes:
            node.redis.set("cut")
        time.sleep(30)
        for node in cluster.nodes:
            node.redis.set("pass")
        return {"in_flight_on_cut_worker": len(held), "healed_at": time.monotonic()}

    run_scenario(
        cluster,
        "partition-redis-all-workers",
        "every worker cut from Redis (reset) for 30 s",
        fault,
        seed=23,
    )


@pytest.mark.xfail(
    reason="open: at 500 ms a round trip a running job's row is often locked by a slow "
    "transaction (its own spawn holds it, and its descendants' finishes lock it for their "
    "last message); the heartbeat skips locked rows (SKIP LOCKED) rather than queue "
    "behind them, and a lease can lapse (2-4 pages fetched twice). Next step: renewal "
    "without the jobs row (the executing ids on the worker's own row, which the reaper consults)",
    strict=False,
)
@pytest.mark.parametrize("cluster", [10.0], indirect=True)
def test_postgres_slowed_to_half_a_second_per_round_trip(cluster):
    """Leases are renewed in time (the heartbeat has its own thread and connection):
    no job is taken from a live worker, none runs twice."""

    def fault(cluster):
        for node in cluster.nodes:
            node.pg.set("slow", latency=0.5)
        time.sleep(30)
        for node in cluster.nodes:
            node.pg.set("pass")
        return {"in_flight_on_cut_worker": 0, "healed_at": time.monotonic()}

    run_scenario(
        cluster,
        "postgres-slow-500ms",
        "PostgreSQL 500 ms slower per round trip for every worker, 30 s (lease 10 s)",
        fault,
        seed=24,
    )
    with psycopg.connect(cluster.db_url) as db:
        taken = db.execute(
            "SELECT COUNT(*) FROM job_logs WHERE message LIKE '%%lost the job%%'"
        ).fetchone()[0]
    assert taken == 0


def test_all_workers_cut_from_postgres_for_two_leases(cluster):
    """The database is away for every worker longer than a lease (issue 12's known
    issue): when it is back, the workers renew their leases before any reaper judges
    them, so no job is taken from a live worker and none runs twice."""

    def fault(cluster):
        for node in cluster.nodes:
            node.pg.set("cut")
        time.sleep(2 * LEASE)
        for node in cluster.nodes:
            node.pg.set("pass")
        return {"in_flight_on_cut_worker": 0, "healed_at": time.monotonic()}

    run_scenario(
        cluster,
        "partition-postgres-all-workers",
        f"every worker cut from PostgreSQL (reset) for 2 × lease ({2 * LEASE:g} s)",
        fault,
        seed=25,
    )
