"""The crawler's SSRF guard, in two layers.

No test here can open a connection to an address outside 127.0.0.0/8 or ::1, even with
the guard broken: an autouse fixture patches `socket.socket.connect` so that any other
destination fails the test at once, before a packet is sent.

(a) End to end, with private networks disallowed: a real worker and server crawl
    loopback targets only (127.0.0.1, 127.0.0.2, localhost, [::1], 0.0.0.0, the decimal
    2130706433, and an allow-listed server that redirects to one that is not). Counting
    servers prove that no refused target was fetched; every job fails with the reason.
(b) Unit: the resolver is a fake (metadata.example → 10.0.0.1, ...) and *every* connect
    fails the test, so a refusal is proven to come before any connection attempt.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from quaero.config import Config, CrawlerConfig
from quaero.executors import netguard
from quaero.executors.base import PermanentError
from quaero.executors.crawler import check_address, fetch
from quaero.executors.netguard import AddressPolicy, AddressRefused
from quaero.executors.urls import address_kind
from tests.helpers import make_config, wait_for_job

REAL_CONNECT = socket.socket.connect


def _loopback(address: object) -> bool:
    try:
        return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback  # type: ignore[index]
    except (ValueError, TypeError, IndexError):
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch) -> list:
    """Connections to 127.0.0.0/8 and ::1 go through; any other fails the test at once."""
    refused: list = []

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            refused.append(address)
            pytest.fail(f"a test tried to connect to {address!r}")
        return REAL_CONNECT(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    return refused


# --- (a) end to end: loopback targets, private networks disallowed --------------------


class CountingServer:
    """An HTTP server on one loopback address that counts requests; optionally redirects."""

    def __init__(self, host: str, redirect_to: str | None = None) -> None:
        self.hits: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.hits.append(self.path)
                if self.path == "/robots.txt":
                    status, headers = 404, {}
                elif redirect_to:
                    status, headers = 302, {"Location": redirect_to}
                else:
                    status, headers = 200, {"Content-Type": "text/html"}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server_class = type(
            "Server",
            (ThreadingHTTPServer,),
            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
        )
        self.server = server_class((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[dict[str, CountingServer]]:
    made: dict[str, CountingServer] = {}
    try:
        made["v4"] = CountingServer("127.0.0.1")
        made["v4b"] = CountingServer("127.0.0.2")
        made["v6"] = CountingServer("::1")
        made["target"] = CountingServer("127.0.0.1")
        made["listed"] = CountingServer(
            "127.0.0.1", redirect_to=f"http://127.0.0.1:{made['target'].port}/secret"
        )
        yield made
    finally:
        for server in made.values():
            server.stop()


@pytest.fixture
def config(tmp_path, servers) -> Config:
    """Private networks disallowed; only the redirecting server's host:port is listed."""
    listed = f"127.0.0.1:{servers['listed'].port}"
    return make_config(tmp_path, crawler={"allow_private_networks": False, "allow_hosts": [listed]})


def crawl(base: str, url: str) -> dict:
    response = requests.post(
        f"{base}/api/jobs", json={"type": "crawler", "payload": {"url": url}}, timeout=5
    )
    assert response.status_code == 201, response.text
    return wait_for_job(base, response.json()["id"], timeout=30)


def test_loopback_targets_are_refused_before_any_request(live_server, worker, servers):
    v4, v4b, v6 = servers["v4"], servers["v4b"], servers["v6"]
    targets = {
        f"http://127.0.0.1:{v4.port}/": "refused: 127.0.0.1 is a loopback address",
        f"http://127.0.0.2:{v4b.port}/": "refused: 127.0.0.2 is a loopback address",
        f"http://localhost:{v4.port}/": "refused: localhost resolves to",
        f"http://[::1]:{v6.port}/": "refused: ::1 is a loopback address",
        f"http://0.0.0.0:{v4.port}/": "refused: 0.0.0.0 is an unspecified address",
        f"http://2130706433:{v4.port}/": "refused: 2130706433 resolves to 127.0.0.1",
    }
    for url, reason in targets.items():
        root = crawl(live_server, url)
        assert root["status"] == "failed", (url, root)
        assert reason in root["error"], (url, root["error"])
        assert root["attempts"] == 1  # permanent: never retried
        assert root["counts"]["total"] == 0  # not even the start page was spawned
    assert v4.hits == v4b.hits == v6.hits == []


