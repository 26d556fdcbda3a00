"""Politeness is per host across every worker of every process (issue 14, point 2): a
crawl's `delay` is the minimum gap between two requests to the site, measured at the
site, with three `run.py worker` processes crawling it at once."""

from __future__ import annotations

import pytest
import requests

from tests.helpers import wait_for, wait_for_job
from tests.procs import RunPy, free_port, write_config
from tests.sites import TestSite

pytestmark = [pytest.mark.e2e, pytest.mark.long]

DELAY = 0.3


def test_delay_is_the_minimum_gap_between_requests_of_three_worker_processes(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, "[queue]\nnum_workers = 3")
    started = []
    try:
        web = RunPy("web", config).start()
        started.append(web)
        web.wait_healthy(base)
        started += [RunPy("worker", config).start() for _ in range(3)]
        wait_for(
            lambda: requests.get(f"{base}/api/stats", timeout=5).json()["workers_alive"] == 3,
            timeout=30,
        )
        with TestSite(n_pages=15, seed=5) as site:
            response = requests.post(
                f"{base}/api/jobs",
                json={
                    "type": "crawler",
                    "payload": {"url": site.url("/"), "depth": 3, "delay": DELAY},
                },
                timeout=5,
            )
            assert response.status_code == 201, response.text
            root = wait_for_job(base, response.json()["id"], timeout=90)
            times = sorted(at for at, _ in site.requests)
    finally:
        for proc in started:
            proc.stop()
    assert root["status"] == "completed"
    assert len(times) >= 10
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    print(f"{len(times)} requests, smallest gap {min(gaps):.3f}s (delay {DELAY}s)")
    assert min(gaps) >= DELAY - 0.005  # 5 ms for the site's own clock readings
