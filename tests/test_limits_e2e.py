"""`[types.sleep] max_running = 2` under three worker processes of five threads each
(PostgreSQL + Redis): sampled every 50 ms, never more than two sleep jobs run, the
waiting ones show why, and noop jobs are not held up."""

import threading
import time

import psycopg
import pytest
import requests

from tests.helpers import scale_out_backend, wait_for, wait_for_job
from tests.procs import RunPy, free_port, scale_out_config

pytestmark = [pytest.mark.e2e, pytest.mark.long]

RUNNING_SLEEPS = (
    "SELECT COUNT(*) FROM jobs WHERE type = 'sleep' AND status = 'running' AND outcome IS NULL"
)


def test_max_running_holds_across_three_worker_processes(tmp_path):
    started: list[RunPy] = []
    with scale_out_backend() as backend:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        db_url = backend["database"]["url"]
        config = scale_out_config(  # 3 worker processes below, 5 threads each
            tmp_path, port, backend, "[types.sleep]\nmax_running = 2\n", num_workers=5
        )
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            with psycopg.connect(db_url, autocommit=True) as db:
                while not stop.is_set():
                    samples.append(db.execute(RUNNING_SLEEPS).fetchone()[0])
                    time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            web = RunPy("web", config).start()
            started.append(web)
            web.wait_healthy(base)
            started += [RunPy("worker", config).start() for _ in range(3)]
            stats = f"{base}/api/stats"
            wait_for(lambda: requests.get(stats, timeout=5).json()["workers_alive"] == 3, 30)
            sampler.start()
            submit = f"{base}/api/jobs"
            sleeps = [
                requests.post(
                    submit, json={"type": "sleep", "payload": {"seconds": 0.4}}, timeout=5
                ).json()["id"]
                for _ in range(12)
            ]
            noops = [requests.post(submit, json={"type": "noop"}, timeout=5).json()["id"]]
            reasons = set()

            def some_wait_with_a_reason():
                for job_id in sleeps:
                    job = requests.get(f"{submit}/{job_id}", timeout=5).json()
                    reasons.add(job["waiting_reason"])
                return any(reasons)

            wait_for(some_wait_with_a_reason, timeout=10, interval=0.05)
            noops += [
                requests.post(submit, json={"type": "noop"}, timeout=5).json()["id"]
                for _ in range(10)
            ]
            noop_done = time.monotonic()
            for job_id in noops:
                assert wait_for_job(base, job_id, timeout=10)["status"] == "completed"
            noop_done = time.monotonic() - noop_done
            for job_id in sleeps:
                assert wait_for_job(base, job_id, timeout=60)["status"] == "completed"
        finally:
            stop.set()
            for p in started:
                p.stop()
    print(
        f"\nmax_running 2 under 3x5 threads: {len(samples)} samples, max {max(samples)}; "
        f"11 noops done in {noop_done:.2f}s while sleeps waited"
    )
    assert max(samples) == 2  # the limit was reached, and never passed
    assert any("max_running 2 of type sleep" in (r or "") for r in reasons)
    assert noop_done < 5  # 12 sleeps of 0.4 s two at a time take ~2.4 s at least