def test_a_redirect_from_a_listed_host_to_an_unlisted_one_is_refused(live_server, worker, servers):
    listed, target = servers["listed"], servers["target"]
    root = crawl(live_server, f"http://127.0.0.1:{listed.port}/")
    assert root["counts"]["failed"] == 1, root
    page = requests.get(f"{live_server}/api/jobs/{root['id']}/children", timeout=5).json()
    start = page["jobs"][0]
    assert start["status"] == "failed" and start["attempts"] == 1
    assert "refused: 127.0.0.1 is a loopback address" in start["error"]
    assert listed.hits == ["/robots.txt", "/"]  # the listed server was fetched ...
    assert target.hits == []  # ... the redirect's target never


# --- (b) unit: a fake resolver, and every connect attempt fails the test ---------------

FAKE_DNS = {
    "metadata.example": ["10.0.0.1"],
    "imds.example": ["169.254.169.254"],
    "mdns.example": ["224.0.0.251"],
    "www.public-name.example": ["10.20.30.40"],  # a public-looking name, a private address
    "mixed.example": ["93.184.216.34", "192.168.1.10"],
    "v6-ula.example": ["fd00::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "nat64.example": ["64:ff9b::a00:1"],
    "public.example": ["93.184.216.34"],
    "site-local.example": ["fec0::1"],
    "v6-doc.example": ["2606:4700::1", "3fff:abc::1"],  # one public, one documentation
}


class FakeResolver:
    """socket.getaddrinfo over FAKE_DNS; IP literals answer themselves; counts lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        self.lookups.append(host)
        try:
            ips = [str(ipaddress.ip_address(host))]
        except ValueError:
            if host not in self.answers:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            ips = self.answers[host]
        port = int(port or 0)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
            if ":" in ip
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in ips
        ]


@pytest.fixture
def resolver(monkeypatch) -> FakeResolver:
    fake = FakeResolver(FAKE_DNS)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def no_connect(monkeypatch, resolver) -> list:
    """Every connect attempt, loopback or not, fails the test at once."""
    attempts: list = []

    def connect(sock, address):
        attempts.append(address)
        pytest.fail(f"connection attempted to {address!r}: the guard must refuse before")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    return attempts


REFUSED = [
    ("http://metadata.example/", "refused: metadata.example resolves to 10.0.0.1, a private"),
    ("http://169.254.169.254/latest/meta-data/", "refused: 169.254.169.254 is a link-local"),
    ("http://imds.example/", "resolves to 169.254.169.254, a link-local address"),
    ("http://224.0.0.1/", "refused: 224.0.0.1 is a multicast address"),
    ("http://mdns.example/", "resolves to 224.0.0.251, a multicast address"),
    ("http://www.public-name.example/", "resolves to 10.20.30.40, a private address"),
    ("http://mixed.example/", "resolves to 192.168.1.10, a private address"),
    ("https://10.0.0.1:8443/", "refused: 10.0.0.1 is a private address"),
    ("http://172.16.5.4/", "refused: 172.16.5.4 is a private address"),
    ("http://[fd00::1]/", "refused: fd00::1 is a private address"),
    ("http://v6-ula.example/", "resolves to fd00::1, a private address"),
    ("http://[fe80::1]/", "refused: fe80::1 is a link-local address"),
    ("http://mapped.example/", "resolves to ::ffff:127.0.0.1, a loopback address"),
    ("http://nat64.example/", "resolves to 64:ff9b::a00:1, a private address"),
    ("http://[::]/", "refused: :: is an unspecified address"),
    ("http://0.0.0.0/", "refused: 0.0.0.0 is an unspecified address"),
    ("http://100.64.0.1/", "refused: 100.64.0.1 is a non-public address"),
    ("http://127.0.0.1/", "refused: 127.0.0.1 is a loopback address"),
    ("http://[fec0::1]/", "refused: fec0::1 is a site-local address"),
    ("http://site-local.example/", "resolves to fec0::1, a site-local address"),
    ("http://[3fff::1]/", "refused: 3fff::1 is a documentation address"),
    ("http://v6-doc.example/", "resolves to 3fff:abc::1, a documentation address"),
    ("http://[5f00::1]/", "refused: 5f00::1 is a reserved address"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_fetch_refuses_before_connecting(no_connect, url, reason):
    with pytest.raises(AddressRefused) as fetched:
        fetch(url, CrawlerConfig(timeout=1), 1000)
    with pytest.raises(AddressRefused) as checked:
        check_address(url, CrawlerConfig())
    for info in (fetched, checked):
        assert str(info.value).startswith("refused: ") and reason in str(info.value)
        assert "allow_private_networks" in str(info.value)  # says how to allow it
    assert no_connect == []


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("10.0.0.1", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("fec0::1", "site-local"),  # deprecated site-local, fec0::/10
        ("feff:ffff::1", "site-local"),
        ("3fff::1", "documentation"),  # RFC 9637, 3fff::/20
        ("3fff:fff:ffff::1", "documentation"),
        ("2001:db8::1", "private"),
        ("5f00::1", "reserved"),  # SRv6 SIDs, RFC 9602
        ("64:ff9b:1::1", "reserved"),  # local-use NAT64, RFC 8215
        ("100:0:0:1::1", "reserved"),  # the dummy prefix, RFC 9780
        ("8.8.8.8", None),
        ("2606:4700::1", None),
        ("3fff:1000::1", None),  # just past 3fff::/20: global unicast
        ("2001:4860:4860::8888", None),
    ],
)
def test_address_kind_names_why_an_address_is_refused(ip, kind):
    assert address_kind(ip) == kind


def test_unresolvable_names_fail_permanently_without_connecting(no_connect):
    with pytest.raises(PermanentError, match="cannot resolve host 'nowhere.example'"):
        fetch("http://nowhere.example/", CrawlerConfig(timeout=1), 1000)


class RebindingResolver(FakeResolver):
    """Answers a public address for rebind.example once, a private one from then on."""

    def __call__(self, host, *args, **kwargs):
        answer = super().__call__(host, *args, **kwargs)
        if host == "rebind.example":
            self.answers = {**self.answers, host: ["10.0.0.1"]}
        return answer


def test_the_connection_goes_to_the_checked_address_only(monkeypatch):
    """A name that re-resolves to a private address (DNS rebinding) is looked up once per
    connection: the socket connects to the public address that was checked. Connect is
    patched to record the address and refuse, so nothing is sent."""
    resolver = RebindingResolver({"rebind.example": ["93.184.216.34"]})
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    attempts: list = []

    def connect(sock, address):
        attempts.append(address)
        raise ConnectionRefusedError("refused by the test (nothing was sent)")

    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(requests.ConnectionError):
        fetch("http://rebind.example/", CrawlerConfig(timeout=1), 1000)
    assert resolver.lookups == ["rebind.example"]
    assert attempts == [("93.184.216.34", 80)]
    with pytest.raises(AddressRefused, match="rebind.example resolves to 10.0.0.1"):
        fetch("http://rebind.example/", CrawlerConfig(timeout=1), 1000)
    assert attempts == [("93.184.216.34", 80)]


def test_allow_hosts_and_allow_private_networks_let_private_addresses_through(
    monkeypatch, resolver
):
    attempts: list = []

    def connect(sock, address):
        attempts.append(address)
        raise ConnectionRefusedError("refused by the test (nothing was sent)")

    monkeypatch.setattr(socket.socket, "connect", connect)
    listed = CrawlerConfig(timeout=1, allow_hosts=["metadata.example:8080"])
    with pytest.raises(AddressRefused):  # listed with another port
        fetch("http://metadata.example/", listed, 1000)
    with pytest.raises(requests.ConnectionError):
        fetch("http://metadata.example:8080/", listed, 1000)
    with pytest.raises(requests.ConnectionError):
        fetch(
            "http://metadata.example/",
            CrawlerConfig(timeout=1, allow_hosts=["Metadata.Example"]),
            1000,
        )
    with pytest.raises(requests.ConnectionError):
        fetch("http://10.0.0.1/", CrawlerConfig(timeout=1, allow_private_networks=True), 1000)
    assert attempts == [("10.0.0.1", 8080), ("10.0.0.1", 80), ("10.0.0.1", 80)]


def test_allow_hosts_entries_parse_names_ports_and_ipv6():
    policy = AddressPolicy.from_config(
        CrawlerConfig(allow_hosts=["Intranet.Local", "wiki.local:8080", "[::1]:9000", "fd00::5"])
    )
    assert policy.host_listed("intranet.local", 80) and policy.host_listed("INTRANET.local.", 1)
    assert policy.host_listed("wiki.local", 8080) and not policy.host_listed("wiki.local", 80)
    assert policy.host_listed("::1", 9000) and not policy.host_listed("::1", 80)
    assert policy.host_listed("fd00::5", 443)


def test_a_redirect_to_a_private_address_is_refused_before_connecting(monkeypatch, resolver):
    """A listed loopback server redirects to metadata.example: the hop is refused, and
    the only connection made is the one to the loopback server."""
    server = CountingServer("127.0.0.1", redirect_to="http://metadata.example/latest/")
    attempts: list = []

    def connect(sock, address):
        attempts.append(address)
        if not _loopback(address):
            pytest.fail(f"connection attempted to {address!r}")
        return REAL_CONNECT(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    limits = CrawlerConfig(timeout=2, allow_hosts=[f"127.0.0.1:{server.port}"])
    try:
        with pytest.raises(AddressRefused, match="metadata.example resolves to 10.0.0.1"):
            fetch(f"http://127.0.0.1:{server.port}/", limits, 1000)
    finally:
        server.stop()
    assert server.hits == ["/"]
    assert attempts == [("127.0.0.1", server.port)]


def test_a_refused_crawl_fails_its_root_job_at_once(tmp_path, no_connect):
    """The whole crawler, run by a real Runner: the root job fails, permanently, with the
    reason, and spawns nothing."""
    from quaero.services import build_services
    from quaero.worker import Runner

    services = build_services(make_config(tmp_path, crawler={"allow_private_networks": False}))
    try:
        job = services.manager.create_root("crawler", {"url": "http://metadata.example/"})
        Runner(services, "test:1:ssrf").run(job.id)
        from quaero import queries

        root = queries.get_job(job.id)
        assert root.status == "failed" and root.attempts == 1
        assert "refused: metadata.example resolves to 10.0.0.1, a private address" in root.error
        assert root.counts["total"] == 0
    finally:
        services.close()
    assert no_connect == []


def test_no_proxy_from_the_environment_is_used(monkeypatch, no_connect):
    """HTTP(S)_PROXY would resolve names where the guard cannot see them: ignored."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    session = netguard.guarded_session(AddressPolicy())
    assert session.trust_env is False
    with pytest.raises(AddressRefused, match="metadata.example"):
        fetch("http://metadata.example/", CrawlerConfig(timeout=1), 1000)


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[int, str, list]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for "localhost"."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    names: list = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = CountingServer("127.0.0.1")
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    yield server.port, str(cert), names
    server.stop()


def test_https_keeps_the_name_for_sni_and_the_certificate_check(tls_server):
    """The guard connects to the checked IP, yet TLS still sends and verifies the name."""
    port, cert, names = tls_server
    session = netguard.guarded_session(AddressPolicy(allow_private_networks=True))
    response = session.get(f"https://localhost:{port}/", verify=cert, timeout=5)
    assert response.status_code == 200 and names == ["localhost"]
    with pytest.raises(requests.exceptions.SSLError):  # the certificate is not for the IP
        session.get(f"https://127.0.0.1:{port}/", verify=cert, timeout=5)


def test_a_literal_address_is_not_sent_to_the_resolver(monkeypatch):
    """An IP written in the URL needs no lookup (a getaddrinfo call per page costs ~1 ms
    on a slow machine); names and odd spellings (2130706433, 127.1) still get one."""
    looked_up: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert netguard.resolve("127.0.0.1", 80) == [(socket.AF_INET, "127.0.0.1")]
    assert netguard.resolve("[::1]", 80) == [(socket.AF_INET6, "::1")]
    assert netguard.resolve("10.0.0.1", 80) == [(socket.AF_INET, "10.0.0.1")]
    assert looked_up == []
    assert netguard.resolve("2130706433", 80) == [(socket.AF_INET, "127.0.0.1")]
    assert netguard.resolve("127.1", 80) == [(socket.AF_INET, "127.0.0.1")]
    assert looked_up == ["2130706433", "127.1"]
