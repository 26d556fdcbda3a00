"""The crawler's network guard: which addresses it may connect to, checked at connect time.

Every connection the crawler opens goes through `GuardedAdapter`, a requests transport
whose connections resolve their host once, check every address with `AddressPolicy` and
then connect to exactly the addresses they checked, while the Host header, TLS SNI and
the certificate check keep the URL's name. There is no second lookup between the check
and the connection, so a DNS answer that changes in between (DNS rebinding) cannot move
the connection elsewhere. A refused address raises `AddressRefused` before any socket
is created. The crawler follows redirects by hand, one request per hop, so each hop's
connection is checked the same way; a kept-alive connection is only reused for the
host and port it was opened (and checked) for. Environment proxies and .netrc are
ignored (`trust_env = False`): a proxy would resolve names where we cannot check them.
Under a page's `Deadline` (deadline.py), every connection hands its socket to the
deadline, the first time it connects and each time it is reused, and its connect timeout
is cut to what remains, so the watchdog can end a fetch that a site stalls.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from quaero.config import CrawlerConfig
from quaero.executors import deadline as deadlines
from quaero.executors.base import PermanentError
from quaero.executors.urls import DEFAULT_PORTS, address_kind

HINT = "allow it with [crawler] allow_private_networks = true or list the host in allow_hosts"


class AddressRefused(PermanentError):
    """The crawler may not connect to this host: it resolves to a non-public address."""


def _split_host_port(entry: str) -> tuple[str, int | None]:
    """("intranet.local", 8080) from "intranet.local:8080"; IPv6 as "[::1]:8080" or "::1"."""
    entry = entry.strip().lower().rstrip(".")
    if entry.count(":") > 1 and not entry.startswith("["):  # a bare IPv6 address
        return entry, None
    parts = urlsplit("//" + entry)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or entry).rstrip("."), port


@dataclass(frozen=True)
class AddressPolicy:
    """Which hosts the crawler may reach: public addresses, plus what config allows."""

    allow_private_networks: bool = False
    allow_hosts: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def from_config(cls, limits: CrawlerConfig) -> AddressPolicy:
        """The policy of `[crawler] allow_private_networks` and `allow_hosts`."""
        hosts = frozenset(_split_host_port(entry) for entry in limits.allow_hosts if entry)
        return cls(limits.allow_private_networks, hosts)

    def host_listed(self, host: str, port: int) -> bool:
        """Whether `host` (any port) or `host:port` is in `allow_hosts`."""
        name = host.strip("[]").lower().rstrip(".")
        return (name, None) in self.allow_hosts or (name, port) in self.allow_hosts

    def addresses(self, host: str, port: int) -> list[tuple[int, str]]:
        """Resolve `host` once and return its (family, ip) pairs if every one may be reached.

        Raises AddressRefused (naming the address and why) if any may not, PermanentError if
        the name does not exist, and urllib3's NameResolutionError for a failure that a
        retry may fix.
        """
        found = resolve(host, port)
        if self.allow_private_networks or self.host_listed(host, port):
            return found
        for _, ip in found:
            kind = address_kind(ip)
            if kind is not None:
                raise AddressRefused(refusal(host, ip, kind))
        return found


def refusal(host: str, ip: str, kind: str) -> str:
    """'refused: 10.0.0.1 is a private address (...)', naming the host if it is a name."""
    try:
        literal = ipaddress.ip_address(host.strip("[]")) == ipaddress.ip_address(ip)
    except ValueError:
        literal = False
    what = f"{ip} is" if literal else f"{host} resolves to {ip},"
    article = "an" if kind[0] in "aeiou" else "a"
    return f"refused: {what} {article} {kind} address ({HINT})"


def resolve(host: str, port: int) -> list[tuple[int, str]]:
    """The distinct (family, ip) addresses of `host`, in the resolver's order."""
    name = host.strip("[]")
    literal = _literal_address(name)
    if literal is not None:  # nothing to look up (and ~1 ms saved a page)
        return [literal]
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except UnicodeError:  # a host name IDNA cannot encode
        raise PermanentError(f"invalid host name {host!r}") from None
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise PermanentError(f"cannot resolve host {host!r}") from None
        raise NameResolutionError(host, None, exc) from exc  # type: ignore[arg-type]
    found: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        entry = (int(family), str(sockaddr[0]))
        if family in (socket.AF_INET, socket.AF_INET6) and entry not in found:
            found.append(entry)
    if not found:
        raise PermanentError(f"cannot resolve host {host!r}")
    return found


