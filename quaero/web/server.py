"""The WSGI server: waitress, hardened against slow and greedy clients.

Waitress reads every request completely on its I/O thread before a worker thread sees
it, so a slow client never holds a worker. What it lacks, and this module adds:

- a deadline per request: its headers and body must arrive within
  `server.request_timeout` seconds, however steadily they trickle (waitress's own
  `channel_timeout` only closes connections that go *silent*); late ones are closed;
- shedding at the connection limit: when `server.connection_limit` connections are
  open, the one whose incomplete request is oldest (else the longest idle one) is closed
  to make room, instead of waitress's default of no longer accepting anyone;
- `poll()` instead of `select()`, which cannot watch file descriptors above 1024;
- keep-alive for bodiless answers: waitress closes an HTTP/1.1 connection after any
  answer without a Content-Length, including a `304` (and 204), which by RFC 9110 has
  no body to delimit; the page's unchanged polls are 304s, so each would cost a new
  connection. `KeepAliveTask` keeps those open (unless the client asked to close);
- bodies over `server.max_body_bytes` refused from `Content-Length` before any of the
  body is read, and chunked bodies cut off at that size (waitress's
  `max_request_body_size`), with the API's JSON error body.
"""

from __future__ import annotations

import json
import logging
import resource
import time

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask

from quaero.config import ServerConfig
from quaero.web.errors import HTTP_CODES

logger = logging.getLogger(__name__)

CLEANUP_INTERVAL = 1  # seconds between sweeps for late requests and idle connections
IDLE_TIMEOUT = 60  # seconds a keep-alive connection may stay silent between requests
#: Bytes of an answer buffered per connection: a streamed answer (an export) waits above
#: it, and each buffer is dropped once sent past it. Waitress keeps the bytes already sent
#: in the buffer until then, 16 MiB by default, memory the process then keeps.
OUTBUF_HIGH_WATERMARK = 1 << 20
ACCEPT_BATCH = 64  # connections accepted per turn of the event loop
SPARE_FILES = 64  # descriptors kept for the database, the queue and log files


class JsonErrorTask(ErrorTask):
    """Waitress's own refusals (413, 400, 431, 408) in the API's JSON error shape."""

    def execute(self) -> None:
        error = self.request.error
        code = HTTP_CODES.get(error.code, "bad_request")
        body = json.dumps({"error": {"code": code, "message": str(error.body)}}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class KeepAliveTask(WSGITask):
    """A request whose bodiless answer (1xx, 204, 304) keeps an HTTP/1.1 connection open.

    Such an answer ends with its headers, so the client knows where the next one starts;
    waitress closes only because it finds no Content-Length (which it must not send).
    """

    _building_headers = False

    def build_response_header(self) -> bytes:
        self._building_headers = True
        try:
            return super().build_response_header()
        finally:
            self._building_headers = False

    def set_close_on_finish(self) -> None:
        if (
            self._building_headers
            and not self.has_body
            and self.version == "1.1"
            and self.request.headers.get("CONNECTION", "").lower() != "close"
        ):
            return  # the one close waitress adds for lack of a Content-Length
        super().set_close_on_finish()


class GuardedChannel(HTTPChannel):
    """A connection that remembers when its current, incomplete request began."""

    task_class = KeepAliveTask
    error_task_class = JsonErrorTask
    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        if self.request is None and self.request_started is None and data:
            self.request_started = time.time()
        try:
            return super().received(data)
        finally:
            if self.request is None:  # complete (or nothing begun): no deadline running
                self.request_started = None

    def sheddable(self) -> bool:
        """Whether closing it loses no work: no request being served, nothing to send."""
        return not self.requests and not self.total_outbufs_len and not self.will_close


class GuardedServer(TcpWSGIServer):
    """A waitress TCP server that enforces request deadlines and sheds at its limit."""

    channel_class = GuardedChannel
    request_timeout: float = 30.0

    def maintenance(self, now: float) -> None:
        """Close connections idle too long or whose request is past its deadline."""
        late = now - self.request_timeout
        for channel in list(self.active_channels.values()):
            if not isinstance(channel, GuardedChannel) or not channel.sheddable():
                continue
            if channel.request_started is not None and channel.request_started < late:
                logger.info(
                    "closing %s: request not complete after %ss", channel.addr, self.request_timeout
                )
                channel.will_close = True
            elif channel.request is None and channel.last_activity < now - IDLE_TIMEOUT:
                channel.will_close = True

    def handle_accept(self) -> None:
        """Accept up to ACCEPT_BATCH waiting connections at once: each turn of the event
        loop costs O(open connections), so one accept per turn would make a burst of
        connections (a flood, or a crowd after a restart) quadratic."""
        for _ in range(ACCEPT_BATCH):
            if len(self._map) >= self.adj.connection_limit:
                return
            before = len(self._map)
            super().handle_accept()
            if len(self._map) == before:  # nothing was waiting
                return

    def readable(self) -> bool:
        if self.accepting and len(self._map) >= self.adj.connection_limit:
            self.shed_one()
        return super().readable()

    def shed_one(self) -> None:
        """Close the connection whose incomplete request is oldest (else the idlest)."""
        candidates = [
            c
            for c in self.active_channels.values()
            if isinstance(c, GuardedChannel) and c.sheddable()
        ]
        if not candidates:
            return

        def age(channel: GuardedChannel) -> tuple[int, float]:
            if channel.request_started is not None:
                return (0, channel.request_started)
            return (1, channel.last_activity)

        victim = min(candidates, key=age)
        victim.will_close = True


def open_files_for(connections: int) -> int:
    """Raise the soft limit of open files to fit `connections`; return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def adjustments(server: ServerConfig, **overrides) -> Adjustments:
    """Waitress settings from `[server]`."""
    limit = server.connection_limit
    files = open_files_for(limit)
    if files != resource.RLIM_INFINITY and files - SPARE_FILES < limit:
        limit = max(10, files - SPARE_FILES)
        logger.warning(
            "server.connection_limit lowered to %s: the open-files limit is %s", limit, files
        )
    proxy = {}
    if server.trusted_proxy:  # its X-Forwarded-Proto/-For: Secure cookie, client address
        proxy = {
            "trusted_proxy": server.trusted_proxy,
            "trusted_proxy_headers": {"x-forwarded-proto", "x-forwarded-for"},
        }
    settings = {
        "host": server.host,
        "port": server.port,
        "threads": server.threads,
        "ident": "quaero",
        "clear_untrusted_proxy_headers": True,
        "connection_limit": limit,
        "cleanup_interval": CLEANUP_INTERVAL,
        "channel_timeout": IDLE_TIMEOUT,
        "asyncore_use_poll": True,
        "outbuf_high_watermark": OUTBUF_HIGH_WATERMARK,
        # waitress refuses Content-Length >= this, and stops chunked bodies at it
        "max_request_body_size": server.max_body_bytes + 1,
        **proxy,
        **overrides,
    }
    return Adjustments(**settings)


def create_server(app, server: ServerConfig, **overrides):
    """A hardened waitress server for `app`, bound to `[server] host` and `port`."""
    adj = adjustments(server, **overrides)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    sock_map: dict = {}
    servers = []
    for sockinfo in adj.listen:
        made = GuardedServer(app, sock_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)
        made.request_timeout = server.request_timeout
        servers.append(made)
    if len(servers) == 1:
        return servers[0]
    multi = MultiSocketServer(
        sock_map, adj, [(s.effective_host, s.effective_port) for s in servers], dispatcher
    )
    multi.effective_port = servers[0].effective_port
    return multi
