"""`run.py jobs`: the page's counts and roots table in the terminal."""

import subprocess
import sys

from quaero import config as config_mod
from quaero.services import build_services
from tests.procs import ROOT, free_port, write_config


def test_jobs_prints_counts_then_the_roots_newest_first(tmp_path):
    config_path = write_config(tmp_path, free_port())
    services = build_services(config_mod.load(str(config_path)))
    try:
        first = services.manager.create_root("noop", {}, name="older root")
        second = services.manager.create_root("sleep", {}, name="newer root")
        services.manager.cancel_tree(first.id)
    finally:
        services.close()
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "jobs", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("pending 1  running 0  completed 0  failed 0  cancelled 1")
    assert "queue " in lines[0] and "workers 0" in lines[0]
    assert lines[1].split()[:4] == ["ID", "STATUS", "TYPE", "PROGRESS"]
    assert lines[2].split()[0] == str(second.id) and "newer root" in lines[2]
    assert "cancelled" in lines[3] and "0/0 (0 failed)" in lines[3] and "older root" in lines[3]
    assert lines[-1] == "2 of 2 root jobs, newest first"
