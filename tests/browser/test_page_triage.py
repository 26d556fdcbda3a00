"""Failure triage on the page (issue 16): the dialog's "All jobs" view with paging that
jumps to any page, the "Failures" view with "Retry these N", the whole-tree log, the
export link, "select all that match" with a bulk action stating its count, and the
workers panel."""

import csv

import pytest

from quaero.executors.base import ChildSpec
from quaero.models import Job
from tests.browser.helpers import confirm
from tests.test_tree_failures import W

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def big_tree(manager, pages=60, http_failures=6, timeouts=3):
    """root → start page → `pages` pages: the first ones fail with HTTP errors (each
    with its own code and URL), the next with timeouts, the rest complete."""
    root = manager.create_root("fanout", {"children": 0}, name="big crawl")
    claimed = manager.claim(root.id, W)
    (start_id,) = manager.spawn_children(claimed, [ChildSpec("noop", {}, name="start")])
    start = manager.claim(start_id, W)
    ids = manager.spawn_children(
        start,
        [
            ChildSpec("noop", {"url": f"https://s.example/p/{i}"}, name=f"page {i}")
            for i in range(pages)
        ],
    )
    for n, job_id in enumerate(ids):
        job = manager.claim(job_id, W)
        manager.log(job_id, "info", f"fetching page {n}")
        if n < http_failures:
            error = f"HTTPError: HTTP {500 + n} for https://s.example/p/{n}"
            manager.fail(job, W, error, None, permanent=True)
        elif n < http_failures + timeouts:
            manager.fail(job, W, f"Timeout: no answer in {n} s", None, permanent=True)
        else:
            result = {"url": f"https://s.example/p/{n}", "status_code": 200, "title": f"P{n}"}
            manager.complete(job, W, result)
    manager.complete(start, W, None)
    manager.complete(claimed, W, None)
    return root.id, ids


