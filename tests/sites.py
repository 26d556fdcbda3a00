"""A generated test web site on 127.0.0.1 for the crawl tests, with exact expectations.

`build_graph(n_pages, seed)` is a pure function: the site serves it, and
`TestSite.expected_urls(depth)` walks the same graph breadth-first, so a test knows the
exact set of URLs a correct crawler fetches (wget `-r -l N`: depth 0 = the start page).

The graph is layered so that the expected set does not depend on the order in which
parallel workers run pages: a forward link only goes one layer deeper (a page's depth is
then the same whichever parent finds it first), and every backward link points at a
page on *every* path to it (the start page, an ancestor, the page itself), which the
crawl has therefore already found.

Pages: "/" (the start page), "/p/1" .. "/p/{n-1}", "/slow" (sleeps `slow_seconds`),
"/missing" (404), "/private/secret" (disallowed by robots.txt); or a `graph` of the
test's own, whose `slow_paths` sleep. Not linked from the
graph, for direct tests: "/redirect" (302 to "/"), "/redirect-loop" (302 to itself),
"/big" (`big_bytes` of HTML) and "/text" (text/plain that looks like HTML).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

START = "/"
SLOW = "/slow"
MISSING = "/missing"
PRIVATE = "/private/secret"
ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n"
OFFSITE = "http://offsite.invalid/x"
JUNK_LINKS = (OFFSITE, "mailto:someone@example.com", "javascript:void(0)", "#top", "")


def page_path(i: int) -> str:
    """The path of page `i`: "/" for 0, "/p/<i>" otherwise."""
    return START if i == 0 else f"/p/{i}"


def build_graph(n_pages: int, seed: int = 0) -> dict[str, list[str]]:
    """Each page's outgoing on-site link paths, in order and with duplicates."""
    rng = random.Random(seed)
    layer = {0: 0}
    parents: dict[int, list[int]] = {0: []}
    for i in range(1, n_pages):
        tree_parent = rng.randrange(i)
        layer[i] = layer[tree_parent] + 1
        parents[i] = [tree_parent]
    links: dict[int, list[int]] = {i: [] for i in range(n_pages)}
    for i in range(1, n_pages):
        links[parents[i][0]].append(i)
    for i in range(n_pages):  # cross links, one layer deeper only
        deeper = [j for j in range(n_pages) if layer[j] == layer[i] + 1 and i not in parents[j]]
        for j in rng.sample(deeper, min(len(deeper), rng.randint(0, 2))):
            links[i].append(j)
            parents[j].append(i)
    dominators: dict[int, set[int]] = {}
    for i in sorted(range(n_pages), key=lambda k: layer[k]):
        common = set.intersection(*(dominators[p] for p in parents[i])) if parents[i] else set()
        dominators[i] = common | {i}
    for i in range(n_pages):  # cycles: back to a page on every path here (or to itself)
        links[i].append(rng.choice(sorted(dominators[i])))
        if links[i]:
            links[i].append(rng.choice(links[i]))  # the same link twice on one page
    graph = {page_path(i): [page_path(j) for j in links[i]] for i in range(n_pages)}
    first = page_path(1) if n_pages > 1 else START
    graph[START].append(SLOW)
    graph[first] += [MISSING, PRIVATE]
    graph.update({SLOW: [START], MISSING: [], PRIVATE: []})
    return graph


def link_distances(graph: dict[str, list[str]]) -> dict[str, int]:
    """Breadth-first link distance of every reachable path from the start page."""
    distance = {START: 0}
    queue = deque([START])
    while queue:
        path = queue.popleft()
        for target in graph.get(path, []):
            if target not in distance:
                distance[target] = distance[path] + 1
                queue.append(target)
    return distance


def href_for(source: str, target: str, index: int, base_url: str) -> str:
    """One of several spellings of a link from `source` to `target`, chosen by `index`."""
    forms = [
        target,  # absolute path
        base_url + target,  # absolute URL
        target + "#section-" + str(index),  # with a fragment
        "HTTP" + base_url[len("http") :] + target,  # upper-case scheme
    ]
    if target.startswith("/p/"):  # relative to the source's folder
        forms.append(target[len("/p/") :] if source.startswith("/p/") else target.lstrip("/"))
        forms.append("../" + target.lstrip("/") if source.startswith("/p/") else target)
    return forms[index % len(forms)]


