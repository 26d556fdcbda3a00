"""The server keeps answering (issue 13, points 6-8): slow clients, huge bodies and heavy
list pages against a real `run.py web` process on 127.0.0.1."""

from __future__ import annotations

import resource
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from quaero import config as config_mod
from quaero.services import build_services
from tests import procs

pytestmark = [pytest.mark.e2e, pytest.mark.long]

SLOW_CLIENTS = 1000
TOKEN = "Zq8&'<>+/=" + "k3J9vR2mXw7LpT4nYb6HcE1sGd5AfU0o"


def raise_open_files(needed: int) -> None:
    """Raise this process's soft limit of open files (its children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def start_web(tmp_path: Path, text: str = "") -> tuple[procs.RunPy, str]:
    port = procs.free_port()
    config = procs.write_config(tmp_path, port, text)
    web = procs.RunPy("web", config).start()
    base = f"http://127.0.0.1:{port}"
    try:
        web.wait_healthy(base)
    except BaseException:
        web.stop()
        raise
    return web, base


def open_slow(port: int, n: int) -> list[socket.socket]:
    """`n` connections that each sent the start of a request and then hang."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(s)
    return socks


def trickle(socks: list[socket.socket], stop: threading.Event, every: float = 10.0) -> None:
    """One byte per connection every `every` seconds, spread evenly; closed ones skipped."""
    gap = every / max(1, len(socks))
    while not stop.is_set():
        for s in socks:
            if stop.wait(gap):
                return
            try:
                s.send(b"a")
            except OSError:
                pass


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def test_healthz_answers_within_a_second_under_1000_slow_clients(tmp_path):
    raise_open_files(SLOW_CLIENTS + 500)
    web, base = start_web(tmp_path)
    stop = threading.Event()
    socks: list[socket.socket] = []
    try:
        socks = open_slow(port_of(base), SLOW_CLIENTS)
        dripper = threading.Thread(target=trickle, args=(socks, stop), daemon=True)
        dripper.start()
        latencies = []
        for _ in range(24):  # 12 s of probes while 1,000 connections trickle
            started = time.monotonic()
            try:
                status = requests.get(f"{base}/healthz", timeout=3).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            latencies.append(time.monotonic() - started)
            assert status == 200, (status, latencies)
            time.sleep(max(0.0, 0.5 - latencies[-1]))
        shown = ", ".join(f"{t * 1000:.0f}" for t in latencies)
        print(f"/healthz under {SLOW_CLIENTS} slow clients (ms): {shown}")
        assert max(latencies) < 1.0, latencies
    finally:
        stop.set()
        close_all(socks)
        web.stop()


def test_a_request_that_trickles_in_is_closed_after_request_timeout(tmp_path):
    web, base = start_web(tmp_path, "[server]\nrequest_timeout = 2")
    stop = threading.Event()
    socks: list[socket.socket] = []
    try:
        socks = open_slow(port_of(base), 20)
        threading.Thread(target=trickle, args=(socks, stop, 0.5), daemon=True).start()
        deadline = time.monotonic() + 6
        for s in socks:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            assert not data or data.startswith(b"HTTP/1.1 408"), data
        assert time.monotonic() < deadline
    finally:
        stop.set()
        close_all(socks)
        web.stop()


def written_bytes(pid: int) -> int:
    """Bytes the process wrote (files and sockets) so far, from /proc."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/pid/io")


def read_response(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


BIG = 300_000_000


@pytest.mark.parametrize("token", ["", TOKEN])
def test_a_300_mb_body_is_refused_before_it_is_read(tmp_path, token):
    text = f'[server]\napi_token = "{token}"' if token else ""
    web, base = start_web(tmp_path, text)
    port = port_of(base)
    try:
        before = written_bytes(web.proc.pid)
        # Content-Length says 300 MB: the answer comes before any of the body is sent
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            started = time.monotonic()
            s.sendall(
                b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: " + str(BIG).encode() + b"\r\n\r\n"
            )
            head = read_response(s, timeout=3)
            assert head.startswith(b"HTTP/1.1 413"), head
            assert time.monotonic() - started < 2
        # chunked, streamed from a generator: reading stops at max_body_bytes
        chunk = b"x" * 1_000_000
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            started = time.monotonic()
            s.sendall(
                b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            sent = 0
            s.settimeout(5)
            try:
                while sent < BIG:
                    s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
            except OSError:
                pass  # the server answered and closed: the rest is never read
            head = read_response(s, timeout=3)
            elapsed = time.monotonic() - started
        print(f"chunked: {sent / 1e6:.0f} MB sent before the server closed, {elapsed:.2f} s")
        assert head.startswith(b"HTTP/1.1 413") or head == b"", head
        assert sent < 30_000_000, f"{sent} bytes were taken in"
        assert elapsed < 5
        written = written_bytes(web.proc.pid) - before
        assert written < 5_000_000, f"the server wrote {written} bytes (spooled the body?)"
    finally:
        web.stop()


def test_a_body_at_the_limit_is_still_read(tmp_path):
    web, base = start_web(tmp_path)
    try:
        body = b'{"type": "noop", "payload": {"x": "' + b"a" * 10_000 + b'"}}'
        body += b" " * (1_000_000 - len(body))
        response = requests.post(
            f"{base}/api/jobs", data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert response.status_code == 201, response.text
        response = requests.post(
            f"{base}/api/jobs",
            data=body + b" ",
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"
    finally:
        web.stop()


def rss_peak_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/pid/status")


def test_list_views_keep_memory_bounded(tmp_path):
    port = procs.free_port()
    config_path = procs.write_config(tmp_path, port)
    services = build_services(config_mod.load(config_path))
    blob = "b" * (64 * 1024 - 200)
    try:
        for i in range(520):
            url = f"https://site-{i}.example/" + "p" * 300
            services.manager.create_root("noop", {"url": url, "blob": blob}, name="")
    finally:
        services.close()
    web = procs.RunPy("web", config_path).start()
    base = f"http://127.0.0.1:{port}"
    try:
        web.wait_healthy(base)
        listed = requests.get(f"{base}/api/jobs", params={"limit": 500}, timeout=30).json()
        assert len(listed["jobs"]) == 500
        first = listed["jobs"][0]
        assert "payload" not in first and "result" not in first
        assert first["summary"]["url"].startswith("https://site-519.example/pp")
        assert len(first["summary"]["url"]) <= 200
        full = requests.get(f"{base}/api/jobs/{first['id']}", timeout=5).json()
        assert full["payload"]["blob"] == blob
        page = requests.get(f"{base}/jobs", params={"limit": 500}, timeout=30)
        assert page.status_code == 200 and blob[:1000] not in page.text
        assert "https://site-519.example/" in page.text
        assert requests.get(f"{base}/api/jobs?limit=501", timeout=5).status_code == 400

        def fetch(i: int) -> int:
            path = "/jobs" if i % 2 else "/api/jobs"
            return requests.get(f"{base}{path}", params={"limit": 500}, timeout=60).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(fetch, range(200)))
        peak = rss_peak_mb(web.proc.pid)
        print(
            f"200 list requests at 50 concurrent: {time.monotonic() - started:.1f} s, "
            f"peak RSS {peak:.0f} MB"
        )
        assert statuses == [200] * 200
        assert peak < 250, f"peak RSS {peak:.0f} MB"
    finally:
        web.stop()
