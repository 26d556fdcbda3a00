"""on_child_failure: "ignore" (the default: the parent completes, failures counted) or
"fail" (the parent fails once a descendant failed for good; the rest is cancelled)."""

import pytest
import requests

from tests.helpers import wait_for_job
from tests.procs import free_port, write_config


def test_the_policy_is_ignore_unless_asked_and_shown(client):
    plain = client.post("/api/jobs", json={"type": "noop"}).get_json()
    assert plain["on_child_failure"] == "ignore"
    strict = client.post("/api/jobs", json={"type": "noop", "on_child_failure": "fail"})
    assert strict.get_json()["on_child_failure"] == "fail"
    bad = client.post("/api/jobs", json={"type": "noop", "on_child_failure": "explode"})
    assert bad.status_code == 400 and "on_child_failure" in bad.get_json()["error"]["fields"]
    listed = client.get("/api/jobs").get_json()["jobs"]
    assert {j["on_child_failure"] for j in listed} == {"ignore", "fail"}


def test_the_crawler_takes_the_policy_in_its_payload(client):
    body = {
        "type": "crawler",
        "payload": {"url": "http://127.0.0.1:9/", "on_child_failure": "fail"},
    }
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["on_child_failure"] == "fail"


FAILING_CHILDREN = {
    "type": "fanout",
    "payload": {
        "children": 30,
        "child_type": "sleep",
        "child_payload": {"seconds": 0.3, "fail": "permanent"},
    },
}


@pytest.fixture
def serve(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs("serve", write_config(tmp_path, port)).wait_healthy(base)
    return base


@pytest.mark.e2e
def test_fail_fails_the_parent_and_cancels_the_rest_of_the_tree(serve):
    body = {**FAILING_CHILDREN, "on_child_failure": "fail"}
    root = requests.post(f"{serve}/api/jobs", json=body, timeout=5).json()
    done = wait_for_job(serve, root["id"], timeout=30)
    assert done["status"] == "failed" and "failed for good" in done["error"]
    counts = done["counts"]
    assert counts["pending"] == counts["running"] == counts["completed"] == 0
    assert counts["failed"] >= 1 and counts["cancelled"] >= 1
    assert counts["failed"] + counts["cancelled"] == 30
    children = requests.get(f"{serve}/api/jobs?root_id={root['id']}&limit=100", timeout=5)
    statuses = {j["status"] for j in children.json()["jobs"] if j["id"] != root["id"]}
    assert statuses == {"failed", "cancelled"}


@pytest.mark.e2e
def test_ignore_completes_the_parent_with_its_failures_counted(serve):
    root = requests.post(f"{serve}/api/jobs", json=FAILING_CHILDREN, timeout=5).json()
    done = wait_for_job(serve, root["id"], timeout=30)
    assert done["status"] == "completed" and done["counts"]["failed"] == 30
