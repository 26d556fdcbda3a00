"""The look: a phone's width without sideways scrolling, dark mode from the system
setting, status shown in words as well as colour, and the page usable by keyboard."""

import pytest

from tests.browser.helpers import assert_page_was_clean, open_context

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def roots(manager):
    ids = [
        manager.create_root("noop", {}, name=f"https://example.org/{'x' * 60}/{i}").id
        for i in range(3)
    ]
    manager.cancel_tree(ids[0])
    return ids


def test_phone_width_needs_no_sideways_scrolling(browser, live_server, roots):
    from playwright.sync_api import expect

    context, page = open_context(browser, live_server, width=390, height=844)
    try:
        page.goto(f"{live_server}/jobs")
        expect(page.locator("#jobs-table tr[data-job-id]")).to_have_count(3)
        wide = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        assert page.evaluate(wide) <= 0
        row = page.locator(f'#jobs-table tr[data-job-id="{roots[1]}"]')
        for part in ("td.name a", ".badge", "progress", ".progress-text", ".row-cancel"):
            box = row.locator(part).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, part
        row.locator("td.name a").click()
        expect(page.locator("#modal-status")).to_have_text("pending")
        panel = page.locator(".modal-panel").bounding_box()
        assert panel["width"] <= 390
        assert page.evaluate(wide) <= 0
        assert_page_was_clean(page)
    finally:
        context.close()


def test_dark_mode_follows_the_system_setting(browser, live_server, roots):
    colours = {}
    for scheme in ("light", "dark"):
        context, page = open_context(browser, live_server, color_scheme=scheme)
        try:
            page.goto(f"{live_server}/jobs")
            colours[scheme] = page.evaluate(
                "[getComputedStyle(document.body).backgroundColor,"
                " getComputedStyle(document.body).color]"
            )
            assert_page_was_clean(page)
        finally:
            context.close()
    assert colours["light"] != colours["dark"]

    def brightness(css: str) -> int:
        return sum(int(part) for part in css[css.index("(") + 1 : -1].split(",")[:3])

    assert brightness(colours["dark"][0]) < 150 < brightness(colours["dark"][1])
    assert brightness(colours["light"][0]) > 600 > brightness(colours["light"][1])


def test_keyboard_opens_the_modal_and_esc_gives_focus_back(page, live_server, roots):
    from playwright.sync_api import expect

    page.goto(f"{live_server}/jobs")
    link = page.locator(f'#jobs-table tr[data-job-id="{roots[2]}"] td.name a')
    expect(link).to_be_visible()
    link.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#job-modal")).to_be_visible()
    expect(page.locator("#modal-close")).to_be_focused()
    # the page behind the dialog is inert and Tab cycles through the dialog's controls
    expect(page.locator("#modal-status")).to_have_text("pending")
    seen = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        seen.add(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        assert page.evaluate("document.activeElement.closest('.modal-panel') !== null")
    assert {"modal-close", "children-status", "log-level", "log-follow", "btn-cancel"} <= seen
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.closest('.modal-panel') !== null")
    page.keyboard.press("Escape")
    expect(page.locator("#job-modal")).to_be_hidden()
    expect(link).to_be_focused()

    # actions by keyboard too: the confirmation takes focus, Esc answers "no"
    cancel = page.locator(f'#jobs-table tr[data-job-id="{roots[2]}"] .row-cancel')
    cancel.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-ok")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    expect(page.locator(f'#jobs-table tr[data-job-id="{roots[2]}"] .badge')).to_have_text("pending")


def test_read_only_server_shows_no_form_and_no_actions(browser, tmp_path):
    from playwright.sync_api import expect

    from quaero.services import build_services
    from tests.browser.helpers import serve_app
    from tests.helpers import make_config

    services = build_services(make_config(tmp_path, server={"read_only": True}))
    try:
        failed = services.manager.create_root("noop", {}, name="to look at")
        services.manager.cancel_tree(failed.id)
        with serve_app(services) as base:
            context, page = open_context(browser, base)
            try:
                page.goto(f"{base}/jobs")
                row = page.locator(f'#jobs-table tr[data-job-id="{failed.id}"]')
                expect(row.locator(".badge")).to_have_text("cancelled")
                expect(page.locator("#new-job-form")).to_have_count(0)
                expect(row.locator("button")).to_have_count(5)  # retry, pause, resume, ...
                for button in row.locator("button").all():
                    expect(button).to_be_hidden()
                row.locator("td.name a").click()
                expect(page.locator("#modal-status")).to_have_text("cancelled")
                for button in (
                    "#btn-retry",
                    "#btn-pause",
                    "#btn-resume",
                    "#btn-cancel",
                    "#btn-delete",
                ):
                    expect(page.locator(button)).to_be_hidden()
                assert_page_was_clean(page)
            finally:
                context.close()
    finally:
        services.close()
