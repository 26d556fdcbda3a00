"""One deadline per page fetch, enforced from outside the thread that fetches.

Socket timeouts bound each connect and each read, not a whole answer: a server that
sends a byte a second never trips a 10-second read timeout, and a blocked read cannot
look at the clock or at the job's cancel flag. So a page's fetch runs under a
`Deadline`: every connection it opens or reuses hands its socket to the deadline
(netguard does it), and one watchdog thread per process shuts those sockets down when
the deadline passes or the job is cancelled. A shut-down socket ends any read blocked on
it at once (plain or TLS), so the fetching thread wakes up, sees why, and raises
`DeadlineExceeded` or `JobCancelled`; the worker is free again.

Only a name lookup (getaddrinfo) cannot be interrupted; it is bounded by the system
resolver's own timeouts. Connect timeouts are cut to what remains of the deadline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

from quaero.executors.base import JobCancelled, PermanentError

logger = logging.getLogger(__name__)

#: How often the watchdog looks at the clock and at the cancel flags (seconds).
WATCH_INTERVAL = 0.1


class DeadlineExceeded(PermanentError):
    """A page's fetch ran past its deadline. Final: the same site would stall it again."""


class Deadline:
    """The end time of one page's fetch, and the sockets to close when it comes.

    `cancelled` (e.g. `JobContext.cancelled`) is polled by the watchdog while the
    deadline is active; it must be cheap and thread-safe.
    """

    def __init__(
        self, seconds: float, cancelled: Callable[[], bool] | None = None, what: str = "fetch"
    ) -> None:
        self.seconds = seconds
        self.what = what
        self.at = time.monotonic() + seconds
        self.reason: str | None = None  # "deadline" or "cancelled" once aborted
        self._cancelled = cancelled
        self._sockets: list[socket.socket] = []
        self._paused_since: float | None = None
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left (0 when past)."""
        return max(0.0, self.at - time.monotonic())

    def cap(self, seconds: float) -> float:
        """`seconds`, cut to what remains (a socket timeout; never 0, which means
        non-blocking)."""
        return max(0.001, min(seconds, self.remaining()))

    def check(self) -> None:
        """Raise if the fetch must stop: cancelled, or past the deadline (the fetching
        thread calls it between reads; the watchdog covers reads that block)."""
        if self.reason is None and self._paused_since is None and self.remaining() <= 0:
            self.abort("deadline")
        if self.reason is None and self._cancelled is not None and self._cancelled():
            self.abort("cancelled")
        if self.reason == "cancelled":
            raise JobCancelled("the job was cancelled during its fetch")
        if self.reason == "deadline":
            raise DeadlineExceeded(
                f"{self.what} did not finish within its deadline of {self.seconds:g} s"
            )

    def watch_socket(self, sock: socket.socket) -> None:
        """Shut `sock` down when the fetch is aborted (at once if it already is).

        Keeps a duplicate of the descriptor: TLS wrapping detaches the original socket
        object, and the duplicate still reaches the same connection.
        """
        try:
            duplicate = socket.socket(sock.family, sock.type, sock.proto, os.dup(sock.fileno()))
        except OSError:
            return
        with self._lock:
            self._sockets.append(duplicate)
            aborted = self.reason is not None
        if aborted:
            _shutdown(duplicate)

    def abort(self, reason: str) -> None:
        """Stop the fetch: shut down every socket it uses (from any thread)."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def poll(self) -> None:
        """The watchdog's look: abort when past the deadline or cancelled."""
        if self.reason is not None:
            return
        if self._paused_since is None and time.monotonic() >= self.at:
            self.abort("deadline")
        elif self._cancelled is not None:
            try:
                if self._cancelled():
                    self.abort("cancelled")
            except Exception:  # a database hiccup: the deadline still holds
                logger.debug("cancel check failed; will look again", exc_info=True)

    @contextlib.contextmanager
    def active(self) -> Iterator[Deadline]:
        """Watch this deadline while the block runs; then release its sockets."""
        previous = getattr(_local, "deadline", None)
        _local.deadline = self
        _watchdog.add(self)
        try:
            yield self
        finally:
            _watchdog.remove(self)
            _local.deadline = previous
            with self._lock:
                sockets, self._sockets = self._sockets, []
            for sock in sockets:
                sock.close()  # the duplicate only: the connection lives on unless aborted

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Do not count the block's time (a politeness delay is not the site's fault)."""
        self._paused_since = time.monotonic()
        try:
            yield
        finally:
            self.at += time.monotonic() - self._paused_since
            self._paused_since = None


def current() -> Deadline | None:
    """The deadline active in this thread, if any."""
    return getattr(_local, "deadline", None)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that polls the active deadlines every WATCH_INTERVAL."""

    def __init__(self) -> None:
        self._deadlines: set[Deadline] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._wake:
            self._deadlines.add(deadline)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="quaero-fetch-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def remove(self, deadline: Deadline) -> None:
        with self._wake:
            self._deadlines.discard(deadline)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._deadlines:
                    self._wake.wait()
                deadlines = list(self._deadlines)
            for deadline in deadlines:
                deadline.poll()
            time.sleep(WATCH_INTERVAL)


_local = threading.local()
_watchdog = _Watchdog()
