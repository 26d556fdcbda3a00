"""/metrics (issue 14, point 6): prometheus_client's text format; counters and a
histogram of jobs observed as they finish, kept in the metadata database, so a DELETE
never lowers them and a scrape of the web sees what worker processes finished."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import wait_for, wait_for_job
from tests.procs import RunPy, free_port, write_config

BACKENDS = ["sqlite", "postgresql"]
W = "testhost:1:aaaaaa"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def finished(text: str, type_: str, status: str) -> float:
    key = ("quaero_jobs_finished_total", (("status", status), ("type", type_)))
    return samples(text).get(key, 0.0)


def duration_count(text: str, type_: str) -> float:
    return samples(text).get(("quaero_job_duration_seconds_count", (("type", type_),)), 0.0)


def run_one(manager, type_: str = "noop", outcome: str = "completed"):
    job = manager.create_root(type_, {})
    claimed = manager.claim(job.id, W)
    if outcome == "completed":
        manager.complete(claimed, W, {"ok": True})
    else:
        manager.fail(claimed, W, "boom", None, permanent=True)
    return job


def test_finished_jobs_are_counted_and_a_delete_never_lowers_a_counter(client, manager):
    done = [run_one(manager) for _ in range(3)]
    run_one(manager, outcome="failed")
    cancelled = manager.create_root("noop", {})
    manager.cancel_tree(cancelled.id)
    text = client.get("/metrics").get_data(as_text=True)
    assert finished(text, "noop", "completed") == 3
    assert finished(text, "noop", "failed") == 1
    assert finished(text, "noop", "cancelled") == 1
    assert duration_count(text, "noop") == 4  # the cancelled job never ran

    for job in done:
        assert client.delete(f"/api/jobs/{job.id}").status_code == 200
    after = client.get("/metrics").get_data(as_text=True)
    assert finished(after, "noop", "completed") == 3
    assert duration_count(after, "noop") == 4
    assert samples(after)[("quaero_jobs", (("status", "completed"), ("type", "noop")))] == 0


def test_a_parent_is_counted_when_its_last_child_finishes(client, manager):
    from quaero.executors.base import ChildSpec

    root = manager.create_root("fanout", {})
    parent = manager.claim(root.id, W)
    (child_id,) = manager.spawn_children(parent, [ChildSpec("noop")])
    manager.complete(parent, W, None)
    text = client.get("/metrics").get_data(as_text=True)
    assert finished(text, "fanout", "completed") == 0  # its child still runs
    manager.complete(manager.claim(child_id, W), W, None)
    text = client.get("/metrics").get_data(as_text=True)
    assert finished(text, "fanout", "completed") == 1
    assert finished(text, "noop", "completed") == 1


def test_gauges_and_content_type(client, manager):
    manager.create_root("noop", {})
    response = client.get("/metrics")
    assert response.mimetype == "text/plain"
    values = samples(response.get_data(as_text=True))
    assert values[("quaero_jobs", (("status", "pending"), ("type", "noop")))] == 1
    assert values[("quaero_queue_depth", ())] == 1
    assert values[("quaero_workers_alive", ())] == 0


def test_promtool_accepts_the_metrics(client, manager):
    run_one(manager)
    run_one(manager, outcome="failed")
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing (CI=true): make system-deps installs prometheus")
        pytest.skip("promtool not installed (Debian package prometheus; make system-deps)")
    text = client.get("/metrics").get_data(as_text=True)
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.e2e
def test_a_finish_in_a_worker_process_shows_on_the_web(tmp_path, backend):
    if backend:
        pytest.skip("one store is enough for the process test")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, '[queue]\nworker_type = "process"\nnum_workers = 2')
    web = RunPy("web", config).start()
    worker = RunPy("worker", config).start()
    try:
        web.wait_healthy(base)
        wait_for(
            lambda: requests.get(f"{base}/api/stats", timeout=5).json()["workers_alive"] == 1,
            timeout=30,
        )
        ids = [
            requests.post(f"{base}/api/jobs", json={"type": "noop"}, timeout=5).json()["id"]
            for _ in range(3)
        ]
        for job_id in ids:
            assert wait_for_job(base, job_id, timeout=30)["status"] == "completed"
        text = requests.get(f"{base}/metrics", timeout=5).text
        assert finished(text, "noop", "completed") == 3
        assert duration_count(text, "noop") == 3
    finally:
        web.stop()
        worker.stop()
