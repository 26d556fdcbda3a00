"""A hostile web site for the crawler's limits: it answers one byte at a time.

`DripServer` listens on 127.0.0.1 (an ephemeral port) and serves each connection from a
thread of the test process. Every answer is sent a byte every `interval` seconds, never
fast enough to trip a per-read socket timeout; between bytes the server watches the
socket, so it records when the client hangs up (`hangups`), which is how a test proves
that the crawler closed the connection.

Paths: "/drip-body" (headers at once, then a 1 MB body dripped), "/drip-headers" (the
status line and headers dripped, never finished), "/robots.txt" (dripped when
`slow_robots`, else a quick 404), anything else a small HTML page at once.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

HTML_PAGE = b"<html><title>ok</title><a href='/next'>next</a></html>"


class DripServer:
    """A loopback HTTP server whose answers drip (see the module docstring)."""

    def __init__(self, interval: float = 0.5, slow_robots: bool = False) -> None:
        self.interval = interval
        self.slow_robots = slow_robots
        self.requests: list[tuple[str, float]] = []  # (path, monotonic time of the request)
        self.hangups: list[tuple[str, float]] = []  # (path, when the client hung up)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> DripServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting and end every dripping answer."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def paths(self) -> list[str]:
        """Paths requested so far, in order."""
        with self._lock:
            return [path for path, _ in self.requests]

    def hangup_of(self, path: str) -> float | None:
        """When the client hung up on its first request of `path` (monotonic), or None."""
        with self._lock:
            return next((when for p, when in self.hangups if p == path), None)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
            parts = head.split(b" ", 2)
            path = parts[1].decode("latin-1") if len(parts) > 1 else "?"
            with self._lock:
                self.requests.append((path, time.monotonic()))
            if path == "/robots.txt" and self.slow_robots:
                self._drip(conn, path, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n", 10**6)
            elif path == "/robots.txt":
                conn.sendall(
                    b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                )
            elif path.startswith("/drip-headers"):
                self._drip(conn, path, b"HTTP/1.1 200 OK\r\nX-Drip: ", 10**6)
            elif path.startswith("/drip-body"):
                head = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1000000\r\n\r\n"
                )
                conn.sendall(head)
                self._drip(conn, path, b"<html><title>drip</title>", 10**6)
            else:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                    + f"Content-Length: {len(HTML_PAGE)}\r\n\r\n".encode()
                    + HTML_PAGE
                )

    def _drip(self, conn: socket.socket, path: str, start: bytes, length: int) -> None:
        """Send `start`, then `x` up to `length` bytes, one byte per interval, until the
        client hangs up (recorded) or the server stops."""
        data = start + b"x" * (length - len(start))
        for index in range(len(data)):
            if self._stop.is_set():
                return
            try:
                conn.send(data[index : index + 1])
                readable, _, _ = select.select([conn], [], [], self.interval)
                if readable and not conn.recv(1024):
                    raise ConnectionResetError("the client hung up")
            except OSError:
                with self._lock:
                    self.hangups.append((path, time.monotonic()))
                return
