"""Delayed jobs: `run_at` (ISO 8601 or epoch seconds) or `delay` (seconds) on POST
/api/jobs; the job waits as pending with `run_after` shown and starts no earlier."""

import datetime as dt
import time

import pytest
import requests

from tests.helpers import wait_for_job
from tests.procs import free_port, write_config


def epoch(iso):
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_delayed_job_is_pending_with_its_run_after(client):
    before = time.time()
    response = client.post("/api/jobs", json={"type": "noop", "delay": 30})
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    assert job["status"] == "pending"
    assert before + 30 - 0.01 <= epoch(job["run_after"]) <= time.time() + 30
    plain = client.post("/api/jobs", json={"type": "noop"}).get_json()
    assert plain["run_after"] is None


@pytest.mark.parametrize("form", ["epoch", "iso"])
def test_run_at_takes_epoch_seconds_or_iso_8601(client, form):
    at = round(time.time() + 60, 3)
    value = at if form == "epoch" else dt.datetime.fromtimestamp(at, dt.UTC).isoformat()
    job = client.post("/api/jobs", json={"type": "noop", "run_at": value}).get_json()
    assert abs(epoch(job["run_after"]) - at) < 0.002


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delay": -1}, "delay"),
        ({"delay": 10**9}, "delay"),
        ({"run_at": "tomorrow"}, "run_at"),
        ({"run_at": "2026-01-01T10:00:00"}, "run_at"),  # no time zone: ambiguous
        ({"run_at": 1e12, "delay": 1}, "run_at"),
    ],
)
def test_bad_delays_are_named(client, body, field):
    response = client.post("/api/jobs", json={"type": "noop", **body})
    assert response.status_code == 400
    assert field in response.get_json()["error"]["fields"]


@pytest.mark.e2e
def test_delayed_jobs_start_no_earlier_than_asked(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = procs("serve", write_config(tmp_path, port))
    serve.wait_healthy(base)
    now = time.time()
    asked = {
        "delay": {"delay": 1.5},
        "epoch": {"run_at": now + 2.0},
        "iso": {"run_at": dt.datetime.fromtimestamp(now + 2.5, dt.UTC).isoformat()},
    }
    ids = {}
    for form, when in asked.items():
        response = requests.post(f"{base}/api/jobs", json={"type": "noop", **when}, timeout=5)
        assert response.status_code == 201, response.text
        ids[form] = response.json()
    late = {}
    for form, created in ids.items():
        job = wait_for_job(base, created["id"], timeout=20)
        assert job["status"] == "completed"
        late[form] = epoch(job["started_at"]) - epoch(created["run_after"])
    print("\ndelayed jobs started late by", {k: f"{v * 1000:.0f} ms" for k, v in late.items()})
    assert all(0 <= v <= 0.5 for v in late.values()), late


@pytest.mark.parametrize("run_at", [-1, 1e17, "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z"])
def test_run_at_outside_1970_to_a_year_ahead_is_refused(client, run_at):
    response = client.post("/api/jobs", json={"type": "noop", "run_at": run_at})
    assert response.status_code == 400
    assert "run_at" in response.get_json()["error"]["fields"]