def _literal_address(name: str) -> tuple[int, str] | None:
    """(family, ip) of an address written in its standard form; None for anything else
    (names, and spellings such as 2130706433 or 127.1 that only the resolver reads)."""
    if not name or "%" in name or not (name[0].isdigit() or ":" in name):
        return None
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return None
    return (int(socket.AF_INET if ip.version == 4 else socket.AF_INET6), str(ip))


def check_url(url: str, policy: AddressPolicy) -> list[tuple[int, str]]:
    """Resolve and check the host of an http(s) URL without connecting (see `addresses`)."""
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 80)
    return policy.addresses(parts.hostname or "", port)


class _GuardedConnection:
    """Mixin of urllib3 connections: connect only to addresses the policy allows."""

    policy: AddressPolicy | None = None  # set by the pool; None refuses everything

    def _new_conn(self) -> socket.socket:
        host, port = self.host, self.port  # type: ignore[attr-defined]
        if self.policy is None:
            raise AddressRefused(f"refused: {host}: no address policy (internal error)")
        deadline = deadlines.current()
        if deadline is not None:
            deadline.check()
        addresses = self.policy.addresses(host, port)
        error: OSError | None = None
        for family, ip in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in self.socket_options or ():  # type: ignore[attr-defined]
                    sock.setsockopt(*option)
                if self.timeout is None or isinstance(self.timeout, (int, float)):  # type: ignore[attr-defined]
                    sock.settimeout(self.timeout)  # type: ignore[attr-defined]
                if deadline is not None:
                    deadline.check()
                    sock.settimeout(deadline.cap(sock.gettimeout() or deadline.seconds))
                    deadline.watch_socket(sock)
                sock.connect((ip, port))
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(
                    self, f"connection to {host} ({ip}) timed out (timeout={self.timeout})"
                ) from exc
            except OSError as exc:
                sock.close()
                error = exc
                continue
            sys.audit("http.client.connect", self, host, port)
            return sock
        raise NewConnectionError(self, f"failed to connect to {host}: {error}")  # type: ignore[arg-type]


class GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
    """An HTTP connection that checks its addresses (see the module docstring)."""


class GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    """An HTTPS connection that checks its addresses; SNI and certificates use the name."""


class _GuardedPool:
    """Mixin of urllib3 pools: hand connections the policy; a reused connection's socket
    goes to the active deadline (a new one's is handed over when it connects)."""

    policy: AddressPolicy | None = None

    def _new_conn(self):
        conn = super()._new_conn()  # type: ignore[misc]
        conn.policy = self.policy
        return conn

    def _make_request(self, conn, *args, **kwargs):
        deadline = deadlines.current()
        if deadline is not None and conn.sock is not None:
            deadline.watch_socket(conn.sock)
        return super()._make_request(conn, *args, **kwargs)  # type: ignore[misc]


class GuardedHTTPPool(_GuardedPool, HTTPConnectionPool):
    """A pool of GuardedHTTPConnection that hands them its policy."""

    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSPool(_GuardedPool, HTTPSConnectionPool):
    """A pool of GuardedHTTPSConnection that hands them its policy."""

    ConnectionCls = GuardedHTTPSConnection


class GuardedPoolManager(PoolManager):
    """A PoolManager whose pools (and so connections) all carry one AddressPolicy."""

    def __init__(self, policy: AddressPolicy, **kwargs) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        self.pool_classes_by_scheme = {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}

    def _new_pool(self, scheme, host, port, request_context=None):
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.policy = self.policy
        return pool


class GuardedAdapter(HTTPAdapter):
    """A requests transport that connects only to addresses its policy allows."""

    def __init__(self, policy: AddressPolicy, **kwargs) -> None:
        self.policy = policy  # before super().__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = GuardedPoolManager(
            self.policy, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise PermanentError("the crawler does not use proxies")


_local = threading.local()


def guarded_session(policy: AddressPolicy) -> requests.Session:
    """This thread's session for `policy` (sessions are not safe to share between threads)."""
    sessions: dict[AddressPolicy, requests.Session] = _local.__dict__.setdefault("sessions", {})
    session = sessions.get(policy)
    if session is None:
        session = requests.Session()
        session.trust_env = False  # no environment proxies, no .netrc credentials
        adapter = GuardedAdapter(policy)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        sessions[policy] = session
    return session
