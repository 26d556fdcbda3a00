"""Helpers of the browser tests: the CSP the app must run under, a page that records
every console error, failed or off-host request, CSP violation and native dialog, and
the clicks every action test needs."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# The policy the app sends (issue 9). Until the app sets it itself, the test server adds
# it, so every browser test proves the page works without inline scripts or eval.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

# Recorded in the page before any of its scripts run (an init script is not subject to
# the page's CSP): violations of the policy, and the sentinel of the XSS test.
WATCH_SCRIPT = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""


def add_test_csp(app) -> None:
    """Send CSP on every response that has none (the app's own header wins)."""

    @app.after_request
    def content_security_policy(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        return response


def record_answers(app, answers: list[tuple[str, int, str | None]]) -> None:
    """Append (path and query, status, If-None-Match) of every API answer the server
    sends: what the browser's network events do not show (they report a 304 that the
    browser's cache answered from its copy as a 200)."""
    inner = app.wsgi_app

    def wsgi(environ, start_response):
        def start(status, headers, exc_info=None):
            if environ["PATH_INFO"].startswith("/api/"):
                query = environ.get("QUERY_STRING")
                path = environ["PATH_INFO"] + (f"?{query}" if query else "")
                answers.append((path, int(status.split()[0]), environ.get("HTTP_IF_NONE_MATCH")))
            return start_response(status, headers, exc_info)

        return inner(environ, start)

    app.wsgi_app = wsgi


@contextlib.contextmanager
def serve_app(services, answers: list | None = None) -> Iterator[str]:
    """The app under waitress on an ephemeral 127.0.0.1 port, with the CSP header;
    `answers`, when given, gets what `record_answers` records."""
    from waitress.server import create_server

    from quaero.web import create_app

    app = create_app(services)
    add_test_csp(app)
    if answers is not None:
        record_answers(app, answers)
    server = create_server(app, host="127.0.0.1", port=0, threads=6)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)


class Watch:
    """What went wrong in a page: console errors, failed requests, dialogs, CSP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.problems: list[str] = []
        self.expected: list[str] = []  # substrings of problems a test provokes on purpose
        self.dialogs: list[str] = []
        self.documents: list[tuple[str, str | None]] = []  # (url, CSP header)

    def attach(self, pg) -> None:
        pg.on("console", self._console)
        pg.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        pg.on("requestfailed", self._request_failed)
        pg.on("request", self._request)
        pg.on("response", self._response)
        pg.on("dialog", self._dialog)

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console {message.type}: {message.text}")

    def _request_failed(self, req) -> None:
        # A poll still in flight when the test navigates (goto, reload) is aborted by
        # the browser: that is the navigation, not a failure of the page.
        if req.failure == "net::ERR_ABORTED" and req.resource_type == "fetch":
            return
        self.problems.append(f"request failed: {req.url} ({req.failure})")

    def _request(self, req) -> None:
        if not req.url.startswith(self.base_url):
            self.problems.append(f"off-host request: {req.url}")

    def _response(self, response) -> None:
        if response.request.resource_type == "document":
            self.documents.append((response.url, response.headers.get("content-security-policy")))

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(e in p for e in self.expected)]


def open_context(browser, base_url: str, width: int = 1280, height: int = 800, **options):
    """A browser context and page with the watchers attached; returns (context, page)."""
    context = browser.new_context(viewport={"width": width, "height": height}, **options)
    context.add_init_script(WATCH_SCRIPT)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.watch = Watch(base_url)
    pg.watch.attach(pg)
    return context, pg


def assert_page_was_clean(pg) -> None:
    """No console error, failed request, native dialog or CSP violation; CSP was sent."""
    watch = pg.watch
    problems = watch.unexpected()
    assert not problems, problems
    assert not watch.dialogs, f"native dialogs opened (the page never uses one): {watch.dialogs}"
    for url, csp in watch.documents:
        assert csp and "script-src 'self'" in csp and "unsafe-eval" not in csp, url
    if not pg.is_closed():
        try:
            violations = pg.evaluate("window.__cspViolations || []")
        except Exception:  # the page is navigating or gone: nothing to read
            violations = []
        assert not violations, violations


def confirm(pg) -> None:
    """Answer "yes" in the page's own confirmation dialog."""
    from playwright.sync_api import expect

    dialog = pg.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    pg.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()
