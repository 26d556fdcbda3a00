"""Unit tests of the crawler's pure helpers, its payload model and the test site."""

from __future__ import annotations

import random

import pytest
import requests
from pydantic import ValidationError

from quaero.config import CrawlerConfig
from quaero.executors.base import REGISTRY, PermanentError, public_types
from quaero.executors.crawler import CrawlPayload, check_address
from quaero.executors.urls import (
    base_scopes,
    cut_fragment,
    host_key,
    is_public_address,
    link_allowed,
    normalize_url,
    page_links,
    parse_content_type,
    parse_html,
    resolve_link,
)
from tests.sites import OFFSITE, START, TestSite, build_graph, link_distances

# --- normalize_url -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com", "http://example.com/"),
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/#", "http://example.com/"),
        ("HTTP://Example.COM/Path", "http://example.com/Path"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com:8080", "http://example.com:8080/"),
        ("http://example.com/a?b=1&a=2#x", "http://example.com/a?b=1&a=2"),
        ("http://user:secret@example.com/a", "http://example.com/a"),
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("  http://example.com/a  ", "http://example.com/a"),
    ],
)
def test_normalize_url_canonical_forms(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("b", "http://example.com/dir/b"),
        ("../c", "http://example.com/c"),
        ("/root", "http://example.com/root"),
        ("?q=1", "http://example.com/dir/page?q=1"),
        ("#section", "http://example.com/dir/page"),
        ("", "http://example.com/dir/page"),
        ("//other.org/x", "http://other.org/x"),
        ("https://other.org", "https://other.org/"),
    ],
)
def test_normalize_url_resolves_relative_links(href: str, expected: str) -> None:
    assert normalize_url(href, base="http://example.com/dir/page#top") == expected


@pytest.mark.parametrize(
    "url",
    [
        "mailto:someone@example.com",
        "javascript:void(0)",
        "ftp://example.com/file",
        "data:text/html,<p>hi</p>",
        "file:///etc/passwd",
        "http://",
        "http://example.com:99999/",
        "not a url",
    ],
)
def test_normalize_url_rejects_non_http(url: str) -> None:
    assert normalize_url(url) is None


@pytest.mark.parametrize(
    "href", ["mailto:a@b.c", "javascript:alert(1)", "ftp://e.com/f", "data:,x", "tel:+123"]
)
def test_normalize_url_rejects_non_http_links_despite_a_base(href: str) -> None:
    assert normalize_url(href, base="http://example.com/page") is None


def test_normalize_url_is_idempotent() -> None:
    once = normalize_url("HTTPS://Example.com:443?x=1#y")
    assert once == "https://example.com/?x=1"
    assert normalize_url(once) == once


# --- link filtering ------------------------------------------------------------------


def test_host_key_includes_non_default_port() -> None:
    assert host_key("http://example.com:8080/a") == "example.com:8080"
    assert host_key("https://example.com/a") == "example.com"


def test_link_allowed_same_host_compares_host_and_port() -> None:
    start = "example.com:8080"
    assert link_allowed("http://example.com:8080/a", start_host=start)
    assert not link_allowed("http://example.com/a", start_host=start)
    assert not link_allowed("http://other.org:8080/a", start_host=start)
    assert link_allowed("http://other.org/a", start_host=start, same_host=False)


def test_link_allowed_include_needs_one_match() -> None:
    rules = {"start_host": "example.com", "include": [r"/docs/", r"\.html$"]}
    assert link_allowed("http://example.com/docs/a", **rules)
    assert link_allowed("http://example.com/b.html", **rules)
    assert not link_allowed("http://example.com/blog/c", **rules)


def test_link_allowed_exclude_must_match_none() -> None:
    rules = {"start_host": "example.com", "exclude": [r"\?", r"/private/"]}
    assert link_allowed("http://example.com/a", **rules)
    assert not link_allowed("http://example.com/a?page=2", **rules)
    assert not link_allowed("http://example.com/private/x", **rules)


def test_link_allowed_exclude_wins_over_include() -> None:
    rules = {"start_host": "example.com", "include": ["/docs/"], "exclude": ["draft"]}
    assert link_allowed("http://example.com/docs/final", **rules)
    assert not link_allowed("http://example.com/docs/draft", **rules)


# --- HTML parsing --------------------------------------------------------------------


def test_parse_html_collects_title_and_links_in_order() -> None:
    html = """<html><head><title>  My
        Page </title></head><body>
        <a href="/a">A</a> <a name="anchor">no href</a> <A HREF='b?x=1&amp;y=2'>B</A>
        <area href="/map"> <a href="">empty</a> <a href="  /spaced  ">s</a>
        <link href="/style.css"> <img src="/i.png">
        </body></html>"""
    parsed = parse_html(html)
    assert parsed.title == "My Page"
    assert parsed.links == ["/a", "b?x=1&y=2", "/map", "/spaced"]
    assert parsed.base is None


