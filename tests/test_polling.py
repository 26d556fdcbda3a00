"""Polling is cheap (issue 14, point 8): an unchanged answer is a 304 that keeps the
connection open, and `/jobs`, `/api/jobs` and `/metrics` stay fast with 10,000 roots."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest
import requests

from quaero.models import Job
from quaero.web import create_app
from quaero.web.server import create_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def quaero_server(services):
    """quaero's own hardened waitress server (quaero.web.server) on a free port."""
    server = create_server(create_app(services), services.config.server, port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server.effective_port
    server.close()
    thread.join(timeout=5)


def exchange(sock: socket.socket, path: str, headers: dict[str, str] | None = None):
    """Send one HTTP/1.1 GET on `sock` and read its whole answer."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = http.client.HTTPResponse(sock, method="GET")
    response.begin()
    body = response.read()
    return response, body


def test_an_unchanged_poll_is_a_304_on_the_same_connection(quaero_server, manager):
    manager.create_root("noop", {})
    with socket.create_connection(("127.0.0.1", quaero_server), timeout=5) as sock:
        first, body = exchange(sock, "/api/jobs")
        assert first.status == 200 and body
        etag = first.getheader("ETag")
        assert etag

        again, body = exchange(sock, "/api/jobs", {"If-None-Match": etag})
        assert again.status == 304 and body == b""
        assert (again.getheader("Connection") or "").lower() != "close"
        assert again.getheader("ETag") == etag

        # the same socket serves a third request: the 304 did not close it
        third, body = exchange(sock, "/api/jobs", {"If-None-Match": etag})
        assert third.status == 304


def test_a_client_asking_to_close_still_gets_a_closed_connection(quaero_server):
    with socket.create_connection(("127.0.0.1", quaero_server), timeout=5) as sock:
        first, _ = exchange(sock, "/api/stats")
        etag = first.getheader("ETag")
        last, _ = exchange(sock, "/api/stats", {"If-None-Match": etag, "Connection": "close"})
        assert last.status == 304
        assert last.getheader("Connection").lower() == "close"
        assert sock.recv(1) == b""  # the server closed it


ROOTS = 10_000


def insert_roots(n: int) -> None:
    now = time.time()
    rows = [
        {
            "root_id": 0,
            "path": "/",
            "type": "noop",
            "name": f"root {i}",
            "status": ("completed", "failed", "pending")[i % 3],
            "payload": "{}",
            "created_at": now - n + i,
            "updated_at": now - n + i,
            "started_at": now - n + i,
            "finished_at": now - n + i + 1 if i % 3 != 2 else None,
        }
        for i in range(n)
    ]
    for start in range(0, n, 1000):
        Job.insert_many(rows[start : start + 1000]).execute()
    Job.update(root_id=Job.id).execute()


def test_polling_jobs_and_metrics_is_cheap_with_10000_roots(quaero_server, services):
    insert_roots(ROOTS)
    base = f"http://127.0.0.1:{quaero_server}"
    timings = {}
    with requests.Session() as session:
        for path in ("/jobs", "/api/jobs?limit=50", "/api/stats", "/metrics"):
            assert session.get(base + path, timeout=10).status_code == 200  # warm up
            rounds = 20
            started = time.perf_counter()
            for _ in range(rounds):
                response = session.get(base + path, timeout=10)
                assert response.status_code == 200
            timings[path] = (time.perf_counter() - started) / rounds * 1000
    print("ms per request with 10,000 roots:", {k: round(v, 1) for k, v in timings.items()})
    for path, ms in timings.items():
        assert ms < 150, f"{path} took {ms:.0f} ms per request"
