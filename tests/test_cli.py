"""run.py as a user runs it: real processes, real ports on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import procs
from tests.helpers import wait_for
from tests.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def write_config(tmp_path: Path, port: int, **extra: str) -> Path:
    return procs.write_config(tmp_path, port, f"[queue]\nnum_workers = {extra.get('workers', 3)}")


def run_py(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=kw.pop("cwd", ROOT),
        **kw,
    )


@pytest.fixture
def serve(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            assert proc.poll() is None, proc.stdout.read()
            return False

    wait_for(up, timeout=30)
    yield proc, base, config
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_serve_runs_jobs_and_stops_cleanly_on_sigint(serve, tmp_path):
    proc, base, _ = serve
    job = requests.post(
        f"{base}/api/jobs", json={"type": "fanout", "payload": {"children": 50}}, timeout=5
    ).json()
    wait_for(
        lambda: (
            requests.get(f"{base}/api/jobs/{job['id']}", timeout=5).json()["status"] == "completed"
        ),
        timeout=30,
    )
    stats = requests.get(f"{base}/api/stats", timeout=5).json()
    assert stats["workers_alive"] == 1 and stats["workers"][0]["threads"] == 3
    assert (tmp_path / "data" / "queue.db").exists() and (tmp_path / "data" / "quaero.db").exists()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    output = proc.stdout.read()
    assert "Traceback" not in output, output


def test_num_workers_sets_how_many_jobs_run_at_once(serve):
    _, base, _ = serve  # 3 workers
    ids = [
        requests.post(
            f"{base}/api/jobs", json={"type": "sleep", "payload": {"seconds": 1}}, timeout=5
        ).json()["id"]
        for _ in range(6)
    ]

    def running():
        return requests.get(f"{base}/api/stats", timeout=5).json()["counts"]["running"]

    peak = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        peak = max(peak, running())
        time.sleep(0.05)
    assert peak == 3
    for job_id in ids:
        wait_for(
            lambda j=job_id: (
                requests.get(f"{base}/api/jobs/{j}", timeout=5).json()["status"] == "completed"
            ),
            timeout=20,
        )


def test_submit_follow_shows_progress_until_done(serve):
    proc, base, config = serve
    result = run_py(
        "submit",
        "fanout",
        "--payload",
        json.dumps({"children": 20}),
        "--follow",
        "--config",
        str(config),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("job ") and "submitted" in lines[0]
    assert "100.0%" in lines[-1] and "20/20 (0 failed) completed" in lines[-1]
    table = run_py("jobs", "--config", str(config))
    assert table.returncode == 0 and "completed" in table.stdout and "fanout" in table.stdout


def test_submit_rejects_bad_payload_naming_the_field(tmp_path):
    config = write_config(tmp_path, free_port())
    result = run_py("submit", "crawler", "--payload", '{"url": "ftp://x"}', "--config", str(config))
    assert result.returncode == 2 and "payload.url" in result.stderr


def test_migrate_applies_once_and_records_it(tmp_path):
    config = write_config(tmp_path, free_port())
    first = run_py("migrate", "--config", str(config))
    assert first.returncode == 0 and "001_initial.sql" in first.stdout
    second = run_py("migrate", "--config", str(config))
    assert second.returncode == 0 and "up to date" in second.stdout


def test_bad_config_stops_start_with_the_key_named(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[queue]\nnum_workrs = 2\n")
    result = run_py("serve", "--config", str(path))
    assert result.returncode == 2 and "queue.num_workrs" in result.stderr


def test_public_bind_without_token_is_refused(tmp_path):
    config = write_config(tmp_path, free_port())
    env = {**os.environ, "QUAERO_SERVER_HOST": "0.0.0.0"}
    result = run_py("serve", "--config", str(config), env=env)
    assert result.returncode == 2 and "api_token" in result.stderr


def test_session_cookie_is_secure_behind_a_trusted_tls_proxy(tmp_path):
    port = free_port()
    token = "a-long-enough-test-token"
    config = procs.write_config(
        tmp_path, port, f'[server]\napi_token = "{token}"\ntrusted_proxy = "127.0.0.1"'
    )
    serve = procs.RunPy("web", config).start()
    base = f"http://127.0.0.1:{port}"
    try:
        serve.wait_healthy(base)
        login = {"token": token}
        proxied = requests.post(
            f"{base}/login",
            data=login,
            allow_redirects=False,
            headers={"X-Forwarded-Proto": "https"},
            timeout=5,
        )
        plain = requests.post(f"{base}/login", data=login, allow_redirects=False, timeout=5)
    finally:
        serve.stop()
    assert proxied.status_code == plain.status_code == 302
    assert "Secure" in proxied.headers["Set-Cookie"]
    assert "HttpOnly" in proxied.headers["Set-Cookie"]
    assert "Secure" not in plain.headers["Set-Cookie"]
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in plain.headers
