"""Signing in on the page in Chromium (issue 13, point 10): the login form's POST passes
the cross-site check, the page works on the session cookie, and the visible Sign out
control ends the session (the old cookie stops working)."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from quaero.services import build_services
from tests.browser.helpers import assert_page_was_clean, open_context, serve_app
from tests.helpers import make_config

pytestmark = pytest.mark.browser

TOKEN = "Zq8&'<>+/=" + "k3J9vR2mXw7LpT4nYb6HcE1sGd5AfU0o"


@pytest.fixture
def signed_server(tmp_path):
    services = build_services(make_config(tmp_path, server={"api_token": TOKEN}))
    with serve_app(services) as url:
        yield url
    services.close()


def test_sign_in_use_the_page_and_sign_out(browser, signed_server):
    context, page = open_context(browser, signed_server)
    try:
        page.goto(f"{signed_server}/jobs")
        expect(page).to_have_url(f"{signed_server}/login?next=/jobs")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{signed_server}/jobs")
        expect(page.locator(".jobs-page")).to_be_visible()

        page.fill("#nc-url", "https://example.org/signed-in")
        page.locator("form.new-crawl button[type=submit]").click()
        expect(page.locator("tr[data-job-id]").first).to_contain_text("signed-in")
        expect(page.locator("#modal-payload")).to_contain_text("signed-in")  # its details
        page.keyboard.press("Escape")  # a new crawl opens its details: close them

        cookie = next(c for c in context.cookies() if c["name"] == "quaero_session")
        sign_out = page.get_by_role("button", name="Sign out")
        expect(sign_out).to_be_visible()
        sign_out.click()
        expect(page).to_have_url(f"{signed_server}/login")
        page.goto(f"{signed_server}/jobs")
        expect(page).to_have_url(f"{signed_server}/login?next=/jobs")
        old = requests.get(
            f"{signed_server}/api/jobs", cookies={"quaero_session": cookie["value"]}, timeout=5
        )
        assert old.status_code == 401
        assert_page_was_clean(page)
    finally:
        context.close()
