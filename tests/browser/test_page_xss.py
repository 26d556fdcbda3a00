"""XSS: a crawled site whose titles, URLs, bodies and error texts carry script payloads
is shown as text. Chromium opens the page, the modal and a hostile child; no script of
theirs runs (no dialog, the sentinel stays undefined) and the CSP header is sent."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
import requests

from tests.browser.helpers import open_context
from tests.helpers import wait_for_job

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SCRIPT_TITLE = "<script>window.__xss=1;alert('title')</script>"
IMG_TITLE = "<img src=x onerror=\"window.__xss=2;alert('img')\">"
SVG = "<svg onload=alert(3)>"
HOSTILE_NAME = "<img src=x onerror=\"window.__xss=4;alert('name')\"><b>bold?</b>"

# "/" links to pages whose paths carry markup (percent-encoded on the wire, decoded in
# the crawler's URLs only as far as a URL allows), to a javascript: URL, and to a page
# that fails with a hostile path in its error text.
HOME = f"""<!doctype html><html><head><title>{SCRIPT_TITLE}{IMG_TITLE}</title></head>
<body><script>window.__xss = 'body'; alert('body')</script>
<a href="/p/{quote('"><img src=x onerror=alert(5)>')}">quoted</a>
<a href="/p/{quote("<script>alert(6)</script>")}">script path</a>
<a href="/page?q=<img src=x onerror=alert(7)>">raw query</a>
<a href="javascript:window.__xss='js-link';alert(8)">js</a>
<a href="/missing/{quote(SVG)}">missing</a>
<img src=x onerror="alert('img tag')">
</body></html>"""

CHILD = f"""<!doctype html><html><head><title>{IMG_TITLE} {SVG} &lt;i&gt;escaped&lt;/i&gt;</title>
</head><body onload="alert('onload')"><a href="/">home</a></body></html>"""


class HostileHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/":
            status, body = 200, HOME
        elif path.startswith(("/p/", "/page")):
            status, body = 200, CHILD
        else:  # robots.txt and /missing/...: the error text carries the hostile path
            status, body = 404, f"<title>{SCRIPT_TITLE}</title>not here"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def hostile_site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def no_script_ran(pg) -> None:
    assert pg.evaluate("typeof window.__xss") == "undefined"
    assert not pg.watch.dialogs


def test_hostile_titles_urls_and_names_are_shown_as_text(
    page, browser, live_server, worker, hostile_site
):
    from playwright.sync_api import expect

    body = {
        "type": "crawler",
        "name": HOSTILE_NAME,
        "payload": {"url": hostile_site, "depth": 1, "max_pages": 50},
    }
    root = requests.post(f"{live_server}/api/jobs", json=body, timeout=5).json()["id"]
    job = wait_for_job(live_server, root)
    assert job["counts"]["total"] >= 5 and job["counts"]["failed"] >= 1

    # the table, rendered by the server and then by Alpine
    response = page.goto(f"{live_server}/jobs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    row = page.locator(f'#jobs-table tr[data-job-id="{root}"]')
    expect(row.locator("td.name a")).to_have_text(HOSTILE_NAME)
    assert page.locator("#jobs-table img, #jobs-table b, #jobs-table svg").count() == 0
    no_script_ran(page)

    # the root's modal, then the start page with the hostile <title>
    row.locator("td.name a").click()
    expect(page.locator("#modal-title")).to_have_text(f"#{root} {HOSTILE_NAME}")
    expect(page.locator(".crumbs")).to_be_hidden()
    page.locator("#modal-children tr[data-job-id]").first.click()
    expect(page.locator("#modal-status")).to_have_text("completed")
    expect(page.locator("#modal-result")).to_contain_text("window.__xss=1")
    expect(page.locator(".crumbs .crumb").first).to_contain_text("<img src=x")
    children = page.locator("#modal-children tr[data-job-id]")
    expect(children.first).to_be_visible()
    # the crawler keeps a title's text (entities decoded): markup again, shown as text
    expect(page.locator("#modal-children .child-title").first).to_contain_text("<i>escaped</i>")
    no_script_ran(page)

    # a failed child: its error names the hostile URL, as text
    page.locator("#children-status").select_option("failed")
    expect(children.first).to_be_visible()
    children.first.click()
    expect(page.locator("#modal-status")).to_have_text("failed")
    expect(page.locator("#modal-error")).to_contain_text("404")
    page.locator("#log-level").select_option("debug")
    expect(page.locator("#modal-logs .log-line").first).to_be_visible()

    # and a child whose own title is hostile, deep-linked and reloaded
    page.locator(".crumbs .crumb").nth(1).click()
    page.locator("#children-status").select_option("completed")
    expect(children.first).to_be_visible()
    child_id = children.first.get_attribute("data-job-id")
    page.goto(f"{live_server}/jobs?job={child_id}")
    expect(page.locator("#modal-result")).to_contain_text("<i>escaped</i>")
    expect(page.locator("#modal-payload")).to_contain_text("/p/")
    modal = page.locator("#job-modal")
    assert modal.locator("img, svg, script, i, b:not(#modal-total)").count() == 0
    page.wait_for_timeout(2_500)  # a live refresh comes round: still text
    no_script_ran(page)

    # without JavaScript the server's escaping alone keeps it text
    context, pg = open_context(browser, live_server, java_script_enabled=False)
    pg.goto(f"{live_server}/jobs")
    assert HOSTILE_NAME in pg.locator(f'#jobs-table tr[data-job-id="{root}"]').inner_text()
    assert pg.locator("#jobs-table img, #jobs-table b").count() == 0
    context.close()
