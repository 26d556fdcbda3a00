"""Cancel, retry and delete from the page: each asks first, shows only when allowed, and
shows its result at once."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.browser.helpers import confirm
from tests.helpers import wait_for, wait_for_job
from tests.sites import TestSite

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


class FlakySite:
    """ "/" links to "/a" and "/b"; "/b" answers 404 until `fixed` is set."""

    def __init__(self) -> None:
        self.fixed = False
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                pages = {
                    "/": '<title>Home</title><a href="/a">a</a> <a href="/b">b</a>',
                    "/a": "<title>A</title>",
                    "/b": "<title>B</title>" if site.fixed else None,
                    "/robots.txt": None,
                }
                body = pages.get(self.path.split("?")[0])
                data = (body or "not found").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_site():
    site = FlakySite()
    yield site
    site.close()


def crawl(base: str, url: str, depth: int) -> int:
    body = {"type": "crawler", "payload": {"url": url, "depth": depth, "max_pages": 500}}
    response = requests.post(f"{base}/api/jobs", json=body, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_cancel_a_running_crawl_then_delete_it(page, live_server, worker):
    from playwright.sync_api import expect

    with TestSite(n_pages=200, seed=2, delay=0.3) as site:
        root = crawl(live_server, site.url("/"), depth=3)
        page.goto(f"{live_server}/jobs")
        row = page.locator(f'#jobs-table tr[data-job-id="{root}"]')
        expect(row.locator(".badge")).to_have_text("running", timeout=10_000)
        expect(row.locator(".row-delete")).to_be_hidden()  # unfinished: no delete

        # asked first; "Keep it" changes nothing
        row.locator(".row-cancel").click()
        expect(page.locator("#confirm-text")).to_contain_text(f"Cancel job #{root}")
        page.locator("#confirm-no").click()
        expect(page.locator("#confirm-dialog")).to_be_hidden()
        assert requests.get(f"{live_server}/api/jobs/{root}", timeout=5).json()["status"] in (
            "pending",
            "running",
        )

        row.locator(".row-cancel").click()
        confirm(page)
        expect(page.locator("#flash")).to_have_text(f"Cancelled job #{root}.")
        expect(row.locator(".badge")).to_have_text("cancelled", timeout=1_000)  # at once
        expect(row.locator(".row-cancel")).to_be_hidden()
        expect(row.locator(".row-retry")).to_be_visible()
        fetched = site.total_hits
        assert fetched < 150  # the crawl stopped well before its end

        # let the pages that were being fetched finish, then delete the finished tree
        wait_for(
            lambda: (
                requests.get(f"{live_server}/api/jobs/{root}", timeout=5).json()["counts"][
                    "running"
                ]
                == 0
            ),
            timeout=15,
        )
        row.locator(".row-delete").click()
        expect(page.locator("#confirm-text")).to_contain_text("cannot be undone")
        confirm(page)
        expect(page.locator("#flash")).to_have_text(f"Deleted job #{root}.")
        expect(row).to_have_count(0)
        assert requests.get(f"{live_server}/api/jobs/{root}", timeout=5).status_code == 404
        assert site.total_hits <= fetched + 10


def test_retry_a_failed_part_of_a_crawl_then_delete_the_finished_tree(
    page, live_server, worker, flaky_site
):
    from playwright.sync_api import expect

    root = crawl(live_server, flaky_site.url, depth=1)
    assert wait_for_job(live_server, root)["counts"]["failed"] == 1

    page.goto(f"{live_server}/jobs?job={root}")
    expect(page.locator("#modal-done")).to_have_text("3/3 (1 failed)")
    expect(page.locator("#btn-cancel")).to_be_hidden()
    page.locator("#modal-children tr[data-job-id]").first.click()  # the start page

    # find the failed page with the children's status filter and open it
    page.locator("#children-status").select_option("failed")
    failed_rows = page.locator("#modal-children tr[data-job-id]")
    expect(failed_rows).to_have_count(1)
    expect(failed_rows.first).to_contain_text("/b")
    failed_rows.first.click()
    expect(page.locator("#modal-status")).to_have_text("failed")
    expect(page.locator("#modal-error")).to_contain_text("HTTP 404")
    expect(page.locator(".crumbs .crumb")).to_have_count(3)

    flaky_site.fixed = True
    page.locator("#btn-retry").click()
    expect(page.locator("#confirm-text")).to_contain_text("again")
    confirm(page)
    expect(page.locator("#flash")).to_contain_text("Retrying")
    expect(page.locator("#modal-status")).to_have_text("completed", timeout=15_000)
    expect(page.locator("#btn-retry")).to_be_hidden()
    expect(page.locator("#modal-result")).to_contain_text('"title": "B"')

    # back to the root by its breadcrumb: nothing failed any more
    page.locator(".crumbs .crumb").first.click()
    expect(page.locator("#modal-status")).to_have_text("completed")
    expect(page.locator("#modal-done")).to_have_text("3/3 (0 failed)")

    page.locator("#btn-delete").click()
    confirm(page)
    expect(page.locator("#job-modal")).to_be_hidden()
    expect(page.locator("#flash")).to_have_text(f"Deleted job #{root}.")
    expect(page.locator(f'#jobs-table tr[data-job-id="{root}"]')).to_have_count(0)
    expect(page.locator("#page-range")).to_have_text("no jobs")
