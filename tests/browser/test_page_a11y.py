"""Accessibility (issue 14, point 10): axe-core finds no moderate, serious or critical
violation (light and dark) on /jobs and in the open details dialog; the page has an h1
and its scrollable regions can be reached from the keyboard."""

import os

import pytest

from tests.browser.axe import AxeUnavailable, fetch
from tests.test_tree_failures import tree_with_failed_children

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

RUN_AXE = """
async (selector) => {
  const IMPACTS = ['moderate', 'serious', 'critical'];
  const result = await window.axe.run(selector ? document.querySelector(selector) : document, {
    resultTypes: ['violations'],
  });
  return result.violations
    .filter((v) => IMPACTS.includes(v.impact))
    .map((v) => `${v.id} (${v.impact}): ${v.help} at `
      + v.nodes.map((n) => n.target.join(' ')).join(', '));
}
"""


@pytest.fixture
def axe_page(page):
    try:
        script = fetch()
    except AxeUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    # An init script is not subject to the page's CSP (script-src 'self').
    page.context.add_init_script(path=str(script))
    return page


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_on_the_page_and_in_the_dialog(
    axe_page, live_server, manager, scheme
):
    from playwright.sync_api import expect

    page = axe_page
    page.emulate_media(color_scheme=scheme)
    # a payload wider than the dialog, and rows with every action: regions that scroll
    wide = {"children": 0, "note": "n" * 400}
    root_id, _ = tree_with_failed_children(manager, failed=2, ok=1, payload=wide)
    manager.log(root_id, "warning", "two pages failed")
    for i in range(3):
        manager.create_root("sleep", {}, name=f"https://example.org/{i}/" + "x" * 80)
    page.goto(f"{live_server}/jobs")
    expect(page.locator("#jobs-table tr[data-job-id]")).to_have_count(4)
    assert page.evaluate(RUN_AXE, None) == []
    page.locator(f'#jobs-table tr[data-job-id="{root_id}"] td.name a').click()
    expect(page.locator("#modal-children tr[data-job-id]")).to_have_count(3)
    expect(page.locator("#modal-logs .log-line").first).to_be_visible()
    assert page.evaluate(RUN_AXE, "#job-modal") == []


def test_an_h1_and_focusable_scrollable_regions(page, live_server, manager):
    page.goto(f"{live_server}/jobs")
    assert page.locator("h1").count() == 1
    for region in (".table-wrap",):
        assert page.locator(region).first.get_attribute("tabindex") == "0"
