"""A soak on SQLite: 8 workers whose jobs write progress and logs, the web server
creating jobs and API readers, all at once: no lock errors, no lost update."""

import os
import sqlite3
import threading
import time

import pytest
import requests

from tests.helpers import wait_for
from tests.procs import RunPy, free_port, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.long]

SECONDS = float(os.environ.get("QUAERO_SOAK_SECONDS", "60"))
STEPS = 10


def test_soak_many_writers_no_lock_errors_no_lost_updates(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, "[queue]\nnum_workers = 8")
    serve = RunPy("serve", config).start()
    errors: list[str] = []
    submitted: list[int] = []
    stop = threading.Event()

    def submit():
        session = requests.Session()
        while not stop.is_set():
            r = session.post(
                f"{base}/api/jobs",
                json={"type": "sleep", "payload": {"seconds": 0.05, "steps": STEPS}},
                timeout=10,
            )
            if r.status_code != 201:
                errors.append(f"POST {r.status_code} {r.text[:200]}")
            else:
                submitted.append(r.json()["id"])
            time.sleep(0.01)

    def read():
        session = requests.Session()
        while not stop.is_set():
            for path in ("/api/jobs?limit=50", "/api/stats", "/jobs", "/metrics"):
                r = session.get(base + path, timeout=10)
                if r.status_code != 200:
                    errors.append(f"GET {path} {r.status_code} {r.text[:200]}")
            if submitted:
                r = session.get(f"{base}/api/jobs/{submitted[-1]}/logs", timeout=10)
                if r.status_code != 200:
                    errors.append(f"GET logs {r.status_code}")

    try:
        serve.wait_healthy(base)
        threads = [threading.Thread(target=submit) for _ in range(2)]
        threads += [threading.Thread(target=read) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(SECONDS)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        wait_for(
            lambda: (
                requests.get(f"{base}/api/stats", timeout=5).json()["counts"]["pending"]
                + requests.get(f"{base}/api/stats", timeout=5).json()["counts"]["running"]
                == 0
            ),
            timeout=120,
            interval=0.5,
        )
        output = serve.output()
    finally:
        serve.stop()

    with sqlite3.connect(tmp_path / "data" / "quaero.db") as db:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"))
        logs = db.execute("SELECT COUNT(*) FROM job_logs").fetchone()[0]
        progress = db.execute("SELECT MIN(progress) FROM jobs").fetchone()[0]
    n = len(submitted)
    print(f"\nsoak: {SECONDS:.0f}s, {n} jobs, {logs} log lines, statuses {statuses}")
    assert errors == []
    assert "database is locked" not in output and "Traceback" not in output
    assert n > 100 and statuses == {"completed": n}
    assert logs == n * (STEPS + 1)  # "submitted" + one line per step, none lost
    assert progress == 1.0
