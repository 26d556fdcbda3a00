"""A hostile site cannot stall the crawler (issue 13, points 1-3 and 5; issue 18, point 6).

1. One deadline per page: a site that drips its headers, its body or its robots.txt a
   byte at a time holds a page job no longer than `crawler.timeout` x
   PAGE_DEADLINE_FACTOR; the connection is closed, the worker is free, and a cancel
   closes an in-flight fetch within a second. The drip site runs in this process, on
   127.0.0.1 (tests/hostile.py).
2. Parsing is linear: pathological HTML parses in well under a second per MB of CPU.
3. User regexes run on RE2: a catastrophic-backtracking pattern finishes at once, and a
   pattern RE2 cannot take (a backreference, a lookaround) is a 400 naming the field.
5. robots.txt follows RFC 9309: the longest matching rule wins, `*` and `$` work.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from quaero.config import Config, CrawlerConfig
from quaero.executors import crawler
from quaero.executors.base import JobCancelled
from quaero.executors.urls import link_allowed, page_links, parse_html
from tests.helpers import make_config, wait_for, wait_for_job
from tests.hostile import DripServer
from tests.sites import TestSite

TIMEOUT = 1.0  # crawler.timeout in these tests
FACTOR = 3  # the documented PAGE_DEADLINE_FACTOR
DEADLINE = TIMEOUT * FACTOR
SLACK = 1.5  # scheduling, the watchdog's tick and a loaded 2-core machine


# --- 1. one deadline per page ---------------------------------------------------------


def test_the_page_deadline_factor_is_the_documented_one():
    assert crawler.PAGE_DEADLINE_FACTOR == FACTOR


@pytest.fixture
def drip() -> DripServer:
    with DripServer(interval=TIMEOUT / 2) as server:
        yield server


def limits(**overrides) -> CrawlerConfig:
    return CrawlerConfig(**{"timeout": TIMEOUT, "allow_private_networks": True, **overrides})


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", ["/drip-body", "/drip-headers"])
def test_a_dripping_answer_ends_at_the_deadline_and_is_closed(drip, path):
    started = time.monotonic()
    with pytest.raises(crawler.DeadlineExceeded, match="deadline") as info:
        crawler.fetch(drip.base + path, limits(), 5_000_000)
    elapsed = time.monotonic() - started
    assert DEADLINE - 0.2 <= elapsed <= DEADLINE + SLACK, elapsed
    assert f"{DEADLINE:g} s" in str(info.value)
    wait_for(lambda: drip.hangup_of(path), timeout=SLACK)  # the connection is closed
    assert drip.hangup_of(path) - started <= DEADLINE + SLACK


@pytest.mark.timeout(30)
def test_a_cancel_closes_an_in_flight_fetch_within_a_second(drip):
    cancel = threading.Event()
    deadline = crawler.Deadline(60, cancelled=cancel.is_set)
    threading.Timer(1.0, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(JobCancelled):
        crawler.fetch(drip.base + "/drip-body", limits(timeout=20), 5_000_000, deadline)
    assert time.monotonic() - started <= 1.0 + 1.0
    wait_for(lambda: drip.hangup_of("/drip-body"), timeout=1.0)


@pytest.fixture
def config(tmp_path) -> Config:
    """One worker: a page that held it would stop every other job."""
    return make_config(tmp_path, crawler={"timeout": TIMEOUT}, queue={"num_workers": 1})


def submit(base: str, url: str, **payload) -> int:
    body = {"type": "crawler", "payload": {"url": url, "depth": 0, **payload}}
    response = requests.post(f"{base}/api/jobs", json=body, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def only_child(base: str, root_id: int) -> dict | None:
    jobs = requests.get(f"{base}/api/jobs/{root_id}/children", timeout=5).json()["jobs"]
    return jobs[0] if jobs else None


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("path", "robots"),
    [("/drip-body", False), ("/drip-headers", False), ("/page", True)],
    ids=["body", "headers", "robots.txt"],
)
def test_a_page_job_against_a_drip_site_ends_at_the_deadline(live_server, worker, path, robots):
    with DripServer(interval=TIMEOUT / 2, slow_robots=robots) as drip:
        root = wait_for_job(live_server, submit(live_server, drip.base + path), timeout=30)
        page = only_child(live_server, root["id"])
        assert page["status"] == "failed", page
        assert page["attempts"] == 1  # a deadline is final: a retry would drip again
        assert f"deadline of {DEADLINE:g} s" in page["error"], page["error"]
        if robots:
            assert "robots.txt" in page["error"] and drip.paths() == ["/robots.txt"]
        assert page["duration"] <= DEADLINE + SLACK, page["duration"]
        hung_up = "/robots.txt" if robots else path
        wait_for(lambda: drip.hangup_of(hung_up), timeout=SLACK)
        print(f"{path}: page job {page['duration']:.2f}s (deadline {DEADLINE:g}s)")


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_cancel_frees_the_worker_within_a_second(tmp_path, live_server, worker):
    """The only worker is held by a page that would drip for minutes; cancelling the
    crawl closes the connection within a second and the worker runs the next crawl."""
    with DripServer(interval=0.5) as drip, TestSite(n_pages=3) as site:
        root_id = submit(live_server, drip.base + "/drip-body", respect_robots=False)
        wait_for(lambda: "/drip-body" in drip.paths(), timeout=10)
        time.sleep(0.5)  # well into the body
        cancelled_at = time.monotonic()
        response = requests.post(f"{live_server}/api/jobs/{root_id}/cancel", timeout=5)
        assert response.status_code == 200, response.text
        wait_for(lambda: drip.hangup_of("/drip-body"), timeout=2)
        freed_after = drip.hangup_of("/drip-body") - cancelled_at
        print(f"cancel closed the fetch after {freed_after:.2f}s")
        assert freed_after <= 1.0
        other = wait_for_job(live_server, submit(live_server, site.url("/")), timeout=10)
        assert other["status"] == "completed", other
        assert time.monotonic() - cancelled_at < 10


# --- 2. linear parsing ----------------------------------------------------------------


def _links_mb(size: int) -> str:
    line = '<a href="/p/{}">link {}</a>\n'
    count = size // len(line.format(100000, 100000))
    return "".join(line.format(i, i) for i in range(count))


PATHOLOGICAL = {
    "open <a  x 20,000": ("<a " * 20_000, None),
    "unclosed tags": ("<div><p><b><i><span><table><tr><td>" * 30_000 + "<a href=/end>", ["/end"]),
    "unclosed comment": ("<!--" + "<a href=/in-comment>" * 50_000, []),
    "unclosed attribute": ("<a href='/x' title='" + "y" * 1_000_000, None),
    "huge attribute": ('<a href="/' + "x" * 2_000_000 + '">x</a><a href=/end>', None),
    "many attributes": ("<a " + "h=1 " * 250_000 + "href=/z>", ["/z"]),
    "deep nesting": ("<div>" * 200_000 + "<a href=/deep>", ["/deep"]),
    "lone <": ("<" * 1_000_000 + "<a href=/end>", ["/end"]),
    "unclosed title": ("<title>" + "<a href=/in-title>" * 50_000, []),
    "5 MB of links": (_links_mb(5_000_000), None),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_html_parses_in_well_under_a_second_per_mb(name):
    text, links = PATHOLOGICAL[name]
    megabytes = len(text.encode()) / 1e6
    started = time.thread_time()  # this thread's CPU: other work on the machine aside
    parsed = parse_html(text)
    cpu = time.thread_time() - started
    print(f"{name}: {megabytes:.2f} MB in {cpu:.3f} s CPU ({cpu / megabytes:.3f} s/MB)")
    assert cpu < max(megabytes, 0.05), f"{cpu:.2f}s for {megabytes:.2f} MB"
    if links is not None:
        assert parsed.links == links
    if name == "5 MB of links":
        assert len(parsed.links) == len(text.splitlines())


def test_page_links_of_a_5_mb_page_of_links():
    text = _links_mb(5_000_000)
    started = time.thread_time()
    _, links = page_links(text.encode(), "utf-8", "http://example.com/")
    assert time.thread_time() - started < 5
    assert links[0] == "http://example.com/p/0" and len(links) == len(text.splitlines())


# --- 3. user regexes --------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_a_catastrophic_regex_finishes_at_once():
    link = "http://example.com/" + "a" * 1900 + "!"
    rules = {"start_host": "example.com", "exclude": ["(a+)+$"], "include": ["(x+x+)+y|a"]}
    started = time.perf_counter()
    assert link_allowed(link, **rules)
    assert not link_allowed("http://example.com/" + "a" * 1900, **rules)
    elapsed = time.perf_counter() - started
    print(f"(a+)+$ on a {len(link)}-character link: {elapsed * 1000:.2f} ms")
    assert elapsed < 0.5


@pytest.mark.parametrize(
    ("field", "pattern"),
    [
        ("exclude", r"(a)\1"),
        ("include", r"foo(?=bar)"),
        ("exclude", r"(?<!x)y"),
        ("include", "(unclosed"),
    ],
)
def test_a_pattern_re2_cannot_take_is_a_400_naming_the_field(client, field, pattern):
    body = {"type": "crawler", "payload": {"url": "http://example.com/", field: [pattern]}}
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 400, response.get_json()
    fields = response.get_json()["error"]["fields"]
    assert list(fields) == [f"payload.{field}"], fields
    assert repr(pattern) in fields[f"payload.{field}"]


# --- 5. robots.txt, RFC 9309 ------------------------------------------------------------

ROBOTS = """\
User-agent: *
Disallow: /shop
Allow: /shop/public
Disallow: /*.pdf$
Disallow: /tmp/*/secret

