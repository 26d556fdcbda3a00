"""One row template (issue 18, point 7): the server-rendered rows, the rows jobs.js keeps
live and `quaero jobs` come from one definition (quaero/rows.py and jobs.html's
`root_row`), so for the same job they say the same; and the page's polls stay
conditional GETs answered 304 while nothing changes, signed in too."""

from __future__ import annotations

import argparse
import re

import pytest
import requests
from playwright.sync_api import expect

from quaero import rows
from quaero.services import build_services
from tests.browser.helpers import assert_page_was_clean, open_context, serve_app
from tests.helpers import make_config
from tests.test_tree_failures import W, fail_for_good, tree_with_failed_children

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

# Each root row as the user reads it: the text of each column's cell (white space
# folded), then what the eye does not read but a screen reader or a click does.
READ_ROWS = """
(n) => Array.from(document.querySelectorAll('#jobs-table tr[data-job-id]')).map((tr) => {
  const text = (el) => el.innerText.replace(/\\s+/g, ' ').trim();
  const cells = Array.from(tr.cells).slice(0, n).map(text);
  const progress = tr.querySelector('progress');
  const name = tr.querySelector('td.name a');
  return {
    id: tr.dataset.jobId,
    cells,
    classes: Array.from(tr.cells).map((td) => td.className),
    badge: tr.querySelector('.badge').className,
    progress: [progress.value, progress.getAttribute('aria-label')],
    name: [name.getAttribute('title'), new URL(name.href).search],
    time: tr.querySelector('time').getAttribute('datetime'),
  };
})
"""


@pytest.fixture
def roots(manager):
    """Roots that read differently: a completed tree with failures, a failed leaf at
    12.5% (a half: Math.round and Python's round disagree on those), a pending root
    with markup in its name, a cancelled one and one known by its URL only."""
    tree_id, _ = tree_with_failed_children(manager, failed=3, ok=1)
    leaf = manager.create_root("sleep", {"steps": 8}, name="failed leaf")
    fail_for_good(manager, leaf.id, progress=0.125)
    pending = manager.create_root("noop", {}, name='<b>bold</b> & "quoted"')
    cancelled = manager.create_root("sleep", {}, name="cancelled root")
    manager.cancel_tree(cancelled.id)
    done = manager.create_root("noop", {"url": "https://example.org/only-a-url"})
    manager.complete(manager.claim(done.id, W), W, None)
    return {"tree": tree_id, "pending": pending.id, "cancelled": cancelled.id}


def server_rows(browser, url: str) -> list[dict]:
    """The rows as the server renders them (JavaScript off: no live rows)."""
    context, pg = open_context(browser, url, java_script_enabled=False)
    try:
        pg.goto(f"{url}/jobs")
        return pg.evaluate(READ_ROWS, len(rows.ROOT_COLUMNS))
    finally:
        context.close()


def test_server_rows_live_rows_and_the_cli_say_the_same(
    browser, page, live_server, manager, config, roots, capsys
):
    from quaero.cli import cmd_jobs

    page.goto(f"{live_server}/jobs")
    expect(page.locator("[data-server-rows]")).to_have_count(0)  # Alpine took over
    # the headers are the columns' labels, the cells have their classes
    headers = page.locator("#jobs-table thead th").all_inner_texts()
    assert [h.strip().lower() for h in headers[:-1]] == [c.label.lower() for c in rows.ROOT_COLUMNS]

    # a row the poll updates (not the embedded first page) reads as the server renders it
    manager.cancel_tree(roots["pending"])
    pending = page.locator(f'#jobs-table tr[data-job-id="{roots["pending"]}"]')
    expect(pending.locator(".badge")).to_have_text("cancelled", timeout=6_000)
    live = page.evaluate(READ_ROWS, len(rows.ROOT_COLUMNS))
    served = server_rows(browser, live_server)
    assert len(live) == 5
    assert live == served

    # ... and as quaero/rows.py's formatters write each column from the API's JSON
    api = requests.get(f"{live_server}/api/jobs", timeout=10).json()["jobs"]
    expected = [[str(c.text(job)) for c in rows.ROOT_COLUMNS] for job in api]
    assert [row["cells"] for row in live] == expected
    assert live[0]["classes"][: len(rows.ROOT_COLUMNS)] == [c.css for c in rows.ROOT_COLUMNS]
    by_id = {row["id"]: row for row in live}
    assert by_id[str(roots["tree"])]["cells"][3] == "completed with 3 failed"
    assert "has-failures" in by_id[str(roots["tree"])]["badge"]
    leaf = next(row for row in live if row["cells"][1] == "failed leaf")
    assert leaf["progress"] == [13, "13%"]
    assert by_id[str(roots["pending"])]["cells"][1] == '<b>bold</b> & "quoted"'  # as text

    # `quaero jobs` prints the same columns and, in each row, the same texts in order
    capsys.readouterr()
    args = argparse.Namespace(status=None, type=None, q=None, has_failures=False, limit=20)
    assert cmd_jobs(config, args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == [c.label.upper() for c in rows.ROOT_COLUMNS]
    for line, cells in zip(lines[2:-1], expected, strict=True):
        at = 0
        for cell in cells:
            at = line.index(cell, at) + len(cell)  # raises if missing or out of order
    assert_page_was_clean(page)


def test_polls_are_304s_signed_in_and_a_change_still_shows(browser, tmp_path):
    """With a token every answer is `Cache-Control: no-store`, so the browser's HTTP
    cache keeps nothing and could not revalidate (`cache: "no-cache"` would fetch every
    body again): jobs.js's own ETags are what make an unchanged poll a bodiless 304."""
    token = "r0ws-" + "k3J9vR2mXw7LpT4nYb6HcE1sGd5AfU0o"
    services = build_services(make_config(tmp_path, server={"api_token": token}))
    answers: list[tuple[str, int, str | None]] = []
    try:
        first = services.manager.create_root("noop", {}, name="first root")
        with serve_app(services, answers) as url:
            context, pg = open_context(browser, url)
            try:
                pg.goto(f"{url}/jobs")
                pg.fill("#token", token)
                pg.click("button[type=submit]")
                expect(pg.locator(f'#jobs-table tr[data-job-id="{first.id}"]')).to_be_visible()
                pg.wait_for_timeout(4_500)  # two polls of unchanged data
                polls = [a for a in answers if re.match(r"/api/(jobs\?|stats$)", a[0])]
                assert any(status == 304 and etag for _, status, etag in polls), polls
                assert all(status in (200, 304) for _, status, _ in polls), polls

                answers.clear()
                later = services.manager.create_root("noop", {}, name="arrived later")
                row = pg.locator(f'#jobs-table tr[data-job-id="{later.id}"]')
                expect(row).to_contain_text("arrived later", timeout=6_000)
                assert any(a[0].startswith("/api/jobs?") and a[1] == 200 for a in answers)
                assert_page_was_clean(pg)
            finally:
                context.close()
    finally:
        services.close()
