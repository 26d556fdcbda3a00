"""A page's depth is its shortest link distance from the start page, whatever order the
pages are fetched in (issue 14, point 1): the crawl fetches the page set of
`wget -r -l N`, each page once."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests

from tests.helpers import wait_for_job
from tests.sites import TestSite

pytestmark = pytest.mark.e2e

# "/a" is slow, so "/target" is first found through the fast branch "/b" -> "/c", at
# depth 3, although "/a" links to it at depth 2. "/deep" is 3 links away via "/a".
GRAPH = {
    "/": ["/a", "/b"],
    "/a": ["/target"],
    "/b": ["/c"],
    "/c": ["/target"],
    "/target": ["/deep"],
    "/deep": ["/deeper"],
    "/deeper": ["/deepest"],
    "/deepest": [],
}


@pytest.fixture
def site():
    with TestSite(graph=GRAPH, slow_paths=("/a",), slow_seconds=1.0) as s:
        yield s


def wget_paths(site: TestSite, depth: int, tmp_path) -> set[str]:
    """The paths `wget -r -l depth` fetches from the site (robots.txt aside)."""
    if shutil.which("wget") is None:
        pytest.skip("wget is not installed (make system-deps installs it)")
    assert depth >= 1  # wget's -l 0 means infinite
    site.reset_hits()
    subprocess.run(
        ["wget", "-q", "-r", "-l", str(depth), "-P", str(tmp_path / f"wget{depth}"), site.url("/")],
        check=False,
        timeout=60,
    )
    paths = {path for path in site.hits if path != "/robots.txt"}
    site.reset_hits()
    return paths


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_crawl_fetches_the_page_set_of_wget(live_server, worker, site, depth, tmp_path):
    expected = wget_paths(site, depth, tmp_path)
    response = requests.post(
        f"{live_server}/api/jobs",
        json={"type": "crawler", "payload": {"url": site.url("/"), "depth": depth}},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    root = wait_for_job(live_server, response.json()["id"], timeout=60)
    assert root["status"] == "completed"
    fetched = {path for path in site.hits if path != "/robots.txt"}
    assert fetched == expected
    assert all(site.hits[path] == 1 for path in fetched), site.hits  # never fetched twice
    assert root["counts"]["total"] == len(expected)  # one job per page


def test_a_page_found_again_nearer_is_expanded_to_its_new_depth(
    live_server, worker, site, services
):
    response = requests.post(
        f"{live_server}/api/jobs",
        json={"type": "crawler", "payload": {"url": site.url("/"), "depth": 4}},
        timeout=5,
    )
    root = wait_for_job(live_server, response.json()["id"], timeout=60)
    assert root["status"] == "completed"
    # /target is 2 links away, so /deeper (4) is in and /deepest (5) is not
    fetched = {path for path in site.hits if path != "/robots.txt"}
    assert fetched == set(GRAPH) - {"/deepest"}
    assert all(site.hits[path] == 1 for path in fetched)
    db = services.manager.db
    depths = dict(
        db.execute_sql("SELECT url, depth FROM crawl_pages WHERE root_id = ?", (root["id"],))
    )
    assert depths[site.url("/target")] == 2 and depths[site.url("/deeper")] == 4

    assert requests.delete(f"{live_server}/api/jobs/{root['id']}", timeout=5).status_code == 200
    left = db.execute_sql("SELECT COUNT(*) FROM crawl_pages WHERE root_id = ?", (root["id"],))
    assert left.fetchone()[0] == 0  # the crawl's state goes with its tree