User-agent: quaero
Disallow: /only-for-others
Allow: /only-for-others/but-this
"""


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/shop/cart", True),  # the quaero group applies, not *
        ("/only-for-others/x", False),
        ("/only-for-others/but-this/y", True),
        ("/", True),
    ],
)
def test_robots_txt_longest_match_and_groups(monkeypatch, path, allowed):
    page = crawler.Fetched(
        "http://e.com/robots.txt", 200, "text/plain", None, ROBOTS.encode(), False
    )
    monkeypatch.setattr(crawler, "fetch", lambda *args, **kwargs: page)
    key = f"http://e{abs(hash(path))}.example"
    assert crawler.robots_allows(key + path, 1, limits()) is allowed


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/shop/public/item", True),  # stdlib's first match says no
        ("/shop/cart", False),
        ("/docs/a.pdf", False),  # `*` and `$`: stdlib takes them literally
        ("/docs/a.pdf?download=1", True),
        ("/tmp/x/secret", False),
        ("/tmp/x/public", True),
    ],
)
def test_robots_txt_wildcards_and_end_anchor(monkeypatch, path, allowed):
    text = "\n".join(ROBOTS.splitlines()[:5]) + "\n"  # the * group alone
    page = crawler.Fetched("http://e.com/robots.txt", 200, "text/plain", None, text.encode(), False)
    monkeypatch.setattr(crawler, "fetch", lambda *args, **kwargs: page)
    key = f"http://w{abs(hash(path))}.example"
    assert crawler.robots_allows(key + path, 2, limits()) is allowed
