"""quaero.client.Client against a real `run.py serve` on 127.0.0.1: every call, the
typed errors with the API's code, the log tail, wait's timeout and Idempotency-Key."""

from __future__ import annotations

import time

import pytest

from quaero.client import (
    ApiError,
    Client,
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    Unauthorized,
    ValidationError,
    WaitTimeout,
)
from tests.procs import free_port, write_config

pytestmark = pytest.mark.e2e

TOKEN = "client-test-" + "abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `serve` with an API token, for the whole module."""
    from tests.procs import RunPy

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path_factory.mktemp("client"), port, f'[server]\napi_token = "{TOKEN}"'
    )
    proc = RunPy("serve", config).start()
    try:
        proc.wait_healthy(base)
        yield base
    finally:
        proc.stop()


@pytest.fixture
def client(server) -> Client:
    with Client(server, token=TOKEN) as c:
        yield c


def test_submit_get_wait_and_children(client):
    root = client.submit("fanout", {"children": 3, "child_type": "noop"}, name="three")
    assert root["status"] == "pending" and root["name"] == "three"
    done = client.wait(root["id"], timeout=30)
    assert done["status"] == "completed" and done["counts"]["completed"] == 3
    assert client.get(root["id"])["counts"] == done["counts"]
    page = client.children(root["id"], limit=2)
    assert page["total"] == 3 and [job["parent_id"] for job in page["jobs"]] == [root["id"]] * 2
    assert len(client.children(root["id"], status="completed", offset=2)["jobs"]) == 1


def test_submit_takes_a_start_time_and_the_child_failure_policy(client):
    later = client.submit("noop", delay=60, on_child_failure="fail")
    assert later["on_child_failure"] == "fail"
    assert later["run_after"] is not None and later["status"] == "pending"
    at = client.submit("noop", run_at=time.time() + 120)
    assert at["run_after"] > later["run_after"]
    with pytest.raises(ValidationError):
        client.submit("noop", delay=-1)
    for job in (later, at):
        client.cancel(job["id"])


def test_logs_and_the_tail_iterator_follow_a_job_to_its_end(client):
    job = client.submit("sleep", {"seconds": 1.0, "steps": 4})
    lines = list(client.tail(job["id"], poll=0.1, timeout=30))
    assert len(lines) >= 4 and all(line["job_id"] == job["id"] for line in lines)
    assert [line["id"] for line in lines] == sorted({line["id"] for line in lines})
    assert client.get(job["id"])["status"] == "completed"
    assert client.logs(job["id"]) == lines
    assert client.logs(job["id"], after_id=lines[1]["id"], limit=1) == [lines[2]]


def test_wait_times_out_with_the_job_as_it_was(client):
    job = client.submit("sleep", {"seconds": 5})
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.wait(job["id"], timeout=0.5, poll=0.1)
    assert time.monotonic() - started < 3
    assert caught.value.job["id"] == job["id"] and caught.value.job["status"] in (
        "pending",
        "running",
    )
    assert client.cancel(job["id"])["status"] == "cancelled"


def test_cancel_retry_rerun_pause_resume(client):
    job = client.submit("sleep", {"seconds": 0.1, "fail": "permanent"})
    assert client.wait(job["id"], timeout=30)["status"] == "failed"
    with pytest.raises(Conflict) as caught:
        client.cancel(job["id"])
    assert caught.value.code == "conflict" and caught.value.status == 409
    assert client.retry(job["id"])["status"] == "pending"
    assert client.wait(job["id"], timeout=30)["status"] == "failed"
    rerun = client.rerun(job["id"], {"fail": ""})
    assert rerun["id"] != job["id"] and rerun["payload"]["fail"] == ""
    assert client.wait(rerun["id"], timeout=30)["status"] == "completed"
    parent = client.submit("sleep", {"seconds": 5})
    assert client.pause(parent["id"])["id"] == parent["id"]
    assert client.resume(parent["id"])["id"] == parent["id"]
    client.cancel(parent["id"])


def test_errors_are_typed_and_carry_the_api_code_and_fields(client, server):
    with pytest.raises(ValidationError) as caught:
        client.submit("crawler", {"depth": -1})
    error = caught.value
    assert isinstance(error, ApiError) and error.status == 400
    assert error.code == "validation_error" and {"payload.url", "payload.depth"} <= set(
        error.fields
    )
    assert "payload.url" in str(error)
    with pytest.raises(NotFound) as caught:
        client.get(10**9)
    assert caught.value.code == "not_found"
    with pytest.raises(Unauthorized) as caught, Client(server, token="wrong" * 8) as bad:
        bad.get(1)
    assert caught.value.code == "unauthorized"


def test_an_idempotency_key_makes_a_retried_submission_safe(client):
    first = client.submit("noop", {"n": 1}, idempotency_key="client-test-once")
    again = client.submit("noop", {"n": 1}, idempotency_key="client-test-once")
    assert again["id"] == first["id"]
    with pytest.raises(IdempotencyKeyReused) as caught:
        client.submit("noop", {"n": 2}, idempotency_key="client-test-once")
    assert caught.value.status == 422 and caught.value.code == "idempotency_key_reused"
