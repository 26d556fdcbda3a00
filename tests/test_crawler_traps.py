"""Crawler traps end at the caps: an endless chain of ever deeper paths, a query string
that explodes into ever more URLs, and ever longer URLs. A real worker and server crawl
a local trap site on 127.0.0.1; the config's max_depth and max_pages win over the
payload's, and the site's hit counts prove nothing beyond the caps was fetched."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from quaero.config import Config
from quaero.executors.crawler import MAX_URL_CHARS
from tests.helpers import make_config, wait_for_job

pytestmark = pytest.mark.e2e

MAX_DEPTH, MAX_PAGES = 4, 40
LONG_SEGMENT = "a" * 600


class TrapSite:
    """/deep/...: one link one level deeper, forever; /q?n=N: ten new query URLs per
    page; /long/...: a link 600 characters longer, forever."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                site.hits.append(self.path)
                body = site.page(self.path)
                data = body.encode()
                self.send_response(404 if body == "" else 200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, path: str) -> str:
        parts = urlsplit(path)
        if parts.path.startswith("/deep/"):
            links = [parts.path + "x/"]
        elif parts.path == "/q":
            n = int(parse_qs(parts.query).get("n", ["0"])[0])
            links = [f"/q?n={n * 10 + i}&sort=asc&session={n}" for i in range(1, 11)]
        elif parts.path.startswith("/long/"):
            links = [parts.path + LONG_SEGMENT + "/"]
        else:
            return ""
        anchors = "".join(f'<a href="{link}">next</a>' for link in links)
        return f"<html><title>trap</title><body>{anchors}</body></html>"

    def pages(self) -> list[str]:
        return [path for path in self.hits if path != "/robots.txt"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def config(tmp_path) -> Config:
    return make_config(tmp_path, crawler={"max_depth": MAX_DEPTH, "max_pages": MAX_PAGES})


@pytest.fixture
def trap() -> Iterator[TrapSite]:
    site = TrapSite()
    yield site
    site.stop()


def crawl(base: str, url: str, **payload) -> dict:
    body = {"type": "crawler", "payload": {"url": url, **payload}}
    response = requests.post(f"{base}/api/jobs", json=body, timeout=5)
    assert response.status_code == 201, response.text
    return wait_for_job(base, response.json()["id"], timeout=60)


def root_log(base: str, job_id: int) -> str:
    logs = requests.get(f"{base}/api/jobs/{job_id}/logs", timeout=5).json()["logs"]
    return "\n".join(line["message"] for line in logs)


def test_an_endless_chain_of_deeper_paths_ends_at_max_depth(live_server, worker, trap):
    root = crawl(live_server, trap.base + "/deep/", depth=1000, max_pages=1_000_000)
    assert root["status"] == "completed", root
    assert trap.pages() == ["/deep/" + "x/" * level for level in range(MAX_DEPTH + 1)]
    assert root["counts"]["total"] == MAX_DEPTH + 1
    log = root_log(live_server, root["id"])
    assert f"depth 1000 lowered to the configured max_depth {MAX_DEPTH}" in log
    assert f"max_pages 1000000 lowered to the configured {MAX_PAGES}" in log


def test_a_query_string_explosion_ends_at_max_pages(live_server, worker, trap):
    root = crawl(live_server, trap.base + "/q?n=0", depth=MAX_DEPTH)
    assert root["status"] == "completed", root
    assert root["counts"]["total"] == MAX_PAGES
    pages = trap.pages()
    assert len(pages) == len(set(pages)) == MAX_PAGES  # each URL once, no more than the cap


def test_ever_longer_urls_are_dropped(live_server, worker, trap):
    root = crawl(live_server, trap.base + "/long/", depth=MAX_DEPTH)
    assert root["status"] == "completed", root
    lengths = [len(trap.base + path) for path in trap.pages()]
    assert lengths and max(lengths) <= MAX_URL_CHARS
    assert len(lengths) == 4 and root["counts"]["total"] == 4  # the fifth is over the cap
