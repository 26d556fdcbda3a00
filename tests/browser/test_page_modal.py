"""The details modal: deep links, Esc, every field, children paging and drill-down with
breadcrumbs, and the live log tail with its level filter and follow toggle."""

import re

import pytest
import requests

from tests.helpers import wait_for_job

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def submit(base: str, body: dict) -> int:
    response = requests.post(f"{base}/api/jobs", json=body, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_deep_link_opens_the_modal_with_every_field_and_survives_reload(page, live_server, worker):
    from playwright.sync_api import expect

    job_id = submit(
        live_server,
        {
            "type": "sleep",
            "name": "nightly export",
            "max_attempts": 1,
            "payload": {"seconds": 0.1, "fail": "transient"},
        },
    )
    assert wait_for_job(live_server, job_id)["status"] == "failed"

    page.goto(f"{live_server}/jobs?job={job_id}")
    modal = page.locator("#job-modal")
    expect(modal).to_be_visible()
    expect(page.locator("#modal-title")).to_have_text(f"#{job_id} nightly export")
    expect(page.locator("#modal-status")).to_have_text("failed")
    expect(page.locator("#modal-error")).to_contain_text("asked to fail")
    expect(page.locator("#modal-traceback")).to_contain_text("RuntimeError")
    expect(page.locator("#modal-payload")).to_contain_text('"fail": "transient"')
    expect(page.locator("#modal-result")).to_have_text("null")
    fields = page.locator("#job-modal dl.fields").all_inner_texts()
    text = "\n".join(fields)
    for label in ("ATTEMPTS", "QUEUED", "WAITED", "STARTED", "FINISHED", "DURATION", "WORKER"):
        assert label in text.upper()
    assert "1 / 1" in text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page.locator("#modal-created").inner_text())
    expect(page.locator("#modal-duration")).to_contain_text(" s")
    # a failed job may be retried or deleted, not cancelled
    expect(page.locator("#btn-retry")).to_be_visible()
    expect(page.locator("#btn-delete")).to_be_visible()
    expect(page.locator("#btn-cancel")).to_be_hidden()
    expect(page.locator("#modal-logs .log-line[data-level=error]").first).to_be_visible()

    page.reload()
    expect(modal).to_be_visible()
    expect(page.locator("#modal-status")).to_have_text("failed")

    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()
    assert "job=" not in page.url
    # the page behind is usable again (it was inert while the dialog was open)
    expect(page.locator(f'#jobs-table tr[data-job-id="{job_id}"]')).to_be_visible()
    page.locator(f'#jobs-table tr[data-job-id="{job_id}"] td.name a').click()
    expect(modal).to_be_visible()
    page.locator("#modal-close").click()
    expect(modal).to_be_hidden()


def test_children_page_filter_and_drill_down_with_breadcrumbs(page, live_server, worker):
    from playwright.sync_api import expect

    root = submit(live_server, {"type": "fanout", "name": "batch", "payload": {"children": 45}})
    assert wait_for_job(live_server, root)["status"] == "completed"

    page.goto(f"{live_server}/jobs?job={root}")
    rows = page.locator("#modal-children tr[data-job-id]")
    expect(page.locator("#modal-total")).to_have_text("45")
    expect(rows).to_have_count(20)
    expect(page.locator("#children-range")).to_have_text("1–20 of 45")
    expect(page.locator("#children-prev")).to_be_disabled()
    page.locator("#children-next").click()
    expect(page.locator("#children-range")).to_have_text("21–40 of 45")
    page.locator("#children-next").click()
    expect(page.locator("#children-range")).to_have_text("41–45 of 45")
    expect(rows).to_have_count(5)
    expect(page.locator("#children-next")).to_be_disabled()

    page.locator("#children-status").select_option("failed")
    expect(rows).to_have_count(0)
    expect(page.locator("#children-range")).to_have_text("none failed")
    page.locator("#children-status").select_option("completed")
    expect(page.locator("#children-range")).to_have_text("1–20 of 45")

    # drill into a child: the title and breadcrumbs follow, and lead back to the root
    child_id = rows.first.get_attribute("data-job-id")
    rows.first.click()
    expect(page.locator("#modal-title")).to_have_text(f"#{child_id} noop 0")
    assert f"job={child_id}" in page.url
    crumbs = page.locator(".crumbs .crumb")
    expect(crumbs).to_have_count(2)
    expect(crumbs.nth(0)).to_have_text(f"#{root} batch")
    expect(crumbs.nth(1)).to_have_attribute("aria-current", "page")
    expect(page.locator("#modal-children tr.empty")).to_be_visible()
    crumbs.nth(0).click()
    expect(page.locator("#modal-title")).to_have_text(f"#{root} batch")
    expect(page.locator("#children-range")).to_have_text("1–20 of 45")

    # a deep link to the child rebuilds the whole trail from the root
    page.goto(f"{live_server}/jobs?job={child_id}")
    expect(page.locator(".crumbs .crumb")).to_have_count(2)
    expect(page.locator(".crumbs .crumb").nth(0)).to_have_text(f"#{root} batch")


def test_log_tails_live_follows_and_filters_by_level(page, live_server, worker):
    from playwright.sync_api import expect

    job_id = submit(
        live_server,
        {
            "type": "sleep",
            "max_attempts": 1,
            "payload": {"seconds": 5, "steps": 50, "fail": "permanent"},
        },
    )
    page.goto(f"{live_server}/jobs?job={job_id}")
    lines = page.locator("#modal-logs .log-line")
    expect(lines.nth(3)).to_be_visible()
    first_count = lines.count()
    expect(lines.nth(first_count + 5)).to_be_attached(timeout=10_000)  # new lines append

    # following: the log box stays scrolled to its end as lines arrive
    box = page.locator("#modal-logs")
    at_end = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 10"
    page.wait_for_function(
        "() => { const el = document.getElementById('modal-logs');"
        " return el.scrollHeight > el.clientHeight"
        " && el.scrollHeight - el.scrollTop - el.clientHeight < 10; }"
    )
    follow = page.locator("#log-follow")
    expect(follow).to_be_checked()
    follow.uncheck()
    box.evaluate("el => { el.scrollTop = 0; }")
    count = lines.count()
    expect(lines.nth(count + 3)).to_be_attached(timeout=10_000)
    assert box.evaluate("el => el.scrollTop") == 0  # not following: the view stays put
    follow.check()
    page.wait_for_function(
        "() => { const el = document.getElementById('modal-logs');"
        " return el.scrollHeight - el.scrollTop - el.clientHeight < 10; }"
    )
    assert box.evaluate(at_end)

    expect(page.locator("#modal-status")).to_have_text("failed", timeout=20_000)
    expect(page.locator('#modal-logs .log-line[data-level="error"]')).to_have_count(1)
    page.locator("#log-level").select_option("error")
    expect(lines).to_have_count(1)
    expect(lines.first).to_contain_text("asked to fail permanently")
    page.locator("#log-level").select_option("info")
    api_lines = requests.get(
        f"{live_server}/api/jobs/{job_id}/logs", params={"level": "info", "limit": 1000}, timeout=5
    ).json()["logs"]
    assert len(api_lines) > 50  # 50 steps, the failure, and what the worker says
    expect(lines).to_have_count(len(api_lines))
    expect(page.locator('#modal-logs .log-line[data-level="debug"]')).to_have_count(0)
