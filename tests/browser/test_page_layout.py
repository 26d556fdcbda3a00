"""The roots table shows a tree's failures, every action the API allows (pause and
resume too), and nothing clipped or overflowing at 1280 and 390 px (issue 14, 4, 5, 9)."""

import pytest

from tests.browser.helpers import assert_page_was_clean, confirm, open_context
from tests.test_tree_failures import W, fail_for_good, tree_with_failed_children

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def roots(manager):
    """One root of each kind the table shows differently; returns their ids by kind."""
    tree_id, _ = tree_with_failed_children(manager, failed=3, ok=1)
    leaf = manager.create_root("sleep", {"steps": 4}, name="failed leaf")
    fail_for_good(manager, leaf.id, progress=0.25)
    paused = manager.create_root("noop", {}, name="https://example.org/" + "p" * 80)
    manager.set_paused(paused.id, True)
    running = manager.create_root("sleep", {}, name="https://example.org/" + "r" * 80)
    manager.claim(running.id, W)
    return {"tree": tree_id, "leaf": leaf.id, "paused": paused.id, "running": running.id}


# Every visible part of every row lies inside the table's visible box, and no control
# is narrower than its text (a button cut to "Ca" has scrollWidth > clientWidth).
OVERFLOWS = """
() => {
  const wrap = document.querySelector('#jobs-table').closest('.table-wrap');
  const box = wrap.getBoundingClientRect();
  const problems = [];
  if (wrap.scrollWidth > wrap.clientWidth + 1) problems.push('table scrolls sideways');
  for (const row of document.querySelectorAll('#jobs-table tr[data-job-id]')) {
    for (const el of row.querySelectorAll('button, a, .badge, progress, .progress-text, time')) {
      const r = el.getBoundingClientRect();
      if (!r.width) continue;  // hidden
      const what = `row ${row.dataset.jobId} ${el.tagName} "${el.textContent.trim()}"`;
      if (r.left < box.left - 1 || r.right > box.right + 1) problems.push(`${what} sticks out`);
      const cut = el.closest('td.name') === null && el.scrollWidth > el.clientWidth + 1;
      if (cut && el.tagName !== 'PROGRESS') problems.push(`${what} is clipped`);
    }
  }
  return problems;
}
"""


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_no_row_overflows_or_is_clipped(browser, live_server, roots, width, height):
    from playwright.sync_api import expect

    context, page = open_context(browser, live_server, width=width, height=height)
    try:
        page.goto(f"{live_server}/jobs")
        expect(page.locator("#jobs-table tr[data-job-id]")).to_have_count(4)
        running = page.locator(f'#jobs-table tr[data-job-id="{roots["running"]}"]')
        expect(running.locator(".row-cancel")).to_be_visible()
        expect(running.locator(".row-pause")).to_be_visible()
        tree = page.locator(f'#jobs-table tr[data-job-id="{roots["tree"]}"]')
        expect(tree.locator(".row-delete")).to_be_visible()
        assert page.evaluate(OVERFLOWS) == []
        wide = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        assert page.evaluate(wide) <= 0
        assert_page_was_clean(page)
    finally:
        context.close()


def test_a_completed_tree_with_failures_reads_so_and_its_chip_lists_it(page, live_server, roots):
    from playwright.sync_api import expect

    page.goto(f"{live_server}/jobs")
    tree = page.locator(f'#jobs-table tr[data-job-id="{roots["tree"]}"]')
    expect(tree.locator("td.status")).to_have_text("completed with 3 failed")
    leaf = page.locator(f'#jobs-table tr[data-job-id="{roots["leaf"]}"]')
    expect(leaf.locator("progress")).to_have_attribute("value", "25")
    expect(leaf.locator(".progress-text")).not_to_contain_text("0/0")
    # the chips count roots: the 3 failed children are not 3 failed roots
    expect(page.locator('.stats a[data-status="failed"] .stat-count')).to_have_text("1")
    chip = page.locator(".stats a.stat-failures")
    expect(chip.locator(".stat-count")).to_have_text("1")
    chip.click()
    expect(page).to_have_url(f"{live_server}/jobs?has_failures=true")
    expect(page.locator("#jobs-table tr[data-job-id]")).to_have_count(1)
    expect(page.locator(f'#jobs-table tr[data-job-id="{roots["tree"]}"]')).to_be_visible()
    for status in ("failed", "completed"):  # each chip lists what it counts
        page.goto(f"{live_server}/jobs")
        n = page.locator(f'.stats a[data-status="{status}"] .stat-count').inner_text()
        page.locator(f'.stats a[data-status="{status}"]').click()
        expect(page.locator("#jobs-table tr[data-job-id]")).to_have_count(int(n))


def test_pause_and_resume_from_the_row_and_the_dialog(page, live_server, roots, manager):
    from playwright.sync_api import expect

    from quaero.models import Job

    page.goto(f"{live_server}/jobs")
    row = page.locator(f'#jobs-table tr[data-job-id="{roots["running"]}"]')
    row.locator(".row-pause").click()
    confirm(page)
    expect(row.locator(".row-resume")).to_be_visible()
    assert Job.get_by_id(roots["running"]).paused
    row.locator("td.name a").click()
    expect(page.locator("#btn-resume")).to_be_visible()
    expect(page.locator("#btn-pause")).to_be_hidden()
    page.locator("#btn-resume").click()
    confirm(page)
    expect(page.locator("#btn-pause")).to_be_visible()
    assert not Job.get_by_id(roots["running"]).paused
