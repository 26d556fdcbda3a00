"""The JSON API contract: shapes, validation messages and error statuses.

Uses Flask's test client against a real SQLite store and Huey queue (no worker), and
drives state changes through the manager where a worker would.
"""

import pytest

from quaero.models import Job

BACKENDS = ["sqlite", "postgresql"]  # the same tests on both stores

W = "testhost:1:aaaaaa"


def error_of(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def create(client, **body):
    body.setdefault("type", "noop")
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_returns_the_job_with_location(client):
    response = client.post(
        "/api/jobs",
        json={"type": "sleep", "name": "nap", "payload": {"seconds": 0.1}, "priority": 5},
    )
    assert response.status_code == 201
    job = response.get_json()
    assert response.headers["Location"] == f"/api/jobs/{job['id']}"
    assert job["status"] == "pending" and job["name"] == "nap" and job["priority"] == 5
    assert job["payload"]["seconds"] == 0.1 and job["root_id"] == job["id"]
    assert job["counts"]["total"] == 0 and job["progress"] == 0


def test_crawler_job_is_named_after_its_url(client):
    job = create(client, type="crawler", payload={"url": "http://127.0.0.1:9/"})
    assert job["name"].startswith("http://127.0.0.1:9")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"type": "crawler", "payload": {}}, "payload.url"),
        ({"type": "crawler", "payload": {"url": "ftp://example.org/"}}, "payload.url"),
        ({"type": "crawler", "payload": {"url": "http://x.org/", "depth": -1}}, "payload.depth"),
        ({"type": "noop", "priority": "high"}, "priority"),
        ({"type": "noop", "max_attempts": 0}, "max_attempts"),
        ({"type": "noop", "colour": "red"}, "colour"),
        ({"payload": {}}, "type"),
        ({"type": "sleep", "payload": {"seconds": "long"}}, "payload.seconds"),
    ],
)
def test_bad_fields_are_named(client, body, field):
    error = error_of(client.post("/api/jobs", json=body), 400, "validation_error")
    assert field in error["fields"], error


def test_unknown_type_lists_the_known_ones(client):
    error = error_of(client.post("/api/jobs", json={"type": "nope"}), 400)
    assert "crawler" in error["message"] and "noop" in error["message"]
    assert "crawl_page" not in error["message"]


def test_bad_json_not_json_and_too_large(client):
    error_of(client.post("/api/jobs", data="{nope", content_type="application/json"), 400)
    error_of(client.post("/api/jobs", json=[1, 2]), 400)
    error_of(
        client.post(
            "/api/jobs", data="type=noop", content_type="application/x-www-form-urlencoded"
        ),
        415,
    )
    big = {"type": "noop", "payload": {"x": "a" * 2_000_000}}
    error_of(client.post("/api/jobs", json=big), 413, "too_large")


def test_not_found_and_method_not_allowed_are_json(client):
    error_of(client.get("/api/jobs/999999"), 404, "not_found")
    error_of(client.get("/api/jobs/abc"), 404)
    error_of(client.get("/api/nothing-here"), 404)
    response = client.put("/api/jobs")
    error_of(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_query_arguments_are_validated(client):
    error_of(client.get("/api/jobs?limit=abc"), 400)
    error_of(client.get("/api/jobs?limit=0"), 400)
    error_of(client.get("/api/jobs?status=sleeping"), 400)
    job = create(client)
    error_of(client.get(f"/api/jobs/{job['id']}/logs?level=loud"), 400)


def test_list_roots_filters_and_pages(client, manager):
    ids = [create(client, name=f"n{i}")["id"] for i in range(3)]
    done = manager.claim(ids[0], W)
    manager.complete(done, W, None)
    body = client.get("/api/jobs?limit=2").get_json()
    assert body["total"] == 3 and [j["id"] for j in body["jobs"]] == ids[::-1][:2]
    body = client.get("/api/jobs?status=completed").get_json()
    assert [j["id"] for j in body["jobs"]] == [ids[0]]
    body = client.get("/api/jobs?q=n2").get_json()
    assert [j["id"] for j in body["jobs"]] == [ids[2]]
    body = client.get("/api/jobs?type=sleep").get_json()
    assert body == {"jobs": [], "total": 0, "limit": 50, "offset": 0}


def test_children_logs_cancel_and_delete(client, manager):
    from quaero.executors.base import ChildSpec

    root_id = create(client, type="fanout", payload={"children": 0})["id"]
    root = manager.claim(root_id, W)
    manager.spawn_children(root, [ChildSpec("noop", {}, name=f"c{i}") for i in range(3)])
    manager.log(root_id, "warning", "watch out")
    body = client.get(f"/api/jobs/{root_id}/children?limit=2").get_json()
    assert body["total"] == 3 and len(body["jobs"]) == 2
    assert all(c["parent_id"] == root_id for c in body["jobs"])
    logs = client.get(f"/api/jobs/{root_id}/logs?level=warning").get_json()["logs"]
    assert [line["message"] for line in logs] == ["watch out"]
    error_of(client.delete(f"/api/jobs/{root_id}"), 409, "conflict")
    cancelled = client.post(f"/api/jobs/{root_id}/cancel").get_json()
    assert cancelled["status"] == "cancelled" and cancelled["counts"]["cancelled"] == 3
    error_of(client.post(f"/api/jobs/{root_id}/cancel"), 409)
    assert client.delete(f"/api/jobs/{root_id}").get_json() == {"deleted": 4}
    assert Job.select().count() == 0
    error_of(client.get(f"/api/jobs/{root_id}/children"), 404)


def test_stats_health_and_metrics(client):
    create(client)
    stats = client.get("/api/stats").get_json()
    assert stats["counts"]["pending"] == 1 and stats["queue_depth"] == 1
    assert stats["oldest_pending_age"] >= 0 and stats["workers_alive"] == 0
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["checks"] == {"web": "ok", "database": "ok", "queue": "ok"}
    text = client.get("/metrics").get_data(as_text=True)
    assert 'quaero_jobs{status="pending",type="noop"} 1.0' in text
    assert "quaero_queue_depth 1.0" in text


def test_page_renders_roots_without_javascript(client):
    job = create(client, name="visible-root")
    html = client.get("/jobs").get_data(as_text=True)
    assert "visible-root" in html and f'data-job-id="{job["id"]}"' in html
    assert client.get("/").headers["Location"].endswith("/jobs")
    assert "cdn" not in html.lower()


def test_api_token_is_required_when_set(tmp_path):
    from quaero.services import build_services
    from quaero.web import create_app
    from tests.helpers import make_config

    services = build_services(make_config(tmp_path, server={"api_token": "s3cret"}))
    try:
        client = create_app(services).test_client()
        error_of(client.get("/api/jobs"), 401, "unauthorized")
        error_of(client.get("/api/jobs", headers={"Authorization": "Bearer nope"}), 401)
        ok = client.get("/api/jobs", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/jobs").status_code == 302
        assert client.post("/login", data={"token": "s3cret"}).status_code == 302
        assert client.get("/jobs").status_code == 200
    finally:
        services.close()
