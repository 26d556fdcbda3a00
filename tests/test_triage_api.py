"""The triage API (issue 16, points 1, 2, 4 and 5) on a real server: a whole tree's
descendants, its failures grouped by cause (and across roots), one log for a whole
tree, and the streamed export."""

import csv
import io
import json
import time

import requests

from quaero import triage
from quaero.executors.base import ChildSpec
from tests.test_tree_failures import W

BACKENDS = ["sqlite", "postgresql"]
HTTP_503 = "HTTPError: HTTP 503 for https://s.example/g0"
HTTP_502 = "HTTPError: HTTP 502 for https://s.example/g1?x=1"
TIMEOUT = "Timeout: read timed out after 10 s"


def two_level_tree(manager, name="tree"):
    """root → c0 (→ g0..g4), c1. g0, g1 fail with HTTP errors, g2 with a timeout."""
    root = manager.create_root("fanout", {"children": 0}, name=name)
    claimed_root = manager.claim(root.id, W)
    kids = manager.spawn_children(
        claimed_root,
        [ChildSpec("noop", {"url": f"https://s.example/c{i}"}, name=f"c{i}") for i in range(2)],
    )
    c0 = manager.claim(kids[0], W)
    grand = manager.spawn_children(
        c0, [ChildSpec("noop", {"url": f"https://s.example/g{i}"}, name=f"g{i}") for i in range(5)]
    )
    for job_id, error in zip(grand[:3], [HTTP_503, HTTP_502, TIMEOUT], strict=True):
        manager.fail(manager.claim(job_id, W), W, error, None, permanent=True)
    for i, job_id in enumerate(grand[3:], start=3):
        result = {"url": f"https://s.example/g{i}", "status_code": 200, "title": f"G{i}"}
        manager.complete(manager.claim(job_id, W), W, result | {"depth": 2, "bytes": 10 * i})
    manager.complete(c0, W, None)
    manager.complete(manager.claim(kids[1], W), W, None)
    manager.complete(claimed_root, W, None)
    return root.id, list(kids), list(grand)


def get(base, path, **params):
    return requests.get(base + path, params=params, timeout=10)


def ids(response):
    assert response.status_code == 200, response.text
    return [j["id"] for j in response.json()["jobs"]]


def test_descendants_lists_every_level_with_filters_and_paging(live_server, manager):
    root_id, kids, grand = two_level_tree(manager)
    body = get(live_server, f"/api/jobs/{root_id}/descendants").json()
    assert sorted(j["id"] for j in body["jobs"]) == sorted(kids + grand) and body["total"] == 7
    assert ids(get(live_server, f"/api/jobs/{root_id}/descendants", status="failed")) == grand[:3]
    assert ids(get(live_server, f"/api/jobs/{root_id}/descendants", depth=1)) == kids
    assert ids(get(live_server, f"/api/jobs/{root_id}/descendants", q="timed out")) == [grand[2]]
    assert ids(get(live_server, f"/api/jobs/{root_id}/descendants", q="s.example/g4")) == [grand[4]]
    key = triage.group_key(HTTP_503)
    assert ids(get(live_server, f"/api/jobs/{root_id}/descendants", error_group=key)) == grand[:2]
    assert ids(get(live_server, f"/api/jobs/{kids[0]}/descendants")) == grand
    assert ids(get(live_server, f"/api/jobs/{kids[1]}/descendants")) == []
    page = get(live_server, f"/api/jobs/{root_id}/descendants", limit=3, offset=6).json()
    assert len(page["jobs"]) == 1 and page["total"] == 7
    newest_first = ids(get(live_server, f"/api/jobs/{root_id}/descendants", sort="-finished_at"))
    assert newest_first[0] == kids[1]  # c1 finished last
    assert ids(get(live_server, f"/api/jobs/{root_id}/descendants", sort="-id"))[0] == grand[-1]
    assert len(ids(get(live_server, f"/api/jobs/{root_id}/descendants", sort="-duration"))) == 7


def test_descendants_refuses_unknown_arguments_and_bad_values(live_server, manager):
    root_id, _, _ = two_level_tree(manager)
    for params in ({"colour": "red"}, {"sort": "name"}, {"depth": "x"}, {"status": "odd"}):
        response = get(live_server, f"/api/jobs/{root_id}/descendants", **params)
        assert response.status_code == 400, params
        assert response.json()["error"]["fields"]
    assert get(live_server, "/api/jobs/999999/descendants").status_code == 404


def test_failures_of_a_tree_are_grouped_by_cause_newest_first(live_server, manager):
    root_id, kids, grand = two_level_tree(manager)
    body = get(live_server, f"/api/jobs/{root_id}/failures").json()
    groups = body["groups"]
    assert [g["count"] for g in groups] == [1, 2]  # the timeout failed last
    timeout, http = groups
    assert set(http) == {"key", "message", "count", "example_job_id", "first_at", "last_at"}
    assert http["key"] == triage.group_key(HTTP_502)
    assert http["message"] == "HTTPError: HTTP <n> for <url>"
    assert http["example_job_id"] in grand[:2]
    assert http["first_at"] <= http["last_at"] <= timeout["last_at"]
    assert timeout["message"] == "Timeout: read timed out after <n> s"
    assert get(live_server, f"/api/jobs/{kids[1]}/failures").json() == {"groups": []}
    assert get(live_server, f"/api/jobs/{kids[0]}/failures").json() == body
    assert get(live_server, f"/api/jobs/{root_id}/failures", x=1).status_code == 400


