"""A tree's failures are visible from its root (issue 14, points 4 and 5): the
`has_failures` and `root_id` filters, counts of roots for the page's chips, unknown
filters refused, and a failed leaf's own progress."""

from quaero.executors.base import ChildSpec

W = "testhost:1:aaaaaa"


def fail_for_good(manager, job_id, progress=None):
    job = manager.claim(job_id, W)
    if progress is not None:
        manager.write_report(job, [], progress)
    manager.fail(job, W, "boom", None, permanent=True)


def tree_with_failed_children(manager, failed=3, ok=1, payload=None):
    """A completed root whose children partly failed; returns (root_id, child ids)."""
    root = manager.create_root("fanout", payload or {"children": 0}, name="tree")
    claimed = manager.claim(root.id, W)
    children = manager.spawn_children(
        claimed, [ChildSpec("noop", {}, name=f"c{i}") for i in range(failed + ok)]
    )
    ids = list(children)
    for child_id in ids[:failed]:
        fail_for_good(manager, child_id)
    for child_id in ids[failed:]:
        manager.complete(manager.claim(child_id, W), W, None)
    manager.complete(claimed, W, None)
    return root.id, ids


def test_has_failures_lists_roots_with_failed_descendants(client, manager):
    clean = manager.create_root("noop", {}, name="clean")
    root_id, _ = tree_with_failed_children(manager)
    body = client.get("/api/jobs?has_failures=true").get_json()
    assert [j["id"] for j in body["jobs"]] == [root_id] and body["total"] == 1
    assert body["jobs"][0]["status"] == "completed" and body["jobs"][0]["counts"]["failed"] == 3
    body = client.get("/api/jobs?has_failures=false").get_json()
    assert [j["id"] for j in body["jobs"]] == [clean.id]
    assert client.get("/api/jobs?has_failures=maybe").status_code == 400


def test_root_id_and_parent_id_list_a_trees_jobs(client, manager):
    root_id, ids = tree_with_failed_children(manager)
    manager.create_root("noop", {}, name="other tree")
    body = client.get(f"/api/jobs?root_id={root_id}").get_json()
    assert sorted(j["id"] for j in body["jobs"]) == sorted([root_id, *ids])
    body = client.get(f"/api/jobs?root_id={root_id}&status=failed").get_json()
    assert sorted(j["id"] for j in body["jobs"]) == ids[:3] and body["total"] == 3
    body = client.get(f"/api/jobs?parent_id={root_id}&status=failed").get_json()
    assert sorted(j["id"] for j in body["jobs"]) == ids[:3]


def test_unknown_filters_are_a_400_naming_them(client, manager):
    for path in ("/api/jobs", f"/api/jobs/{manager.create_root('noop', {}).id}/children"):
        response = client.get(path + "?colour=red&status=failed")
        assert response.status_code == 400, path
        error = response.get_json()["error"]
        assert "colour" in error["message"] and error["fields"] == {"colour": "unknown filter"}
    job_id = manager.create_root("noop", {}).id
    assert client.get(f"/api/jobs/{job_id}/logs?lvl=info").status_code == 400


def test_stats_count_roots_for_the_chips(client, manager):
    tree_with_failed_children(manager, failed=3, ok=1)
    stats = client.get("/api/stats").get_json()
    assert stats["counts"]["failed"] == 3  # every job, as before
    assert stats["root_counts"] == {
        "pending": 0,
        "running": 0,
        "completed": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert stats["roots_with_failures"] == 1


def test_a_failed_leaf_shows_its_own_progress(client, manager):
    job = manager.create_root("sleep", {"steps": 4}, name="leaf")
    fail_for_good(manager, job.id, progress=0.25)
    body = client.get(f"/api/jobs/{job.id}").get_json()
    assert body["status"] == "failed" and body["counts"]["total"] == 0
    assert body["progress"] == 0.25


def test_a_completed_leaf_is_done(client, manager):
    job = manager.create_root("noop", {})
    manager.complete(manager.claim(job.id, W), W, None)
    assert client.get(f"/api/jobs/{job.id}").get_json()["progress"] == 1.0