@pytest.mark.parametrize(
    ("html", "title", "links"),
    [
        # HTML5, as browsers read it: a title's text runs to </title>, markup included
        ("<title>Unclosed <a href=/x>x", "Unclosed <a href=/x>x", []),
        ("<a href=/one><a href=/two>", None, ["/one", "/two"]),
        ("<p><a href='/q' <b>bold</a></div></span>", None, ["/q"]),
        ("<![foo bar]><a href='/after'>", None, ["/after"]),  # a bogus comment, then a link
        ("<title>First</title><title>Second</title>", "First", []),
        ("<script>var s = '<a href=\"/js\">';</script><a href=/real>", None, ["/real"]),
        ("", None, []),
    ],
)
def test_parse_html_survives_malformed_markup(html: str, title: str | None, links: list) -> None:
    parsed = parse_html(html)
    assert parsed.title == title
    assert parsed.links == links


def test_page_links_normalises_dedupes_and_uses_base_href() -> None:
    body = b"""<html><head><base href="/docs/"><title>T</title></head>
        <a href="a#1">a</a><a href="a#2">again</a><a href="mailto:x@y.z">m</a>
        <a href="http://Other.ORG:80/">o</a><a href="/top">t</a></html>"""
    title, links = page_links(body, None, "http://example.com/index.html")
    assert title == "T"
    assert links == ["http://example.com/docs/a", "http://other.org/", "http://example.com/top"]


def test_page_links_decodes_declared_charset_and_survives_unknown_ones() -> None:
    body = "<title>Caf\u00e9</title>".encode("latin-1")
    assert page_links(body, "iso-8859-1", "http://e.com/")[0] == "Caf\u00e9"
    assert page_links(b"<title>ok</title>", "no-such-charset", "http://e.com/")[0] == "ok"


def test_parse_content_type() -> None:
    assert parse_content_type('text/HTML; charset="UTF-8"') == ("text/html", "UTF-8")
    assert parse_content_type("application/json") == ("application/json", None)
    assert parse_content_type(None) == ("", None)


# --- address guard -------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "224.0.0.1",
        "0.0.0.0",
        "::",
        "fe80::1%eth0",
        "fc00::1",
        "100.64.0.1",
        "240.0.0.1",
        "::ffff:127.0.0.1",
        "not an ip",
    ],
)
def test_is_public_address_refuses_internal_addresses(ip: str) -> None:
    assert is_public_address(ip) is False


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700::1", "172.32.0.1"])
def test_is_public_address_allows_public_addresses(ip: str) -> None:
    assert is_public_address(ip) is True


def test_check_address_refuses_loopback_unless_allowed() -> None:
    with pytest.raises(PermanentError, match=r"refused: 127\.0\.0\.1 is a loopback address"):
        check_address("http://127.0.0.1:8080/", CrawlerConfig())
    check_address("http://127.0.0.1:8080/", CrawlerConfig(allow_private_networks=True))


# --- payload -------------------------------------------------------------------------