def test_failures_across_roots_filter_by_type_and_since(live_server, manager):
    two_level_tree(manager, "one")
    two_level_tree(manager, "two")
    groups = get(live_server, "/api/failures").json()["groups"]
    assert sorted(g["count"] for g in groups) == [2, 4]
    assert get(live_server, "/api/failures", type="crawler").json() == {"groups": []}
    assert len(get(live_server, "/api/failures", type="noop").json()["groups"]) == 2
    assert get(live_server, "/api/failures", since=time.time() + 60).json() == {"groups": []}
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    assert len(get(live_server, "/api/failures", since=since).json()["groups"]) == 2
    assert get(live_server, "/api/failures", since="yesterday").status_code == 400
    assert get(live_server, "/api/failures", root_id=1).status_code == 400


def test_tree_logs_merge_a_whole_tree_in_time_order_and_tail(live_server, manager):
    root_id, kids, grand = two_level_tree(manager)
    manager.log(grand[4], "info", "last line")
    own = get(live_server, f"/api/jobs/{root_id}/logs").json()["logs"]
    tree = get(live_server, f"/api/jobs/{root_id}/logs", tree=1).json()["logs"]
    assert {line["job_id"] for line in own} == {root_id}
    assert set(grand[:3]) | {root_id} <= {line["job_id"] for line in tree}
    assert [line["id"] for line in tree] == sorted(line["id"] for line in tree)
    assert tree[-1]["message"] == "last line"
    errors = get(live_server, f"/api/jobs/{root_id}/logs", tree=1, level="error").json()["logs"]
    assert [line["job_id"] for line in errors] == grand[:3]
    after = get(live_server, f"/api/jobs/{root_id}/logs", tree=1, after_id=tree[-2]["id"])
    assert [line["message"] for line in after.json()["logs"]] == ["last line"]
    sub = get(live_server, f"/api/jobs/{kids[0]}/logs", tree="true").json()["logs"]
    assert {line["job_id"] for line in sub} <= {kids[0], *grand}
    assert get(live_server, f"/api/jobs/{root_id}/logs", tree="maybe").status_code == 400


def test_export_streams_every_descendant_as_jsonl_and_csv(live_server, manager):
    root_id, kids, grand = two_level_tree(manager)
    response = get(live_server, f"/api/jobs/{root_id}/export", format="jsonl")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [r["id"] for r in rows] == sorted(kids + grand)
    g3 = next(r for r in rows if r["id"] == grand[3])
    assert g3["status"] == "completed" and g3["type"] == "noop" and g3["name"] == "g3"
    assert g3["result"]["title"] == "G3" and g3["error"] is None
    assert next(r for r in rows if r["id"] == grand[2])["error"] == TIMEOUT
    response = get(live_server, f"/api/jobs/{root_id}/export", format="csv")
    assert response.headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert len(table) == 7
    row = next(r for r in table if r["id"] == str(grand[3]))
    assert (row["url"], row["status_code"], row["title"], row["depth"], row["bytes"]) == (
        "https://s.example/g3",
        "200",
        "G3",
        "2",
        "30",
    )
    assert get(live_server, f"/api/jobs/{root_id}/export", format="xml").status_code == 400
    assert get(live_server, "/api/jobs/999999/export").status_code == 404


def test_descendants_pages_are_slices_of_the_whole_list_at_every_offset(client, manager):
    """Every page, near the start or the end of the list (a page nearer the end may be
    read from there), is the same slice of the whole list, with its total."""
    root = manager.claim(manager.create_root("fanout", {"children": 0}, name="open").id, W)
    kids = manager.spawn_children(root, [ChildSpec("noop", {}, name=f"c{i}") for i in range(3)])
    mid = manager.claim(kids[0], W)
    grand = manager.spawn_children(mid, [ChildSpec("noop", {}, name=f"g{i}") for i in range(6)])
    for job_id, error in zip(grand[:2], [HTTP_503, HTTP_502], strict=True):
        manager.fail(manager.claim(job_id, W), W, error, None, permanent=True)
    manager.complete(manager.claim(grand[2], W), W, None)
    manager.complete(manager.claim(kids[1], W), W, None)
    manager.claim(grand[3], W)  # running; grand[4:] and kids[2] stay pending
    root_id = root.id
    filters = [{}, {"status": "failed"}, {"status": "completed"}, {"status": "pending"}]
    filters += [{"status": "running"}, {"depth": 2}, {"error_group": triage.group_key(HTTP_503)}]
    for job_id in (root_id, kids[0]):
        for extra in filters:
            for sort in ("id", "-id", "-finished_at"):
                url = f"/api/jobs/{job_id}/descendants"
                whole = client.get(url, query_string={**extra, "sort": sort, "limit": 100})
                every = [j["id"] for j in whole.get_json()["jobs"]]
                assert whole.get_json()["total"] == len(every)
                for offset in range(len(every) + 2):
                    args = {**extra, "sort": sort, "limit": 2, "offset": offset}
                    body = client.get(url, query_string=args).get_json()
                    assert [j["id"] for j in body["jobs"]] == every[offset : offset + 2], args
                    assert body["total"] == len(every), args
