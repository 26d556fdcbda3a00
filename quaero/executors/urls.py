"""Pure URL helpers of the crawler: normalisation, link filtering, HTML links, address checks.

Nothing here touches the network, so every function can be unit-tested on its own.
Everything that reads hostile input runs in linear time: user regexes on RE2 (no
backtracking, so `(a+)+$` cannot freeze a process), HTML on libxml2's HTML5 tokenizer.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit, urlunsplit

import re2
from lxml import etree

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
    scheme, sep, rest = url.partition("://")
    netloc = rest.partition("/")[0]
    if sep and scheme in SCHEMES and not any(c in netloc for c in "?#\\"):
        return netloc  # a normalised URL's path starts with "/": no need to parse it all
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
    if include and not any(_regex(pattern).search(url) for pattern in include):
        return False
    return not any(_regex(pattern).search(url) for pattern in exclude)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the user's error, reported to them


@lru_cache(maxsize=1024)
def _regex(pattern: str):
    """`pattern` compiled with RE2: matching is linear in the URL, whatever the pattern."""
    return re2.compile(pattern, _RE2_OPTIONS)


def regex_error(pattern: str) -> str | None:
    """Why RE2 cannot take `pattern` (bad syntax, a backreference, a lookaround), or None.

    Compiling is all the web process does with a user's pattern; matching happens in the
    workers, on RE2 too.
    """
    try:
        _regex(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", errors="replace")
        return f"{reason} (patterns use RE2 syntax: no backreferences or lookaround)"
    return None


class ParsedHtml(NamedTuple):
    """What the crawler reads from a page: its title, raw hrefs and <base href>."""

    title: str | None
    links: list[str]
    base: str | None


class _LinkCollector:
    """An lxml parser target: keeps <a>/<area> hrefs, the first <base href> and the
    first <title>'s text, and builds no tree."""

    def __init__(self) -> None:
        self.links: list[str] = []
        self.base: str | None = None
        self.title: str | None = None
        self._title_parts: list[str] | None = None
        self._title_chars = 0

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        """Record links, the base URL and the start of the title."""
        if tag in ("a", "area", "base"):
            href = (attrib.get("href") or "").strip()
            if not href:
                return
            if tag == "base":
                self.base = self.base or href
            else:
                self.links.append(href)
        elif tag == "title" and self.title is None and self._title_parts is None:
            self._title_parts = []

    def end(self, tag: str) -> None:
        """Close the title."""
        if tag == "title":
            self.finish_title()

    def data(self, text: str) -> None:
        """Collect the title's text (no more than a few times what is kept)."""
        if self._title_parts is not None and self._title_chars < 8 * MAX_TITLE_CHARS:
            self._title_parts.append(text)
            self._title_chars += len(text)

    def close(self) -> None:
        """End of input: an unclosed <title> still counts."""
        self.finish_title()

    def finish_title(self) -> None:
        if self._title_parts is not None:
            text = " ".join("".join(self._title_parts).split())
            self.title = text[:MAX_TITLE_CHARS]
            self._title_parts = None


def parse_html(text: str) -> ParsedHtml:
    """Parse an HTML document (malformed or not) for its title and links.

    libxml2's HTML parser (lxml) with a parser target: its HTML5 tokenizer reads each
    byte a bounded number of times, and a target builds no tree. Measured on
    pathological input (tests/test_crawler_hostile.py), every case stays linear, at
    about 0.1-0.3 s of CPU per MB. The alternatives were not: html.parser rescans an
    unfinished tag on every feed (`<a ` x 20,000, 60 KB, took 76 s); selectolax (Lexbor)
    builds an HTML5 tree whose open-element scope checks and duplicate-attribute checks
    are quadratic (200 K nested <div>s or one tag with 250 K attributes: minutes); lxml
    building a tree appends each attribute by walking the list (quadratic too) and stops
    at 256 levels of nesting.
    """
    target = _LinkCollector()
    parser = etree.HTMLParser(target=target, recover=True, no_network=True)
    try:
        if text:
            parser.feed(text)
        parser.close()
    except etree.LxmlError:  # recover=True keeps going on bad markup; keep what was read
        target.finish_title()
    return ParsedHtml(target.title, target.links, target.base)