def test_all_jobs_view_pages_and_jumps_to_any_page(page, live_server, manager):
    from playwright.sync_api import expect

    root_id, ids = big_tree(manager)
    page.goto(f"{live_server}/jobs?job={root_id}")
    expect(page.locator("#modal-title")).to_contain_text(f"#{root_id}")
    expect(page.locator("#children-range")).to_have_text("1–1 of 1")  # one direct child
    page.locator("#view-all").click()
    expect(page.locator("#view-all")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#desc-range")).to_have_text("1–20 of 61")
    expect(page.locator("#desc-pages")).to_have_text("of 4")
    page.locator("#desc-page").fill("4")
    page.locator("#desc-go").click()
    expect(page.locator("#desc-range")).to_have_text("61–61 of 61")
    expect(page.locator(f'#desc-table tr[data-job-id="{ids[-1]}"]')).to_be_visible()
    expect(page.locator("#desc-next")).to_be_disabled()
    page.locator("#desc-first").click()
    expect(page.locator("#desc-range")).to_have_text("1–20 of 61")
    page.locator("#desc-page").fill("3")
    page.locator("#desc-page").press("Enter")
    expect(page.locator("#desc-range")).to_have_text("41–60 of 61")
    page.locator("#desc-status").select_option("failed")
    expect(page.locator("#desc-range")).to_have_text("1–9 of 9")
    expect(page.locator("#desc-table .error-cell").first).to_contain_text("HTTP 500")
    page.locator(f'#desc-table tr[data-job-id="{ids[0]}"] button').click()
    expect(page.locator("#modal-title")).to_contain_text(f"#{ids[0]} page 0")


def test_failures_view_groups_causes_and_retries_one(page, live_server, manager):
    from playwright.sync_api import expect

    root_id, ids = big_tree(manager)
    page.goto(f"{live_server}/jobs?job={root_id}")
    page.locator("#view-failures").click()
    groups = page.locator("#failure-groups .failure-group")
    expect(groups).to_have_count(2)
    expect(page.locator("#failures-title")).to_contain_text("9 failed, 2 causes")
    timeouts, http = groups.nth(0), groups.nth(1)  # the timeouts failed last
    expect(http.locator(".group-message")).to_have_text("HTTPError: HTTP <n> for <url>")
    expect(http.locator(".group-count")).to_have_text("6")
    expect(timeouts.locator(".group-retry")).to_have_text("Retry these 3")

    http.locator(".group-show").click()  # the group's jobs in the All jobs view
    expect(page.locator("#desc-range")).to_have_text("1–6 of 6")
    page.locator("#view-failures").click()

    http.locator(".group-retry").click()
    expect(page.locator("#confirm-text")).to_contain_text("Retry 6 failed or cancelled jobs")
    confirm(page)
    expect(page.locator("#flash")).to_contain_text("Retry: 1 of 1 trees done")
    expect(groups).to_have_count(1)
    expect(groups.first.locator(".group-count")).to_have_text("3")
    statuses = {j.id: j.status for j in Job.select().where(Job.id.in_(ids[:9]))}
    assert [statuses[i] for i in ids[:9]] == ["pending"] * 6 + ["failed"] * 3


def test_whole_tree_log_switch_merges_the_descendants_lines(page, live_server, manager):
    from playwright.sync_api import expect

    root_id, ids = big_tree(manager, pages=5, http_failures=1, timeouts=0)
    page.goto(f"{live_server}/jobs?job={root_id}")
    lines = page.locator("#modal-logs .log-line")
    expect(page.locator("#modal-logs")).not_to_contain_text("fetching page")
    page.locator("#log-tree").check()
    expect(lines.filter(has_text="fetching page 4")).to_have_count(1)
    expect(lines.filter(has_text="fetching page 0").locator(".log-job")).to_have_text(f"#{ids[0]}")
    page.locator("#log-tree").uncheck()
    expect(page.locator("#modal-logs")).not_to_contain_text("fetching page")


def test_export_link_downloads_every_descendant(page, live_server, manager, tmp_path):
    from playwright.sync_api import expect

    root_id, ids = big_tree(manager, pages=12, http_failures=2, timeouts=1)
    page.goto(f"{live_server}/jobs?job={root_id}")
    expect(page.locator("#export-csv")).to_have_attribute(
        "href", f"/api/jobs/{root_id}/export?format=csv"
    )
    with page.expect_download() as info:
        page.locator("#export-csv").click()
    target = tmp_path / "tree.csv"
    info.value.save_as(target)
    with open(target, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 13 and rows[-1]["title"] == "P11"
    assert rows[1]["error"].startswith("HTTPError: HTTP 500")


def test_select_all_that_match_then_a_bulk_action_states_its_count(page, live_server, manager):
    from playwright.sync_api import expect

    batch = [manager.create_root("noop", {}, name=f"batch {i}").id for i in range(3)]
    other = manager.create_root("noop", {}, name="other").id
    page.goto(f"{live_server}/jobs")
    expect(page.locator("#select-all-matching")).to_be_hidden()  # no filter: no "all"
    page.locator("#filters input[name=q]").fill("batch")
    expect(page.locator("#page-range")).to_have_text("showing 1–3 of 3")
    page.locator("#select-all-matching").check()
    expect(page.locator(".bulk-bar")).to_contain_text("Select all 3 root jobs that match")

    page.locator("#bulk-cancel").click()
    expect(page.locator("#confirm-text")).to_have_text(
        "Cancel 3 unfinished jobs in 3 trees under the root jobs that match these filters?"
    )
    page.locator("#confirm-no").click()
    assert Job.get_by_id(batch[0]).status == "pending"

    page.locator("#bulk-cancel").click()
    confirm(page)
    expect(page.locator("#flash")).to_contain_text("Cancel: 3 of 3 trees done")
    for job_id in batch:
        row = page.locator(f'#jobs-table tr[data-job-id="{job_id}"]')
        expect(row.locator(".badge")).to_have_text("cancelled")
    assert Job.get_by_id(other).status == "pending"
    expect(page.locator("#select-all-matching")).not_to_be_checked()


def test_workers_panel_lists_live_workers_and_their_running_jobs(
    page, live_server, manager, worker
):
    from playwright.sync_api import expect

    job = manager.create_root("sleep", {"seconds": 20, "steps": 20}, name="long sleep")
    page.goto(f"{live_server}/jobs")
    rows = page.locator("#workers-table tbody tr[data-worker-id]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("s ago")
    link = rows.first.locator(".running-jobs a", has_text=f"#{job.id}")
    expect(link).to_be_visible(timeout=10_000)
    link.click()
    expect(page.locator("#modal-title")).to_contain_text(f"#{job.id} long sleep")
    manager.cancel_tree(job.id)
