"""A TCP proxy on 127.0.0.1 that a test controls, to cut one process off a server.

`Proxy(target_port)` listens on a free port and forwards every connection to the
target. Its mode says what the network does: "pass" forwards; "cut" resets every open
connection and every new one (a peer that is down or a firewall that rejects);
"blackhole" accepts and swallows bytes in both directions without a word (a partition
that drops packets); "slow" delays every chunk sent to the server by `latency` seconds
(so each round trip takes that much longer). Threads, bounded by `max_connections`;
`stop()` closes everything.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a rejecting peer does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class Proxy:
    """One listening port forwarding to 127.0.0.1:`target_port`; see the module doc."""

    def __init__(self, target_port: int, max_connections: int = 200) -> None:
        self.target_port = target_port
        self.max_connections = max_connections
        self.mode = "pass"
        self.latency = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True, name="proxy")

    def start(self) -> Proxy:
        self._accepter.start()
        return self

    def url(self, url: str) -> str:
        """`url` (postgresql:// or redis://) with its port replaced by this proxy's."""
        return url.replace(f":{self.target_port}/", f":{self.port}/")

    def set(self, mode: str, latency: float = 0.0) -> None:
        """Switch mode; "cut" also resets every connection open now."""
        assert mode in ("pass", "cut", "blackhole", "slow"), mode
        self.latency = latency
        self.mode = mode
        if mode == "cut":
            with self._lock:
                pairs, self._pairs = self._pairs, []
            for client, server in pairs:
                _reset(client)
                _reset(server)

    def stop(self) -> None:
        self._stop.set()
        self.set("cut")
        with contextlib.suppress(OSError):
            self._listener.close()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(2)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._threads = [t for t in self._threads if t.is_alive()]
            with self._lock:
                full = len(self._pairs) >= self.max_connections
            if self.mode == "cut" or full:
                _reset(client)
                continue
            if self.mode == "blackhole":  # accepted, then silence
                self._spawn(self._swallow, client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, server))
            self._spawn(self._pump, client, server, True)
            self._spawn(self._pump, server, client, False)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _swallow(self, client: socket.socket) -> None:
        client.settimeout(0.2)
        while not self._stop.is_set() and self.mode == "blackhole":
            try:
                if not client.recv(CHUNK):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        _reset(client)

    def _pump(self, source: socket.socket, sink: socket.socket, to_server: bool) -> None:
        source.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = source.recv(CHUNK)
                except TimeoutError:
                    continue
                if not data:
                    break
                mode = self.mode
                if mode == "blackhole":
                    continue  # dropped: neither side hears anything
                if mode == "slow" and to_server:
                    time.sleep(self.latency)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                if (source, sink) in self._pairs or (sink, source) in self._pairs:
                    self._pairs = [p for p in self._pairs if source not in p]
            _reset(source)
            _reset(sink)
