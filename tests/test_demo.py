"""`make demo` (issue 14, point 12): the bundled site is served on 127.0.0.1, allowed
explicitly by examples/demo.toml, and its crawl succeeds offline. Runs `run.py demo` with
that config, on free ports and with its files in tmp_path."""

import re
import time

import requests

from tests.procs import ROOT, free_port

DEMO_PAGES = 8  # examples/demo_site/*.html, all within depth 2 of the start page


def test_the_demo_crawls_the_bundled_site(tmp_path, procs):
    port, site_port = free_port(), free_port()
    env = {
        "QUAERO_SERVER_PORT": str(port),
        "QUAERO_CRAWLER_ALLOW_HOSTS": f'["127.0.0.1:{site_port}"]',
        "QUAERO_DATABASE_URL": f"sqlite:///{tmp_path / 'quaero.db'}",
        "QUAERO_QUEUE_PATH": str(tmp_path / "queue.db"),
    }
    demo = procs("demo", ROOT / "examples" / "demo.toml", env)
    base = f"http://127.0.0.1:{port}"
    demo.wait_healthy(base)
    assert requests.get(f"http://127.0.0.1:{site_port}/", timeout=5).status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"crawling (\S+) as job (\d+)", demo.output())
        if match:
            break
        time.sleep(0.1)
    assert match, demo.output()
    assert match.group(1) == f"http://127.0.0.1:{site_port}/"
    job_id = int(match.group(2))
    while time.monotonic() < deadline:
        root = requests.get(f"{base}/api/jobs/{job_id}", timeout=5).json()
        if root["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert root["status"] == "completed", root
    assert root["counts"]["failed"] == 0
    assert root["counts"]["completed"] == DEMO_PAGES, root["counts"]


def test_the_demo_config_allows_only_its_site():
    from quaero import config as config_mod

    config = config_mod.load(ROOT / "examples" / "demo.toml")
    assert config.crawler.allow_hosts == ["127.0.0.1:8086"]
    assert not config.crawler.allow_private_networks
