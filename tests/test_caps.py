"""No job type bypasses the caps: demo types are off unless configured, a fan-out
creates only submittable types with validated payloads, and every spawn respects
`[jobs] max_children` and `max_tree_size`, enforced in the job manager."""

import pytest

from quaero import queries
from quaero.models import Job
from quaero.services import build_services
from quaero.web import create_app
from tests.helpers import make_config, stop_worker, wait_for


@pytest.fixture
def capped(tmp_path, request):
    """Services whose [jobs] section is the test's parameter (demo types on)."""
    config = make_config(tmp_path, jobs={"demo_types": True, **getattr(request, "param", {})})
    services = build_services(config)
    yield services
    services.close()


def test_demo_types_cannot_be_submitted_unless_enabled(tmp_path):
    services = build_services(make_config(tmp_path, jobs={"demo_types": False}))
    try:
        client = create_app(services).test_client()
        for type_ in ("noop", "sleep", "fanout"):
            answer = client.post("/api/jobs", json={"type": type_, "payload": {}})
            assert answer.status_code == 400 and "type" in answer.json["error"]["fields"]
        assert client.get("/api/types").json["types"] == ["crawler"]
        enum = client.get("/api/openapi.json").json["components"]["schemas"]
        assert "sleep" not in str(enum)
    finally:
        services.close()


@pytest.mark.parametrize("child_type", ["crawl_page", "no_such_type"])
def test_a_fanout_cannot_create_internal_or_unknown_types(capped, child_type):
    client = create_app(capped).test_client()
    body = {
        "type": "fanout",
        "payload": {
            "children": 5,
            "child_type": child_type,
            "child_payload": {"crawl": {"max_pages": 10**9, "depth": 99}},
        },
    }
    answer = client.post("/api/jobs", json=body)
    assert answer.status_code == 400, answer.json
    assert "payload" in str(answer.json["error"]["fields"])


def test_a_fanouts_child_payload_is_validated_as_that_type(capped):
    client = create_app(capped).test_client()
    body = {
        "type": "fanout",
        "payload": {"child_type": "crawler", "child_payload": {"url": "ftp://x", "depth": 99}},
    }
    assert client.post("/api/jobs", json=body).status_code == 400


@pytest.mark.parametrize("capped", [{"max_children": 20}], indirect=True)
def test_a_job_gets_at_most_max_children(capped):
    from quaero.worker import WorkerService

    worker = WorkerService(capped)
    worker.start()
    try:
        root = capped.manager.create_root("fanout", {"children": 50, "batch": 7})
        done = wait_for(
            lambda: (j := Job.get_by_id(root.id)).status == "completed" and j, timeout=30
        )
    finally:
        stop_worker(worker)
    assert Job.select().where(Job.parent_id == root.id).count() == 20
    assert done.counts["total"] == 20
    cut = [
        int(log.message.split()[0])
        for log in queries.job_logs(root.id)
        if "children not created" in log.message
    ]
    assert sum(cut) == 30  # each refused batch logged with how many it lost


@pytest.mark.parametrize("capped", [{"max_tree_size": 30}], indirect=True)
def test_a_tree_holds_at_most_max_tree_size_jobs(capped):
    """A nested fan-out that would make 1 + 10 + 100 jobs stops at 30."""
    from quaero.worker import WorkerService

    worker = WorkerService(capped)
    worker.start()
    try:
        leaf = {"children": 10, "child_type": "noop"}
        root = capped.manager.create_root(
            "fanout", {"children": 10, "child_type": "fanout", "child_payload": leaf}
        )
        wait_for(lambda: Job.get_by_id(root.id).status == "completed", timeout=30)
    finally:
        stop_worker(worker)
    assert Job.select().where(Job.root_id == root.id).count() == 30