def page_links(body: bytes, charset: str | None, url: str) -> tuple[str | None, list[str]]:
    """The title and the distinct normalised http(s) links of an HTML page, in order.

    Links repeat: an index page holds 10,000 links to a few hundred pages (one per
    #anchor), and the pages of one folder share most of theirs. So fragments are cut
    first, each distinct spelling of a page is resolved once, and resolutions are
    cached per process by what they depend on: the base's origin for a link that
    starts with "/" or a scheme, the base's folder for a relative one.
    """
    try:
        text = body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        text = body.decode("utf-8", errors="replace")
    parsed = parse_html(text)
    base = (normalize_url(parsed.base, url) if parsed.base else None) or url
    spellings = dict.fromkeys(cut_fragment(href) for href in parsed.links)
    root, folder = base_scopes(base)
    links = (resolve_link(href, base, root, folder) for href in spellings)
    return parsed.title, list(dict.fromkeys(link for link in links if link is not None))


def cut_fragment(href: str) -> str:
    """`href` without its #fragment (kept whole if a space precedes the "#": urlsplit
    keeps such a space in the path, so cutting there would change the URL)."""
    cut = href.partition("#")[0]
    return cut if not cut or not cut[-1].isspace() else href


def base_scopes(base: str) -> tuple[str, str]:
    """The origin's root ("http://h/") and the folder ("http://h/a/") of a normalised
    base URL: all that the resolution of a link with a path depends on (RFC 3986 5.2)."""
    without_query = base.partition("?")[0]
    root = origin(base) + "/"
    return root, without_query[: without_query.rfind("/") + 1] or root


def resolve_link(href: str, base: str, root: str, folder: str) -> str | None:
    """`normalize_url(href, base)` for a fragment-free `href`, cached when its result
    depends only on `root` (an absolute path or URL) or `folder` (a relative path)."""
    if _is_plain_absolute_path(href):
        return root[:-1] + href  # what urljoin + normalize_url give, without parsing
    if _ROOTED.match(href):
        return _resolve_cached(href, root)
    if not href or href[0] in "?;" or href[0] <= " " or href.startswith("//") or _ODD.search(href):
        return normalize_url(href, base)  # the page itself, its query, "http:x": uncached
    return _resolve_cached(href, folder)


def _is_plain_absolute_path(href: str) -> bool:
    """An absolute path ("/a/b.html?x=1") that resolution leaves as it is: no "//" or dot
    segment in the path (urljoin would collapse them), no empty "?", no space or control
    character (urlsplit strips some)."""
    if href[:1] != "/" or href[1:2] == "/":
        return False
    path, mark, query = href.partition("?")
    return not ("//" in path or "/." in path or (mark and not query) or _UNSAFE.search(href))


_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
# Fixed patterns without nested repetition (linear in the link on `re`, which is several
# times faster than RE2's wrapper for one short string).
#: An absolute path, or a URL with a host: resolved the same against any base of a site.
_ROOTED = re.compile(r"^(?:/(?:[^/\t\r\n]|$)|(?:[A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#\s])")
#: A scheme without a host ("http:x"), or characters urlsplit drops: resolved uncached.
_ODD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|[\t\r\n]")
RESOLVE_CACHE_SIZE = 32_768


@lru_cache(maxsize=RESOLVE_CACHE_SIZE)
def _resolve_cached(href: str, scope: str) -> str | None:
    return normalize_url(href, scope)


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
#: Ranges that are not globally routable although this Python's `is_global` may say so
#: (its table depends on the Python version): checked on top of `is_global`.
NOT_GLOBAL = (
    ("site-local", ipaddress.ip_network("fec0::/10")),  # deprecated (RFC 3879), not routed
    ("documentation", ipaddress.ip_network("3fff::/20")),  # RFC 9637
    ("documentation", ipaddress.ip_network("2001:db8::/32")),
    ("non-public", ipaddress.ip_network("5f00::/16")),  # SRv6 SIDs (RFC 9602)
    ("reserved", ipaddress.ip_network("64:ff9b:1::/48")),  # local-use NAT64 (RFC 8215)
    ("reserved", ipaddress.ip_network("100::/64")),  # discard-only (RFC 6666)
    ("reserved", ipaddress.ip_network("100:0:0:1::/64")),  # dummy prefix (RFC 9780)
)


def address_kind(ip: str) -> str | None:
    """What makes `ip` non-public ("loopback", "private", "link-local", ...), or None.

    Only globally routable addresses pass: `ipaddress`'s `is_global` plus NOT_GLOBAL.
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
    )
    kind = next((kind for kind, matches in checks if matches), None)
    if kind is None:
        kind = next((kind for kind, net in NOT_GLOBAL if addr in net), None)
    if kind is None and not addr.is_global:
        kind = "non-public"
    return kind


def is_public_address(ip: str) -> bool:
    """False for loopback, private, link-local, multicast, unspecified or reserved IPs."""
    return address_kind(ip) is None
