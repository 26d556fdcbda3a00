"""The roots table, its counts, filters, paging and live refresh, and the new-crawl form,
in headless Chromium against a real server, worker and crawl of a local site."""

import re

import pytest

from tests.browser.helpers import open_context
from tests.sites import TestSite

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


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
    page.watch.expected.append("status of 400")
    page.goto(f"{live_server}/jobs")
    form = page.locator("#new-job-form")
    form.locator("input[name=url]").fill("ftp://example.org/")
    form.locator("button[type=submit]").click()
    expect(page.locator('[data-error-for="payload.url"]')).to_contain_text("http")


def test_the_table_renders_with_javascript_off(browser, live_server, manager):
    job = manager.create_root("noop", {}, name="no-js-root")
    context, pg = open_context(browser, live_server, java_script_enabled=False)
    pg.goto(f"{live_server}/jobs")
    row = pg.locator(f'#jobs-table tr[data-job-id="{job.id}"]')
    assert row.count() == 1 and "no-js-root" in row.inner_text()
    context.close()
