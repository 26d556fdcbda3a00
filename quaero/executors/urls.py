"""Pure URL helpers of the crawler: normalisation, link filtering, HTML links, address checks.

Nothing here touches the network, so every function can be unit-tested on its own.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit, urlunsplit

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_TITLE_CHARS = 500


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of `url` (resolved against `base`), or None if not http(s).

    Drops the fragment and any user:password, lowercases scheme and host, drops the
    default port, turns an empty path into "/" and keeps the query as it is.
    """
    url = url.strip()
    if base is not None:
        url = urljoin(base, url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or a malformed IPv6 literal
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in SCHEMES or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def host_key(url: str) -> str:
    """The host of a normalised URL with its port if not the default ("example.com:8080")."""
    return urlsplit(url).netloc


def origin(url: str) -> str:
    """Scheme and host of a normalised URL ("https://example.com"), the robots.txt scope."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def link_allowed(
    url: str,
    *,
    start_host: str | None,
    same_host: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> bool:
    """Whether the crawl may follow the normalised `url`.

    With `same_host`, its host (port included) must equal `start_host`; it must match
    one of `include` (when given) and none of `exclude` (regexes searched in the URL).
    """
    if same_host and host_key(url) != start_host:
        return False
    if include and not any(re.search(pattern, url) for pattern in include):
        return False
    return not any(re.search(pattern, url) for pattern in exclude)


def regex_error(pattern: str) -> str | None:
    """Why `pattern` is not a valid regular expression, or None if it is."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    return None


class ParsedHtml(NamedTuple):
    """What the crawler reads from a page: its title, raw hrefs and <base href>."""

    title: str | None
    links: list[str]
    base: str | None


class LinkParser(HTMLParser):
    """Collects <a>/<area> hrefs, the first <title>'s text and the first <base href>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.base: str | None = None
        self.title: str | None = None
        self._title_parts: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Record links, the base URL and the start of the title."""
        if tag in ("a", "area", "base"):
            href = next((v for k, v in attrs if k == "href" and v), None)
            if href is None or not href.strip():
                return
            if tag == "base":
                self.base = self.base or href.strip()
            else:
                self.links.append(href.strip())
        elif tag == "title" and self.title is None and self._title_parts is None:
            self._title_parts = []

    def handle_endtag(self, tag: str) -> None:
        """Close the title."""
        if tag == "title":
            self._finish_title()

    def handle_data(self, data: str) -> None:
        """Collect the title's text."""
        if self._title_parts is not None:
            self._title_parts.append(data)

    def close(self) -> None:
        """Finish parsing; an unclosed <title> still counts."""
        super().close()
        self._finish_title()

    def _finish_title(self) -> None:
        if self._title_parts is not None:
            text = " ".join("".join(self._title_parts).split())
            self.title = text[:MAX_TITLE_CHARS]
            self._title_parts = None


def parse_html(text: str) -> ParsedHtml:
    """Parse an HTML document (malformed or not) for its title and links."""
    parser = LinkParser()
    try:
        parser.feed(text)
        parser.close()
    except AssertionError:
        # html.parser asserts on a few malformed constructs ("<![foo]>"); keep what it read.
        parser._finish_title()
    return ParsedHtml(parser.title, parser.links, parser.base)


def page_links(body: bytes, charset: str | None, url: str) -> tuple[str | None, list[str]]:
    """The title and the distinct normalised http(s) links of an HTML page, in order."""
    try:
        text = body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        text = body.decode("utf-8", errors="replace")
    parsed = parse_html(text)
    base = normalize_url(parsed.base, url) if parsed.base else None
    links = (normalize_url(href, base or url) for href in parsed.links)
    return parsed.title, list(dict.fromkeys(link for link in links if link is not None))


def parse_content_type(header: str | None) -> tuple[str, str | None]:
    """("text/html", "utf-8") from "text/html; charset=UTF-8"; ("", None) from nothing."""
    mime, *params = (header or "").split(";")
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'") or None
    return mime.strip().lower(), charset


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_kind(ip: str) -> str | None:
    """What makes `ip` non-public ("loopback", "private", "link-local", ...), or None.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, NAT64) are judged by that
    address, so "::ffff:127.0.0.1" is loopback too.
    """
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return "invalid"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        elif addr.sixtofour is not None:
            addr = addr.sixtofour
        elif addr in NAT64:
            addr = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    checks = (
        ("unspecified", addr.is_unspecified),
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),
        ("multicast", addr.is_multicast),
        ("private", addr.is_private),
        ("reserved", addr.is_reserved),
        ("non-public", not addr.is_global),
    )
    return next((kind for kind, matches in checks if matches), None)


def is_public_address(ip: str) -> bool:
    """False for loopback, private, link-local, multicast, unspecified or reserved IPs."""
    return address_kind(ip) is None
