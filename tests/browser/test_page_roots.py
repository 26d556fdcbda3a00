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


def make_roots(manager, n_alpha: int = 55, n_beta: int = 3) -> dict[str, list[int]]:
    """Pending roots (no worker runs them): "alpha i" noops and "beta i" sleeps."""
    alpha = [manager.create_root("noop", {}, name=f"alpha {i}").id for i in range(n_alpha)]
    beta = [manager.create_root("sleep", {}, name=f"beta {i}").id for i in range(n_beta)]
    for ids in (alpha, beta):
        if ids:
            manager.cancel_tree(ids[0])
    return {"alpha": alpha, "beta": beta}


def test_filters_search_and_paging_live_in_the_url(page, live_server, manager):
    from playwright.sync_api import expect

    roots = make_roots(manager)
    rows = page.locator("#jobs-table tr[data-job-id]")
    page.goto(f"{live_server}/jobs")
    expect(rows).to_have_count(50)
    expect(page.locator("#page-range")).to_have_text("showing 1–50 of 58")
    # newest first
    assert rows.first.get_attribute("data-job-id") == str(roots["beta"][-1])
    expect(page.locator("#page-prev")).to_be_hidden()

    page.locator("#page-next").click()
    expect(rows).to_have_count(8)
    assert "offset=50" in page.url
    expect(page.locator("#page-range")).to_have_text("showing 51–58 of 58")
    expect(page.locator("#page-next")).to_be_hidden()

    # a status from the counts strip, then a type: the offset goes, the filters stay
    page.locator('.stats a[data-status="cancelled"]').click()
    expect(rows).to_have_count(2)
    assert "status=cancelled" in page.url and "offset" not in page.url
    expect(page.locator('.stats a[data-status="cancelled"]')).to_have_class(re.compile("active"))
    page.locator("#filters select[name=type]").select_option("sleep")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("beta 0")
    assert "status=cancelled" in page.url and "type=sleep" in page.url

    page.reload()  # a shared or reloaded URL shows the same view, server-rendered first
    expect(rows).to_have_count(1)
    expect(page.locator("#filters select[name=status]")).to_have_value("cancelled")
    expect(page.locator("#filters select[name=type]")).to_have_value("sleep")

    page.locator("#clear-filters").click()
    expect(rows).to_have_count(50)
    page.locator("#filters input[name=q]").fill("beta")
    expect(rows).to_have_count(3)
    assert "q=beta" in page.url
    page.locator("#filters input[name=q]").fill(str(roots["beta"][1]))  # an id
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("beta 1")
    # the search's history entry is pushed after its answer shows: wait for it
    expect(page).to_have_url(re.compile(rf"[?&]q={roots['beta'][1]}(&|$)"))

    page.go_back()  # Back undoes the last filter
    expect(rows).to_have_count(3)
    expect(page.locator("#filters input[name=q]")).to_have_value("beta")


def test_counts_queue_and_workers_across_the_top(page, live_server, manager, services):
    from playwright.sync_api import expect

    make_roots(manager, n_alpha=4, n_beta=2)
    page.goto(f"{live_server}/jobs")
    count = page.locator('.stats a[data-status="pending"] .stat-count')
    expect(count).to_have_text("4")
    expect(page.locator('.stats a[data-status="cancelled"] .stat-count')).to_have_text("2")
    expect(page.locator("#queue-depth")).to_have_text(str(services.queue.depth()))
    expect(page.locator("#workers-alive")).to_have_text("0")
    expect(page.locator(".stat.meta.warn")).to_contain_text("workers")
    # the badges say their status in words, not only in colour
    for status in ("pending", "running", "completed", "failed", "cancelled"):
        expect(page.locator(f'.stats a[data-status="{status}"] .badge')).to_have_text(status)
    manager.create_root("noop", {}, name="one more")
    expect(count).to_have_text("5", timeout=6_000)  # live, without a reload


def test_live_refresh_keeps_scroll_filters_and_modal_and_revalidates(browser, live_server, manager):
    from playwright.sync_api import expect

    from tests.browser.helpers import assert_page_was_clean, open_context

    roots = make_roots(manager, n_alpha=40, n_beta=0)
    context, page = open_context(browser, live_server, width=1000, height=500)
    try:
        statuses = []
        page.on(
            "response",
            lambda r: statuses.append(r.status) if "/api/jobs?" in r.url else None,
        )
        page.goto(f"{live_server}/jobs?type=noop")
        rows = page.locator("#jobs-table tr[data-job-id]")
        expect(rows).to_have_count(40)
        page.mouse.wheel(0, 600)
        page.wait_for_function("window.scrollY > 300")
        watched = page.locator(f'#jobs-table tr[data-job-id="{roots["alpha"][30]}"]')
        top = watched.bounding_box()["y"]  # where the user sees this row
        watched.locator("td.name a").click()
        expect(page.locator("#job-modal")).to_be_visible()
        url = page.url

        # unchanged answers are 304s: nothing to parse or redraw
        page.wait_for_timeout(4_500)
        assert 304 in statuses, statuses

        new = manager.create_root("noop", {}, name="arrived while watching")
        manager.create_root("sleep", {}, name="filtered out")
        expect(page.locator(f'#jobs-table tr[data-job-id="{new.id}"]')).to_have_count(
            1, timeout=6_000
        )
        expect(rows).to_have_count(41)  # the type filter still holds
        expect(page.locator("#job-modal")).to_be_visible()
        assert page.url == url
        # a row arrived above it, yet the row the user looked at has not moved
        assert abs(watched.bounding_box()["y"] - top) < 2
        assert page.evaluate("window.scrollY") > 300
        page.keyboard.press("Escape")
        expect(page.locator("#job-modal")).to_be_hidden()
        assert abs(watched.bounding_box()["y"] - top) < 2
        assert_page_was_clean(page)
    finally:
        context.close()


def test_refresh_pauses_while_the_tab_is_hidden(page, live_server, manager):
    from playwright.sync_api import expect

    manager.create_root("noop", {}, name="first")
    api_calls = []
    page.on("request", lambda r: api_calls.append(r.url) if "/api/" in r.url else None)
    with page.expect_request(lambda r: "/api/jobs" in r.url, timeout=4_000):
        page.goto(f"{live_server}/jobs")  # it polls while visible
    expect(page.locator("#jobs-table tr[data-job-id]")).to_have_count(1)

    set_visibility = """(state) => {
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => state});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    page.evaluate(set_visibility, "hidden")
    page.wait_for_timeout(300)
    api_calls.clear()
    new = manager.create_root("noop", {}, name="while hidden")
    page.wait_for_timeout(4_200)  # two polling periods
    assert api_calls == []
    page.evaluate(set_visibility, "visible")  # back: refreshes at once
    expect(page.locator(f'#jobs-table tr[data-job-id="{new.id}"]')).to_have_count(1, timeout=1_500)
