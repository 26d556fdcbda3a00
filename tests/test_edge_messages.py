"""Clear messages at the edges (issue 14, point 13): each message a newcomer meets first
names what to do, in our words."""

import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from quaero import config as config_mod
from quaero.config import ConfigError
from tests.procs import ROOT, free_port, write_config


def test_a_port_in_use_names_QUAERO_SERVER_PORT(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config_path = write_config(tmp_path, port)
        done = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "serve", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert done.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in done.stderr
    assert "QUAERO_SERVER_PORT=" in done.stderr and "Traceback" not in done.stderr


def test_submit_follow_says_when_no_worker_is_alive(tmp_path):
    config_path = write_config(tmp_path, free_port())
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "submit", "noop", "--follow"]
        + ["--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        time.sleep(6)  # the grace for a starting worker is 3 s
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "no worker is alive" in err and "run.py worker" in err


@pytest.mark.parametrize(
    "text, expected",
    [
        ('["intranet.local", "wiki.local:8080"]', ["intranet.local", "wiki.local:8080"]),
        ("intranet.local, wiki.local:8080", ["intranet.local", "wiki.local:8080"]),
        ("[]", []),
    ],
)
def test_list_env_overrides_take_json_arrays_or_commas(text, expected):
    config = config_mod.build({}, environ={"QUAERO_CRAWLER_ALLOW_HOSTS": text})
    assert config.crawler.allow_hosts == expected


def test_a_bad_json_list_override_names_the_variable():
    with pytest.raises(ConfigError, match="QUAERO_CRAWLER_ALLOW_HOSTS.*JSON array of strings"):
        config_mod.build({}, environ={"QUAERO_CRAWLER_ALLOW_HOSTS": '["a", 1]'})


def test_validation_messages_read_as_ours_not_pydantics(client):
    response = client.post(
        "/api/jobs", json={"type": "fanout", "payload": {"child_type": "crawl_page"}}
    )
    assert response.status_code == 400
    fields = response.get_json()["error"]["fields"]
    assert fields["payload"].startswith("child_type 'crawl_page' is not a type"), fields
    response = client.post("/api/jobs", json={"type": "noop", "name": "a\x00b"})
    assert response.get_json()["error"]["fields"]["name"] == "must not contain NUL characters"


def test_a_non_numeric_job_id_is_the_same_404_as_a_missing_one(client):
    missing = client.get("/api/jobs/999999")
    text = client.get("/api/jobs/abc")
    assert missing.status_code == text.status_code == 404
    assert missing.get_json() == {"error": {"code": "not_found", "message": "job 999999 not found"}}
    assert text.get_json() == {"error": {"code": "not_found", "message": "job abc not found"}}
    assert client.get("/api/jobs/abc/children").get_json()["error"]["message"] == (
        "job abc not found"
    )


def test_the_process_log_records_failures_and_jobs_handed_back_on_ctrl_c(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = procs("serve", write_config(tmp_path, port, "[jobs]\nshutdown_grace = 0.5"))
    serve.wait_healthy(base)
    failing = {"type": "sleep", "payload": {"seconds": 0, "fail": "permanent"}}
    failed = requests.post(f"{base}/api/jobs", json=failing, timeout=5).json()
    slow = {"type": "sleep", "payload": {"seconds": 60, "steps": 60}}
    running = requests.post(f"{base}/api/jobs", json=slow, timeout=5).json()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (
            requests.get(f"{base}/api/jobs/{running['id']}", timeout=5).json()["status"]
            == "running"
        ):
            break
        time.sleep(0.1)
    serve.signal(signal.SIGINT)
    assert serve.wait(30) == 0
    log = serve.output()
    assert f"job {failed['id']} (sleep) failed: " in log
    assert "handed back 1 unfinished job" in log
