"""A link-heavy generated site for P11, shaped like a real documentation site.

Issue 17 measured a 517-page documentation site: pages of 95 KB on average (the largest
2.5 MB), about 300 links a page, index pages with 10,000+ links, ~160,000 links within
depth 2, most of them to pages already seen. This site has that shape:

- "/" (depth 0) links to `sections` section pages, `INDEXES` index pages, one
  single-page manual ("/single", ~2.5 MB) and a 404 ("/missing");
- each section page (depth 1) lists its `pages` pages (depth 2);
- every page carries a header (all sections, indexes, the manual), a sidebar (its
  section's pages) and `body_links` cross-references to random pages of depth 1-2, in
  varied spellings (absolute, relative, "../", full URL, with #fragments), prose
  filler to ~95 KB, and a few off-site, mailto and javascript links;
- the index pages and the manual link every depth-1/2 page many times (one link per
  entry, with anchors): 10,000+ links each, all to pages already found;
- each depth-2 page also links `deeper_links` API pages (depth 3), which a depth-2
  crawl must not fetch.

Pages link only one level deeper than themselves, so the pages within depth 2 are the
same whatever order a crawler fetches them in: `expected_paths(2)` (512 with the
defaults). Pages are rendered once, before serving; the server is threaded and speaks
HTTP/1.1 keep-alive, with an optional delay per response. robots.txt disallows
/private/, which no page links to, so a crawler that ignores robots.txt (the Scrapy
baseline) fetches the same pages as one that obeys it.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.site import load_test_sites

ROOT = "/"
MISSING = "/missing"
SINGLE = "/single"
INDEXES = ("/genindex", "/modindex", "/glossary")
ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n"
EXTERNAL = (
    "https://offsite.invalid/docs/",
    "http://offsite.invalid/blog",
    "https://cdn.offsite.invalid/x",
    "mailto:docs@example.invalid",
    "javascript:void(0)",
    "#top",
)
WORD_TEXT = (
    "crawler worker queue lease epoch page link depth index module function class method "
    "argument returns raises example note warning version changed deprecated parameter "
    "value default option config server request response header body timeout retry the "
    "a of to in is and for with this that when which each every one two returns while"
)
WORDS = WORD_TEXT.split()


def section_path(s: int) -> str:
    return f"/s{s}/"


def page_path(s: int, p: int) -> str:
    return f"/s{s}/p{p}.html"


def api_path(s: int, p: int, k: int) -> str:
    return f"/s{s}/p{p}/api{k}.html"


class LinkSite:
    """The generated documentation site (not started), its graph and its rendered pages."""

    def __init__(
        self,
        sections: int = 22,
        pages: int = 22,
        body_links: int = 180,
        deeper_links: int = 5,
        page_kb: int = 62,
        index_entries: int = 22,
        single_kb: int = 1_000,
        delay: float = 0.0,
        seed: int = 17,
    ) -> None:
        self.sections, self.pages = sections, pages
        self.delay = delay
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._rng = random.Random(seed)
        self._body_links, self._deeper = body_links, deeper_links
        self._page_kb, self._index_entries, self._single_kb = page_kb, index_entries, single_kb
        self._prose = [self._paragraph() for _ in range(64)]
        self.level1 = [section_path(s) for s in range(sections)]
        self.level2 = [page_path(s, p) for s in range(sections) for p in range(pages)]
        self.graph: dict[str, list[str]] = {}
        self.rendered: dict[str, bytes] = {}
        self.link_count: dict[str, int] = {}

    # -- the graph and the pages ----------------------------------------------------------

    def _paragraph(self) -> str:
        words = " ".join(self._rng.choice(WORDS) for _ in range(120))
        return f"<p>{words.capitalize()}.</p>\n<pre><code>{words[:200]}</code></pre>\n"

    def _href(self, source: str, target: str, n: int) -> str:
        """One spelling of a link from `source` to `target` (the n-th of the page)."""
        fragment = f"#id{n % 97}" if n % 3 else ""
        form = n % 5
        if form == 0:
            return target + fragment
        if form == 1:
            return self.base_url + target + fragment
        if form == 2 and source.count("/") == target.count("/") == 2 and target != ROOT:
            src_dir, tgt_dir = source.rsplit("/", 1)[0], target.rsplit("/", 1)
            if src_dir == tgt_dir[0]:
                return (tgt_dir[1] or "./") + fragment  # same folder, relative
            return "../" + target.lstrip("/") + fragment
        return target + fragment

    def _chrome(self) -> list[str]:
        """The header's links on every page."""
        return [ROOT, *self.level1, *INDEXES, SINGLE]

    def _page(self, path: str, title: str, targets: list[str], filler_kb: int) -> bytes:
        self.graph[path] = [t for t in targets if t.startswith("/")]
        self.link_count[path] = len(targets) + len(EXTERNAL)
        anchors = [
            f'<li><a class="reference internal" href="{self._href(path, t, n)}">'
            f"entry {n} of {title}</a></li>"
            for n, t in enumerate(targets)
        ]
        anchors += [f'<li><a href="{href}">elsewhere</a></li>' for href in EXTERNAL]
        prose: list[str] = []
        size = 0
        while size < filler_kb * 1024:
            paragraph = self._prose[self._rng.randrange(len(self._prose))]
            prose.append(paragraph)
            size += len(paragraph)
        # links interleaved with prose, as in a real page body
        step = max(1, len(anchors) // max(1, len(prose)))
        parts = []
        for i, paragraph in enumerate(prose):
            parts.append(paragraph)
            parts.append("<ul>" + "".join(anchors[i * step : (i + 1) * step]) + "</ul>\n")
        parts.append("<ul>" + "".join(anchors[len(prose) * step :]) + "</ul>\n")
        html = (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{title}</title></head>\n<body><div class="body">\n'
            + "".join(parts)
            + "</div></body></html>\n"
        )
        return html.encode("utf-8")

    def build(self) -> LinkSite:
        """Build the graph and render every page within depth 2 (call before serving)."""
        rng = self._rng
        chrome = self._chrome()
        everything = self.level1 + self.level2
        root_targets = [*chrome, MISSING]
        self.rendered[ROOT] = self._page(ROOT, "Documentation", root_targets, 20)
        for s, section in enumerate(self.level1):
            own = [page_path(s, p) for p in range(self.pages)]
            body = [rng.choice(everything) for _ in range(self._body_links)]
            self.rendered[section] = self._page(
                section, f"Section {s}", [*chrome, *own, *body], self._page_kb
            )
        for s in range(self.sections):
            siblings = [page_path(s, p) for p in range(self.pages)]
            for p in range(self.pages):
                path = page_path(s, p)
                body = [rng.choice(everything) for _ in range(self._body_links)]
                deeper = [api_path(s, p, k) for k in range(self._deeper)]
                targets = [*chrome, *siblings, *body, *deeper]
                self.rendered[path] = self._page(path, f"Page {s}.{p}", targets, self._page_kb)
        entries = [t for t in everything for _ in range(self._index_entries)]
        for index in INDEXES:
            shuffled = entries[:]
            rng.shuffle(shuffled)
            self.rendered[index] = self._page(index, index[1:], [*chrome, *shuffled], 40)
        manual = [t for t in everything for _ in range(self._index_entries + 8)]
        self.rendered[SINGLE] = self._page(SINGLE, "Manual", [*chrome, *manual], self._single_kb)
        self.graph[MISSING] = []
        return self

    def expected_paths(self, depth: int) -> set[str]:
        """Paths within `depth` links of "/" (pages link one level deeper at most)."""
        distances = load_test_sites().link_distances(self.graph)
        return {path for path, d in distances.items() if d <= depth}

    def shape(self, depth: int = 2) -> dict[str, Any]:
        """Pages, bytes and links within `depth`: what the README's table describes."""
        paths = self.expected_paths(depth) - {MISSING}
        sizes = [len(self.rendered[p]) for p in paths]
        links = [self.link_count[p] for p in paths]
        return {
            "pages": len(paths) + (MISSING in self.expected_paths(depth)),
            "mean_kb": round(sum(sizes) / len(sizes) / 1024, 1),
            "max_kb": round(max(sizes) / 1024, 1),
            "links": sum(links),
            "mean_links": round(sum(links) / len(links)),
            "max_links": max(links),
        }

    # -- serving --------------------------------------------------------------------------

    def start(self) -> LinkSite:
        """Listen on 127.0.0.1 (ephemeral port) and serve from a daemon thread."""
        handler = type("Handler", (_Handler,), {"site": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        if not self.rendered:
            self.build()
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

    @property
    def base_url(self) -> str:
        """ "http://127.0.0.1:<port>" once started."""
        if self._server is None:
            raise RuntimeError("LinkSite is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str = "/") -> str:
        """The absolute URL of `path` on this site."""
        return self.base_url + path

    def reset_hits(self) -> None:
        """Forget the hit counts."""
        with self._lock:
            self.hits.clear()

    def count_hit(self, path: str) -> None:
        """Record one request for `path`."""
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1


class _Server(ThreadingHTTPServer):
    """Ignores clients that hang up mid-response."""

    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Serves one LinkSite's pre-rendered pages; `site` is set on a per-site subclass."""

    site: LinkSite
    protocol_version = "HTTP/1.1"
    # headers and body leave in separate writes: with Nagle's algorithm, a keep-alive
    # client's delayed ACK would hold each response's last segment back ~40 ms
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: Any) -> None:
        """Keep the harness's output quiet."""

    def do_GET(self) -> None:
        """robots.txt, a rendered page, a depth-3 API page, or a 404."""
        site = self.site
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        site.count_hit(path)
        if site.delay:
            time.sleep(site.delay)
        if path == "/robots.txt":
            self._send(200, ROBOTS_TXT.encode(), "text/plain")
        elif path in site.rendered:
            self._send(200, site.rendered[path])
        elif "/api" in path and path.endswith(".html"):  # depth 3: served, never crawled
            self._send(200, b"<html><title>API</title><a href='/'>home</a></html>")
        else:
            self._send(404, b"<html><title>Not found</title><a href='/'>home</a></html>")

    def _send(self, status: int, body: bytes, content_type: str = "text/html") -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
