"""Regenerate the README's screenshots of the jobs page (`make screenshots`).

Starts `run.py serve` on a temporary config and data folder, crawls local test sites
(one finished crawl, one with a failed page, one still running, one cancelled, a
failed job), and saves docs/jobs-{1280,390}.png and docs/modal-{1280,390}.png taken
by Debian's Chromium through Playwright. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.browser.helpers import ARGS, CHROMIUM
from tests.procs import ROOT, RunPy, free_port, write_config
from tests.sites import TestSite

DOCS = ROOT / "docs"
SIZES = {"1280": (1280, 800), "390": (390, 844)}


def wait_finished(base: str, job_id: int, timeout: float = 90) -> dict:
    """Poll the API until the job is finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{base}/api/jobs/{job_id}", timeout=5).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise SystemExit(f"job {job_id} did not finish in {timeout}s")


def submit(base: str, body: dict) -> int:
    """POST /api/jobs; the new job's id."""
    response = requests.post(f"{base}/api/jobs", json=body, timeout=10)
    response.raise_for_status()
    return response.json()["id"]


def populate(base: str, fast: TestSite, slow: TestSite) -> int:
    """A realistic page of roots; returns the id of the crawl the modal shows."""
    crawl = {"type": "crawler", "payload": {"url": fast.url("/"), "depth": 1, "max_pages": 100}}
    wait_finished(base, submit(base, crawl))
    failing = submit(
        base,
        {
            "type": "sleep",
            "name": "nightly export",
            "max_attempts": 1,
            "payload": {"seconds": 0.2, "fail": "transient"},
        },
    )
    wait_finished(base, failing)
    shown = submit(
        base, {"type": "crawler", "payload": {"url": fast.url("/"), "depth": 3, "max_pages": 300}}
    )
    wait_finished(base, shown)
    cancelled = submit(base, {"type": "crawler", "payload": {"url": slow.url("/"), "depth": 3}})
    time.sleep(1.5)
    requests.post(f"{base}/api/jobs/{cancelled}/cancel", timeout=5).raise_for_status()
    submit(
        base,
        {
            "type": "fanout",
            "name": "thumbnails batch",
            "payload": {"children": 40, "child_type": "noop"},
        },
    )
    submit(base, {"type": "crawler", "payload": {"url": slow.url("/"), "depth": 3}})
    time.sleep(3)  # the last crawl is running, part way through
    return shown


def capture(base: str, job_id: int) -> None:
    """The page and the modal at each size, in light mode."""
    from playwright.sync_api import expect, sync_playwright

    DOCS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for size, (width, height) in SIZES.items():
            context = browser.new_context(
                viewport={"width": width, "height": height},
                color_scheme="light",
                device_scale_factor=1,
            )
            page = context.new_page()
            page.goto(f"{base}/jobs")
            expect(page.locator("#jobs-table tr[data-job-id]").first).to_be_visible()
            page.wait_for_timeout(500)
            page.screenshot(path=str(DOCS / f"jobs-{size}.png"))
            page.goto(f"{base}/jobs?job={job_id}")
            expect(page.locator("#modal-status")).to_be_visible()
            expect(page.locator("#modal-children tr[data-job-id]").first).to_be_visible()
            page.evaluate("document.activeElement.blur()")  # no focus ring in the picture
            page.wait_for_timeout(500)
            page.screenshot(path=str(DOCS / f"modal-{size}.png"))
            context.close()
        browser.close()


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="quaero-shots-") as tmp,
        TestSite(n_pages=80, seed=3, delay=0.01) as fast,
        TestSite(n_pages=200, seed=7, delay=0.4) as slow,
    ):
        port = free_port()
        config = write_config(Path(tmp), port, "[queue]\nnum_workers = 4")
        serve = RunPy("serve", config).start()
        base = f"http://127.0.0.1:{port}"
        try:
            serve.wait_healthy(base)
            shown = populate(base, fast, slow)
            capture(base, shown)
        finally:
            serve.signal(signal.SIGINT)
            try:
                serve.wait(timeout=15)
            finally:
                serve.stop()
    for name in sorted(DOCS.glob("*.png")):
        print(f"wrote {name.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