class QuietServer(ThreadingHTTPServer):
    """Ignores clients that hang up mid-response (a crawler killed by a chaos test)."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class TestSite:
    """A ThreadingHTTPServer on 127.0.0.1 (ephemeral port) serving a generated link graph."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        n_pages: int = 30,
        seed: int = 0,
        delay: float = 0.0,
        slow_seconds: float = 0.5,
        big_bytes: int = 2_000_000,
        graph: dict[str, list[str]] | None = None,
        slow_paths: tuple[str, ...] = (SLOW,),
    ) -> None:
        self.n_pages = n_pages
        self.graph = build_graph(n_pages, seed) if graph is None else graph
        self.slow_paths = slow_paths
        self.delay = delay
        self.slow_seconds = slow_seconds
        self.big_bytes = big_bytes
        self.hits: dict[str, int] = {}
        self.requests: list[tuple[float, str]] = []  # (monotonic time received, path)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TestSite:
        """Listen on an ephemeral port and serve from a daemon thread."""
        handler = type("Handler", (_Handler,), {"site": self})
        self._server = QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TestSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the site listens on (once started)."""
        if self._server is None:
            raise RuntimeError("TestSite is not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """ "http://127.0.0.1:<port>", without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """The absolute, normalised URL of `path` on this site."""
        return self.base_url + path

    @property
    def total_hits(self) -> int:
        """Requests served so far, robots.txt included."""
        with self._lock:
            return sum(self.hits.values())

    def reset_hits(self) -> None:
        """Forget the hit counts."""
        with self._lock:
            self.hits.clear()
            self.requests.clear()

    def fetched_urls(self) -> set[str]:
        """URLs of every path requested so far, robots.txt excluded."""
        with self._lock:
            return {self.url(path) for path in self.hits if path != "/robots.txt"}

    def expected_paths(self, depth: int, include_blocked: bool = False) -> set[str]:
        """Paths within `depth` links of "/", robots-disallowed ones only if asked."""
        distances = link_distances(self.graph)
        return {
            path
            for path, distance in distances.items()
            if distance <= depth and (include_blocked or not path.startswith("/private/"))
        }

    def expected_urls(self, depth: int, include_blocked: bool = False) -> set[str]:
        """Normalised URLs a correct same-host crawl to `depth` fetches (jobs: include_blocked)."""
        return {self.url(path) for path in self.expected_paths(depth, include_blocked)}

    expected_pages = expected_urls

    def count_hit(self, path: str) -> None:
        """Record one request for `path`."""
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            self.requests.append((time.monotonic(), path))

    def render(self, path: str) -> str:
        """The HTML of a graph page: a title, its links in varied spellings, junk links."""
        hrefs = [
            href_for(path, target, index, self.base_url)
            for index, target in enumerate(self.graph[path])
        ]
        hrefs += JUNK_LINKS
        anchors = "\n".join(
            f'<li><a href="{href}">link {n}</a></li>' for n, href in enumerate(hrefs)
        )
        title = "Home" if path == START else f"Page {path}"
        return (
            f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n"
            f'<body><h1 id="top">{title}</h1>\n<ul>\n{anchors}\n</ul></body></html>\n'
        )


class _Handler(BaseHTTPRequestHandler):
    """Serves one TestSite; `site` is set on a per-site subclass."""

    site: TestSite
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        """Route a GET to the robots file, a graph page or one of the special pages."""
        site = self.site
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        site.count_hit(path)
        if site.delay:
            time.sleep(site.delay)
        if path == "/robots.txt":
            self._send(200, ROBOTS_TXT, "text/plain")
        elif path in site.slow_paths and path in site.graph:
            time.sleep(site.slow_seconds)
            self._send(200, site.render(path))
        elif path == "/redirect":
            self._send(302, "", headers={"Location": "/"})
        elif path == "/redirect-loop":
            self._send(302, "", headers={"Location": "/redirect-loop"})
        elif path == "/big":
            filler = "<p>" + "x" * 1000 + "</p>\n"
            body = "<html><head><title>Big</title></head><body>\n"
            self._send(200, body + filler * (site.big_bytes // len(filler) + 1))
        elif path == "/text":
            self._send(200, '<a href="/p/1">not a link</a>', "text/plain")
        elif path in site.graph and path != MISSING:
            self._send(200, site.render(path))
        else:
            self._send(404, "<html><title>Not found</title><a href='/'>home</a></html>")

    def _send(
        self,
        status: int,
        body: str,
        content_type: str = "text/html",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
