"""The jobs page in headless Chromium (Debian's, driven by Playwright), against a real
server, a real worker and a real crawl of a local site."""

import os
import re
import shutil

import pytest

from tests.sites import TestSite

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
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
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    problems = []
    pg.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    pg.on(
        "request",
        lambda r: (
            problems.append(f"off-host request: {r.url}")
            if not r.url.startswith(live_server)
            else None
        ),
    )
    pg.set_default_timeout(15_000)
    pg.expected_console_errors = []  # a test that provokes an HTTP error names it here
    yield pg
    context.close()
    unexpected = [
        p for p in problems if not any(allowed in p for allowed in pg.expected_console_errors)
    ]
    assert unexpected == []


@pytest.fixture
def site():
    with TestSite(n_pages=120, seed=5, delay=0.02) as s:
        yield s


def test_start_a_crawl_from_the_form_and_watch_it_finish(page, live_server, worker, site):
    from playwright.sync_api import expect

    page.goto(f"{live_server}/jobs")
    form = page.locator("#new-job-form")
    form.locator("input[name=url]").fill(site.url("/"))
    form.locator("input[name=depth]").fill("2")
    form.locator("input[name=max_pages]").fill("200")
    form.locator("button[type=submit]").click()

    modal = page.locator("#job-modal")
    expect(modal).to_be_visible()
    expect(page.locator("#modal-status")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#modal-progress")).to_have_text("100%")
    assert re.search(r"[?&]job=\d+", page.url)

    # the start page's job is the root's one child; open it and read its log
    children = page.locator("#modal-children tr[data-job-id]")
    expect(children).to_have_count(1)
    children.first.click()
    expect(page.locator("#modal-logs .log-line").first).to_be_visible()
    assert "GET " in page.locator("#modal-logs").inner_text()
    expect(page.locator("#modal-children tr[data-job-id]").first).to_be_visible()

    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()
    root_rows = page.locator("#jobs-table tr[data-job-id]")
    expect(root_rows).to_have_count(1)
    expect(root_rows.first).to_contain_text("completed")
    expected = len(site.expected_urls(2, include_blocked=True))
    expect(root_rows.first).to_contain_text(f"{expected}/{expected}")


def test_form_shows_field_errors_from_the_api(page, live_server):
    from playwright.sync_api import expect

    # the browser logs the expected 400 response; that is not a problem of the page
    page.expected_console_errors.append("status of 400")
    page.goto(f"{live_server}/jobs")
    form = page.locator("#new-job-form")
    form.locator("input[name=url]").fill("ftp://example.org/")
    form.locator("button[type=submit]").click()
    expect(page.locator('[data-error-for="payload.url"]')).to_contain_text("http")


def test_the_table_renders_with_javascript_off(browser, live_server, manager):
    job = manager.create_root("noop", {}, name="no-js-root")
    context = browser.new_context(java_script_enabled=False)
    pg = context.new_page()
    pg.goto(f"{live_server}/jobs")
    row = pg.locator(f'#jobs-table tr[data-job-id="{job.id}"]')
    assert row.count() == 1 and "no-js-root" in row.inner_text()
    context.close()
