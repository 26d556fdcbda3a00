"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, a real waitress
server under the production Content-Security-Policy, and a page that fails its test on
any console error, failed or off-host request, CSP violation or native dialog."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from quaero.services import Services
from tests.browser.helpers import ARGS, CHROMIUM, assert_page_was_clean, open_context, serve_app


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; `make test` installs it with apt-get")
        pytest.skip("chromium is not installed (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def live_server(services: Services) -> Iterator[str]:
    """The app under waitress on an ephemeral 127.0.0.1 port, with the CSP header."""
    with serve_app(services) as url:
        yield url


@pytest.fixture
def page(browser, live_server):
    """A 1280x800 page on the live server; fails the test on any problem it saw."""
    context, pg = open_context(browser, live_server)
    yield pg
    try:
        assert_page_was_clean(pg)
    finally:
        context.close()
