"""Bulk actions (issue 16, point 3): `POST /api/jobs/bulk` acts on every tree a filter
matches, answers small actions at once and runs large ones as a `bulk` job of its own."""

import pytest
import requests

from quaero import triage
from quaero.models import Job
from tests.helpers import make_config, wait_for, wait_for_job
from tests.test_tree_failures import tree_with_failed_children
from tests.test_triage_api import HTTP_503, TIMEOUT, two_level_tree

BACKENDS = ["sqlite", "postgresql"]
INLINE_LIMIT = 8


@pytest.fixture
def config(tmp_path, backend):
    return make_config(tmp_path, jobs={"bulk_inline_jobs": INLINE_LIMIT}, **backend)


def bulk(base, action, dry_run=False, **filters):
    body = {"action": action, "filter": filters}
    if dry_run:
        body["dry_run"] = True
    return requests.post(f"{base}/api/jobs/bulk", json=body, timeout=30)


def statuses(root_id):
    return {j.id: j.status for j in Job.select().where(Job.root_id == root_id)}


def test_a_dry_run_counts_the_trees_and_jobs_an_action_touches(live_server, manager):
    roots = [tree_with_failed_children(manager, failed=2, ok=1)[0] for _ in range(2)]
    manager.create_root("noop", {}, name="clean")
    answer = bulk(live_server, "retry", dry_run=True, has_failures=True)
    assert answer.status_code == 200
    assert answer.json() == {"action": "retry", "matched": 2, "jobs": 4, "dry_run": True}
    assert all(s != "pending" for r in roots for s in statuses(r).values())  # nothing done
    assert bulk(live_server, "cancel", dry_run=True, status="pending").json()["jobs"] == 1
    assert bulk(live_server, "delete", dry_run=True, status="completed").json()["jobs"] == 8


def test_small_actions_on_roots_answer_at_once_with_counts(live_server, manager):
    failing = [tree_with_failed_children(manager, failed=1, ok=1)[0] for _ in range(2)]
    pending = [manager.create_root("noop", {}, name=f"wait {i}").id for i in range(2)]
    answer = bulk(live_server, "retry", has_failures=True)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "action": "retry",
        "matched": 2,
        "jobs": 2,
        "done": 2,
        "skipped": 0,
    }
    assert all("failed" not in statuses(r).values() for r in failing)
    assert bulk(live_server, "pause", q="wait").json()["done"] == 2
    assert all(Job.get_by_id(i).paused for i in pending)
    assert bulk(live_server, "resume", q="wait").json()["done"] == 2
    answer = bulk(live_server, "cancel", q="wait", type="noop").json()
    assert (answer["matched"], answer["done"]) == (2, 2)
    assert {Job.get_by_id(i).status for i in pending} == {"cancelled"}
    answer = bulk(live_server, "delete", status="cancelled").json()
    assert answer["done"] == 2 and not Job.select().where(Job.id.in_(pending)).exists()
    # an action a tree is in the wrong state for skips it
    assert bulk(live_server, "resume", ids=failing).json() == {
        "action": "resume",
        "matched": 2,
        "jobs": 0,
        "done": 0,
        "skipped": 2,
    }


def test_retry_of_one_error_group_in_a_tree_retries_only_that_cause(live_server, manager):
    root_id, kids, grand = two_level_tree(manager)
    key = triage.group_key(HTTP_503)
    answer = bulk(live_server, "retry", root_id=root_id, error_group=key)
    assert answer.status_code == 200 and answer.json()["jobs"] == 2
    after = statuses(root_id)
    assert [after[g] for g in grand[:3]] == ["pending", "pending", "failed"]
    assert Job.get_by_id(grand[2]).error_group == triage.group_key(TIMEOUT)
    # across every tree, by the group alone
    other_root, _, other = two_level_tree(manager, "other")
    assert bulk(live_server, "retry", error_group=triage.group_key(TIMEOUT)).json()["jobs"] == 2
    assert statuses(other_root)[other[2]] == "pending" and after[grand[0]] == "pending"


def test_bad_bulk_requests_are_400s_naming_the_field(live_server, manager):
    cases = [
        ({"action": "explode", "filter": {"status": "failed"}}, "action"),
        ({"action": "retry", "filter": {}}, "filter"),
        ({"action": "retry", "filter": {"colour": "red"}}, "filter.colour"),
        ({"action": "retry", "filter": {"status": "odd"}}, "filter.status"),
        ({"action": "retry", "filter": {"root_id": "x"}}, "filter.root_id"),
        ({"action": "cancel", "filter": {"error_group": "abc"}}, "filter.error_group"),
        ({"action": "retry", "filter": "all"}, "filter"),
    ]
    for body, field in cases:
        answer = requests.post(f"{live_server}/api/jobs/bulk", json=body, timeout=10)
        assert answer.status_code == 400, body
        assert field in answer.json()["error"]["fields"], (body, answer.json())


def test_large_actions_run_as_a_bulk_job_with_progress(live_server, manager, request):
    roots = [tree_with_failed_children(manager, failed=3, ok=0)[0] for _ in range(4)]
    request.getfixturevalue("worker")  # after the trees exist: they were finished by hand
    answer = bulk(live_server, "retry", has_failures=True)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["matched"] == 4 and body["jobs"] == 12 and body["job_id"]
    assert answer.headers["Location"] == f"/api/jobs/{body['job_id']}"
    job = wait_for_job(live_server, body["job_id"])
    assert job["type"] == "bulk" and job["status"] == "completed", job
    assert job["result"]["done"] == 4 and job["own_progress"] == 1.0
    wait_for(lambda: all(Job.get_by_id(r).n_failed == 0 for r in roots))
    # the bulk type is the server's own: nobody submits it
    refused = requests.post(
        f"{live_server}/api/jobs", json={"type": "bulk", "payload": {}}, timeout=10
    )
    assert refused.status_code == 400
    assert "bulk" not in requests.get(f"{live_server}/api/types", timeout=10).json()["types"]
