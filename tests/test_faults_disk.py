"""A full disk: `serve` with its SQLite files on a 20 MiB tmpfs that fills up during a
3,000-child fan-out. While writes fail /healthz says so (503); once space returns,
every job is final within a lease and a reaper round, none lost, none duplicated."""

import contextlib
import errno
import os
import shutil
import subprocess
import time

import pytest
import requests

from tests.faults import record_figures
from tests.helpers import wait_for
from tests.procs import free_port, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MiB tmpfs of the test's own (needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(path):
    """Write zeros until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:
        (path.parent / "probe").write_bytes(b"\0" * 8192)
    assert full.value.errno == errno.ENOSPC


def test_a_full_disk_leaves_no_job_running_once_space_returns(small_disk, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    lease, reaper = 3, 0.5
    config = write_config(
        small_disk,
        port,
        f"[jobs]\nlease_seconds = {lease}\nreaper_interval = {reaper}\n[queue]\nnum_workers = 3",
    )
    serve = procs("serve", config)
    serve.wait_healthy(base)
    answer = requests.post(
        f"{base}/api/jobs",
        json={"type": "fanout", "payload": {"children": 3000, "batch": 50}},
        timeout=5,
    )
    root_id = answer.json()["id"]
    wait_for(
        lambda: (
            requests.get(f"{base}/api/jobs/{root_id}", timeout=5).json()["counts"]["total"] >= 200
        ),
        timeout=30,
        interval=0.01,
    )
    filler = small_disk / "filler"
    fill(filler)
    health = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            health.append(requests.get(f"{base}/healthz", timeout=2).status_code)
        time.sleep(0.2)
    filler.unlink()
    (small_disk / "probe").unlink(missing_ok=True)
    freed = time.monotonic()
    assert 503 in health, f"/healthz never said writes fail: {health}"
    assert "full" in serve.output()  # the fault took effect: SQLite said so

    wait_for(lambda: requests.get(f"{base}/healthz", timeout=2).status_code == 200, timeout=10)

    def root():
        job = requests.get(f"{base}/api/jobs/{root_id}", timeout=5).json()
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    # lease + reaper round for what was stuck, plus time to run what is left
    done = wait_for(root, timeout=lease + reaper + 60, interval=0.2)
    took = time.monotonic() - freed
    assert done["status"] == "completed", done
    assert done["counts"]["total"] == done["counts"]["completed"] == 3000, done["counts"]
    stats = requests.get(f"{base}/api/stats", timeout=5).json()
    assert stats["counts"].get("running", 0) == 0 and stats["counts"].get("pending", 0) == 0
    record_figures(
        "disk-full",
        "SQLite on a 20 MiB tmpfs that fills up during a 3,000-child fan-out",
        lost=0,
        stuck=0,
        healthz_503_seen=True,
        recover_s=round(took, 1),
    )