def _errors(payload: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        CrawlPayload.model_validate(payload)
    return {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors()}


def test_payload_defaults_and_normalised_url() -> None:
    payload = CrawlPayload.model_validate({"url": "HTTP://Example.com#x"})
    assert payload.url == "http://example.com/"
    assert (payload.depth, payload.max_pages, payload.same_host) == (2, None, True)
    assert (payload.include, payload.exclude, payload.delay) == ([], [], 0.0)
    assert payload.respect_robots is None


def test_payload_requires_url() -> None:
    assert "url" in _errors({"depth": 1})


@pytest.mark.parametrize("url", ["ftp://example.com/", "mailto:a@b.c", "example.com", ""])
def test_payload_refuses_non_http_urls_with_a_clear_message(url: str) -> None:
    errors = _errors({"url": url})
    assert "http:// or https://" in errors["url"]


def test_payload_names_the_bad_regex() -> None:
    errors = _errors({"url": "http://e.com/", "include": ["ok", "(unclosed"]})
    assert list(errors) == ["include"]
    assert "'(unclosed'" in errors["include"]
    assert "exclude" in _errors({"url": "http://e.com/", "exclude": ["[z-a]"]})


@pytest.mark.parametrize(
    ("field", "value"),
    [("depth", -1), ("max_pages", 0), ("delay", -0.5), ("same_host", "maybe"), ("include", "x")],
)
def test_payload_refuses_bad_values_naming_the_field(field: str, value: object) -> None:
    assert field in _errors({"url": "http://e.com/", field: value})


def test_payload_forbids_unknown_fields() -> None:
    assert "max_dept" in _errors({"url": "http://e.com/", "max_dept": 3})


def test_crawler_types_are_registered() -> None:
    assert REGISTRY["crawler"].payload_model is CrawlPayload
    assert "crawler" in public_types(demo=False)
    assert "crawl_page" in REGISTRY
    assert "crawl_page" not in public_types(demo=True)


# --- the test site -------------------------------------------------------------------


def test_build_graph_is_deterministic_and_seeded() -> None:
    assert build_graph(20, seed=3) == build_graph(20, seed=3)
    assert build_graph(20, seed=3) != build_graph(20, seed=4)


def test_expected_urls_of_a_tiny_site() -> None:
    site = TestSite(n_pages=2, seed=1)
    assert site.expected_paths(0) == {"/"}
    assert site.expected_paths(1) == {"/", "/p/1", "/slow"}
    assert site.expected_paths(2) == {"/", "/p/1", "/slow", "/missing"}
    assert site.expected_paths(9) == site.expected_paths(2)
    assert site.expected_paths(2, include_blocked=True) == site.expected_paths(2) | {
        "/private/secret"
    }
    with site:
        assert site.expected_urls(0) == {site.url("/")}
        assert site.expected_urls(0) == {normalize_url(site.base_url)}
        assert site.expected_pages(1) == {site.url(p) for p in ("/", "/p/1", "/slow")}


def test_expected_set_does_not_depend_on_crawl_order() -> None:
    """Any order of running pages, first spawn wins, finds exactly the expected pages."""
    site = TestSite(n_pages=40, seed=7)
    for depth in range(5):
        for trial in range(25):
            rng = random.Random(trial)
            depth_of, pending, fetched = {START: 0}, [START], set()
            while pending:
                path = pending.pop(rng.randrange(len(pending)))
                fetched.add(path)
                for target in site.graph[path] if depth_of[path] < depth else []:
                    if target not in depth_of:
                        depth_of[target] = depth_of[path] + 1
                        pending.append(target)
            assert fetched == site.expected_paths(depth, include_blocked=True)


def test_site_serves_the_graph_robots_and_special_pages() -> None:
    with TestSite(n_pages=10, seed=2) as site:
        response = requests.get(site.url("/"), timeout=5)
        assert response.status_code == 200
        title, links = page_links(response.content, "utf-8", site.url("/"))
        assert title == "Home"
        on_site = {link for link in links if link.startswith(site.base_url)}
        assert on_site == {site.url(path) for path in site.graph["/"]}
        assert OFFSITE in links
        assert "Disallow: /private/" in requests.get(site.url("/robots.txt"), timeout=5).text
        assert requests.get(site.url("/missing"), timeout=5).status_code == 404
        assert site.hits == {"/": 1, "/robots.txt": 1, "/missing": 1}
        assert site.total_hits == 3
        assert site.fetched_urls() == {site.url("/"), site.url("/missing")}


def test_every_page_link_spelling_resolves_to_the_graph() -> None:
    with TestSite(n_pages=12, seed=5) as site:
        for path in [p for p in site.graph if p == "/" or p.startswith("/p/")]:
            html = requests.get(site.url(path), timeout=5).content
            _, links = page_links(html, "utf-8", site.url(path))
            on_site = {link for link in links if link.startswith(site.base_url)}
            # "#top" and "" resolve to the page itself; everything else is a graph link.
            assert on_site - {site.url(path)} == {site.url(t) for t in site.graph[path]} - {
                site.url(path)
            }
        assert link_distances(site.graph)[START] == 0


def test_cached_link_resolution_equals_normalize_url() -> None:
    """page_links resolves each spelling once and caches it by the base's origin or
    folder; on every odd link shape that gives exactly what normalize_url gives."""
    rng = random.Random(17)
    bases = [
        "http://h/",
        "http://h/a/b.html",
        "http://h:8080/a/b/c?x=1/2",
        "https://h/a/b;p",
        "http://[::1]:81/x/y/z.html?q",
    ]
    pieces = ["", "/", "//", "..", ".", "a", "b.html", "?q", "?", ";p", "http:", "HTTP://",
              "//o.example", "x/../y", "#f", ":", "%2F", "\\", " ", "./", "\t",
              "\x00", "/a.b", "/.w", "/a?x", "é"]  # fmt: skip
    for _ in range(20_000):
        href = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))).strip()
        base = rng.choice(bases)
        root, folder = base_scopes(base)
        resolved = resolve_link(cut_fragment(href), base, root, folder)
        assert resolved == normalize_url(href, base), (href, base)
