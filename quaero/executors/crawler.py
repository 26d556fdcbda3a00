"""The web crawler: a `crawler` root job and one `crawl_page` child job per page.

The root validates the payload, clamps it to the `[crawler]` config and spawns the start
page. Each page job fetches one URL and spawns a child for every new link it may follow;
the database de-duplicates pages within a crawl (`dedup_key` = the normalised URL), so no
crawl-wide state lives in memory. A page's crawl state and its children are written in
one transaction fenced by the job's lease epoch: the tree's known URLs are read once and
child rows are built for the new ones only (pages of 10,000 links, mostly known).
Depth follows wget's `-r -l N`: depth 0 = the start page, and a page's depth is its
shortest link distance from it, whatever order pages are fetched in: a page found again
nearer gets the smaller depth and its links are followed again from there (crawlstate.py
keeps the best depths in the database).

Guards: only http/https URLs are fetched; every connection goes through `netguard`, which
resolves the host once, refuses loopback, private, link-local, multicast, unspecified and
reserved addresses (unless `allow_private_networks`, or the host is in `allow_hosts`)
before any socket is opened, and connects to exactly the address it checked (no DNS
rebinding window). Redirects are followed by hand, at most `max_redirects`, each hop
checked like the first. A body cap (`max_bytes`) and one deadline per page always apply:
robots.txt, connect, headers, body and every redirect together end within
`timeout` x PAGE_DEADLINE_FACTOR seconds, and a cancel ends the fetch within about a
second (deadline.py: a watchdog shuts the sockets down, whatever the site drips).
`depth` and `max_pages` are clamped to the config and links longer than `MAX_URL_CHARS`
are dropped, so traps (endlessly deep paths, exploding query strings) end at the caps.
A refused address fails the job for good with the reason ("refused: 10.0.0.1 is a
private address"); the root checks the start URL first, so a refused crawl fails as a
whole at once.
robots.txt is read once per (crawl, scheme+host) per process and parsed by protego after
RFC 9309 (longest match wins, `*` and `$`); a page it disallows is not
fetched and its job *completes* with `blocked_by_robots: true` (logged as a warning),
because retrying cannot change the answer and it is not an error of the crawl.
The per-host `delay` is the minimum gap between two requests (robots.txt included) to
one host of one crawl, across every worker of every process: the slots are taken in the
database (crawlstate.py); with `delay = 0` nothing is written.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Literal

import peewee
import requests
from protego import Protego
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quaero.config import CrawlerConfig
from quaero.executors import crawlstate
from quaero.executors.base import ChildSpec, Executor, JobContext, PermanentError, register
from quaero.executors.deadline import Deadline, DeadlineExceeded, current
from quaero.executors.netguard import AddressPolicy, check_url, guarded_session
from quaero.executors.urls import (
    host_key,
    link_allowed,
    normalize_url,
    origin,
    page_links,
    parse_content_type,
    regex_error,
)

logger = logging.getLogger(__name__)

MAX_RESULT_LINKS = 500
MAX_URL_CHARS = 2000  # longer links are dropped: they are traps, not pages
ROBOTS_MAX_BYTES = 500_000
HTML_TYPES = ("text/html", "application/xhtml+xml")
#: A page's whole fetch (robots.txt, connect, headers, body, redirects) ends within
#: `crawler.timeout` x this; each single connect or read also waits at most `timeout`.
PAGE_DEADLINE_FACTOR = 3


class CrawlPayload(BaseModel):
    """The payload of a `crawler` job."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="start page, http:// or https://")
    depth: int = Field(2, ge=0, description="links to follow from the start page")
    max_pages: int | None = Field(None, ge=1, description="default and cap: crawler.max_pages")
    same_host: bool = True
    include: list[str] = Field(default_factory=list, max_length=100)
    exclude: list[str] = Field(default_factory=list, max_length=100)
    delay: float = Field(0.0, ge=0, le=60, description="seconds between requests to a host")
    respect_robots: bool | None = None
    on_child_failure: Literal["ignore", "fail"] = Field(
        "ignore", description="fail: the crawl fails once a page failed for good"
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        url = normalize_url(value)
        if url is None:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        return url

    @field_validator("include", "exclude")
    @classmethod
    def _check_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            error = regex_error(pattern)
            if error is not None:
                raise ValueError(f"invalid regular expression {pattern!r}: {error}")
        return patterns


@register
class CrawlExecutor(Executor):
    """Starts a crawl: checks the settings and spawns the start page."""

    type: ClassVar[str] = "crawler"
    payload_model: ClassVar[type[BaseModel] | None] = CrawlPayload

    def run(self, ctx: JobContext) -> dict[str, Any]:
        """Spawn the start page's `crawl_page` job with the crawl's settings."""
        limits = ctx.config.crawler
        try:
            payload = CrawlPayload.model_validate(ctx.payload)
        except ValidationError as exc:
            raise PermanentError(f"invalid crawler payload: {exc}") from None
        start = payload.url  # normalised by the validator
        depth, max_pages = payload.depth, payload.max_pages or limits.max_pages
        if max_pages > limits.max_pages:
            ctx.warning(f"max_pages {max_pages} lowered to the configured {limits.max_pages}")
            max_pages = limits.max_pages
        if depth > limits.max_depth:
            ctx.warning(f"depth {depth} lowered to the configured max_depth {limits.max_depth}")
            depth = limits.max_depth
        respect = payload.respect_robots
        settings = {
            "max_depth": depth,
            "max_pages": max_pages,
            "same_host": payload.same_host,
            "include": payload.include,
            "exclude": payload.exclude,
            "delay": payload.delay,
            "respect_robots": limits.respect_robots if respect is None else respect,
            "start_host": host_key(start),
        }
        ctx.info(f"crawl of {start} to depth {depth}, at most {max_pages} pages")
        check_address(start, limits)  # a refused start fails the crawl itself, at once
        ctx.raise_if_cancelled()
        child = ChildSpec(
            "crawl_page",
            payload={"url": start, "depth": 0, "crawl": settings},
            name=start,
            dedup_key=start,
        )
        ctx.spawn([child], root_limit=max_pages)
        return {"start_url": start, "depth": depth, "max_pages": max_pages}


@register
class CrawlPageExecutor(Executor):
    """Fetches one page of a crawl and spawns its new links."""

    type: ClassVar[str] = "crawl_page"
    public: ClassVar[bool] = False

    def run(self, ctx: JobContext) -> dict[str, Any]:
        """Fetch the page, parse its links and spawn the ones the crawl may follow."""
        limits = ctx.config.crawler
        url = normalize_url(str(ctx.payload.get("url", "")))
        if url is None:
            raise PermanentError(f"not an http(s) URL: {ctx.payload.get('url')!r}")
        depth = int(ctx.payload.get("depth", 0))
        crawl = dict(ctx.payload.get("crawl") or {})
        ctx.raise_if_cancelled()
        respect_robots = crawl.get("respect_robots", limits.respect_robots)
        deadline = page_deadline(limits, f"fetching {url}", cancel_check(ctx))
        delay = float(crawl.get("delay", 0))

        def polite() -> None:
            with deadline.paused():  # the politeness delay is ours, not the site's
                wait_for_host(host_key(url), delay, ctx)

        with deadline.active():
            if respect_robots and not robots_allows(
                url, ctx.job.root_id, limits, deadline, before_fetch=polite
            ):
                ctx.warning(f"{url} blocked by robots.txt")
                return page_result(url, depth, blocked_by_robots=True)
            polite()
            ctx.raise_if_cancelled()
            started = time.monotonic()
            page = fetch(url, limits, limits.max_bytes, deadline)
            elapsed_ms = round((time.monotonic() - started) * 1000)
        if 400 <= page.status_code < 500:
            raise PermanentError(f"HTTP {page.status_code} for {url}")
        if page.status_code >= 500:
            raise requests.HTTPError(f"HTTP {page.status_code} for {url}")
        if page.truncated:
            ctx.warning(f"{url}: response larger than {limits.max_bytes} bytes, truncated")
        if depth == 0 and host_key(page.url) != host_key(url):
            ctx.info(f"start page redirected to {page.url}; following links on its host")
            crawl["start_host"] = host_key(page.url)
        title, links = None, []
        if page.content_type in HTML_TYPES:
            title, links = page_links(page.body, page.charset, page.url)
        followable = self._followable(ctx, links, crawl)
        depth, new_ids = self._record_and_expand(ctx, url, depth, followable, crawl)
        ctx.info(
            f"GET {url} -> {page.status_code} {page.content_type or '-'}, {len(page.body)} "
            f"bytes, {len(links)} links ({len(new_ids)} new)"
        )
        return page_result(
            url,
            depth,
            status_code=page.status_code,
            content_type=page.content_type,
            title=title,
            bytes=len(page.body),
            links=links[:MAX_RESULT_LINKS],
            elapsed_ms=elapsed_ms,
            final_url=page.url,
            truncated=page.truncated,
        )

    def _followable(self, ctx: JobContext, links: list[str], crawl: dict[str, Any]) -> list[str]:
        """The links of a page that the crawl may follow (at most `max_pages`)."""
        max_pages = int(crawl.get("max_pages", ctx.config.crawler.max_pages))
        start_host = crawl.get("start_host")
        same_host = bool(crawl.get("same_host", True))
        include, exclude = crawl.get("include") or (), crawl.get("exclude") or ()
        links = [link for link in links if len(link) <= MAX_URL_CHARS]  # page_links: distinct
        if same_host and start_host and not include and not exclude:
            # the common case, per link a string test: a normalised URL of the start
            # host begins with one of these (link_allowed's host_key, without parsing)
            prefixes = tuple(f"{scheme}://{start_host}/" for scheme in ("http", "https"))
            return [link for link in links if link.startswith(prefixes)][:max_pages]
        allowed_link = partial(
            link_allowed, start_host=start_host, same_host=same_host, include=include,
            exclude=exclude,
        )  # fmt: skip
        return [link for link in links if allowed_link(link)][:max_pages]

    def _record_and_expand(
        self, ctx: JobContext, url: str, depth: int, links: list[str], crawl: dict[str, Any]
    ) -> tuple[int, list[int]]:
        """Store the page's followable links and spawn a child for each new one, in one
        transaction fenced by the job's lease (a stale attempt writes nothing): the
        page's best known depth comes back from the database, and pages already
        fetched that these links bring nearer are followed again from their stored
        links (children of this job). Returns the page's depth and the new jobs' ids."""
        max_pages = int(crawl.get("max_pages", ctx.config.crawler.max_pages))
        max_depth = int(crawl.get("max_depth", 0))
        root_id, finder = ctx.job.root_id, ctx.job.id
        outcome: dict[str, Any] = {}

        def prepare(db: peewee.Database) -> list[ChildSpec]:
            # may run again if the transaction is retried: it starts from scratch
            best = crawlstate.record_fetched(db, _inside, root_id, url, depth, links)
            children: dict[str, int] = {}  # link -> the smallest depth found this attempt
            again: list[tuple[str, int]] = []
            frontier = [(links, best)]
            while frontier:
                found, at = frontier.pop()
                if at >= max_depth or not found:
                    continue
                nearer = crawlstate.found_at(db, _inside, root_id, found, at + 1, finder=finder)
                for link in found:
                    if children.get(link, at + 2) > at + 1:
                        children[link] = at + 1
                for page_url, nearer_depth, stored in nearer:
                    if (page_url, nearer_depth) not in again:  # claims of ours followed once
                        again.append((page_url, nearer_depth))
                        frontier.append((stored, nearer_depth))
            outcome.update(depth=best, again=again)
            return [
                ChildSpec("crawl_page", {"url": link, "depth": at, "crawl": crawl}, link, link)
                for link, at in children.items()
            ]

        new_ids = ctx.spawn([], root_limit=max_pages, prepare=prepare)
        for page_url, nearer_depth in outcome["again"]:
            ctx.info(
                f"{page_url} found again at depth {nearer_depth}: following its links from there"
            )
        return int(outcome["depth"]), new_ids


def _inside(write: Callable[[], Any]) -> Any:
    """crawlstate's `transaction` argument for writes inside the context's transaction."""
    return write()


def page_result(url: str, depth: int, **fields: Any) -> dict[str, Any]:
    """A `crawl_page` result: every documented key, empty unless given in `fields`."""
    empty = {"status_code": None, "content_type": None, "title": None, "bytes": 0, "links": []}
    return {"url": url, **empty, "depth": depth, "elapsed_ms": 0, **fields}


@dataclass(frozen=True)
class Fetched:
    """A fetched response: final URL, status, media type, (possibly truncated) body."""

    url: str
    status_code: int
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool


def check_address(url: str, limits: CrawlerConfig) -> None:
    """Refuse (PermanentError) a URL whose host the crawler may not connect to.

    Resolves the host without connecting; `fetch` checks again at connect time, on the
    very addresses it connects to.
    """
    check_url(url, AddressPolicy.from_config(limits))


def page_deadline(
    limits: CrawlerConfig, what: str, cancelled: Callable[[], bool] | None = None
) -> Deadline:
    """The deadline of one page: `timeout` x PAGE_DEADLINE_FACTOR seconds from now."""
    return Deadline(limits.timeout * PAGE_DEADLINE_FACTOR, cancelled, what)


def cancel_check(ctx: JobContext) -> Callable[[], bool]:
    """`ctx.cancelled`, safe to call from the deadline's watchdog thread too: there it
    gives its database connection back after each look, so the watchdog holds none
    (a PostgreSQL pool counts its connections)."""
    owner = threading.get_ident()

    def cancelled() -> bool:
        if threading.get_ident() == owner:
            return ctx.cancelled()
        try:
            return ctx.cancelled()
        finally:
            if not ctx.manager.db.is_closed():
                ctx.manager.db.close()

    return cancelled


def fetch(
    url: str, limits: CrawlerConfig, max_bytes: int, deadline: Deadline | None = None
) -> Fetched:
    """GET `url`, following up to `max_redirects` redirects by hand, within `deadline`
    (by default a page's: `timeout` x PAGE_DEADLINE_FACTOR).

    Every connection (the first and each hop's) is checked by `netguard` before it is
    opened; a refused one raises `AddressRefused`, a PermanentError. Past the deadline
    the connection is shut and `DeadlineExceeded` (permanent) is raised; on a cancel,
    `JobCancelled`.
    """
    deadline = deadline or page_deadline(limits, f"fetching {url}")
    if current() is deadline:
        return _fetch(url, limits, max_bytes, deadline)
    with deadline.active():
        return _fetch(url, limits, max_bytes, deadline)


def _fetch(url: str, limits: CrawlerConfig, max_bytes: int, deadline: Deadline) -> Fetched:
    session = guarded_session(AddressPolicy.from_config(limits))
    max_redirects = limits.max_redirects
    current_url = url
    try:
        for _ in range(max_redirects + 1):
            deadline.check()
            timeout = deadline.cap(limits.timeout)
            try:
                response = session.get(
                    current_url,
                    headers={"User-Agent": limits.user_agent},
                    stream=True,
                    timeout=(timeout, timeout),
                    allow_redirects=False,
                )
            except requests.exceptions.InvalidURL as exc:
                raise PermanentError(f"cannot fetch {current_url}: {exc}") from None
            except requests.RequestException:
                deadline.check()  # a socket the watchdog shut reads as a broken connection
                raise
            with response:
                if response.is_redirect:
                    target = normalize_url(response.headers["location"], current_url)
                    if target is None:
                        raise PermanentError(f"{current_url} redirects to a non-http(s) URL")
                    current_url = target
                    continue
                body, truncated = _read_capped(response, max_bytes, deadline)
                content_type, charset = parse_content_type(response.headers.get("content-type"))
                return Fetched(
                    current_url, response.status_code, content_type, charset, body, truncated
                )
        raise PermanentError(f"too many redirects (more than {max_redirects}) from {url}")
    finally:
        if deadline.reason is not None:
            session.close()  # never reuse a connection the watchdog shut


def _read_capped(response: requests.Response, limit: int, deadline: Deadline) -> tuple[bytes, bool]:
    """Read at most `limit` bytes of the body; True if there was more.

    A body cut short by the watchdog raises (DeadlineExceeded, JobCancelled) rather than
    passing for a complete one.
    """
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_content(16 * 1024):  # small chunks bound decompression
            if total + len(chunk) > limit:
                chunks.append(chunk[: limit - total])
                return b"".join(chunks), True
            chunks.append(chunk)
            total += len(chunk)
            deadline.check()
    except requests.RequestException:
        deadline.check()
        raise
    deadline.check()
    return b"".join(chunks), False


ROBOTS_CACHE_SIZE = 256
_robots: OrderedDict[tuple[int, str], Protego] = OrderedDict()
_robots_locks: dict[tuple[int, str], threading.Lock] = {}
_robots_lock = threading.Lock()
_ALLOW_ALL = Protego.parse("")
_DISALLOW_ALL = Protego.parse("User-agent: *\nDisallow: /\n")


def robots_allows(
    url: str,
    root_id: int,
    limits: CrawlerConfig,
    deadline: Deadline | None = None,
    before_fetch: Callable[[], None] | None = None,
) -> bool:
    """Whether robots.txt of `url`'s host lets our user agent fetch it (cached per crawl).

    Parsed by protego, after RFC 9309: the group of the most specific user agent, the
    longest matching rule (Allow wins a tie), `*` and `$`. The fetch counts against the
    page's `deadline`, and so does waiting for another page's fetch of the same file.
    `before_fetch` runs just before robots.txt is requested (the politeness delay).
    """
    deadline = deadline or page_deadline(limits, f"reading robots.txt for {url}")
    key = (root_id, origin(url))
    with _robots_lock:
        parser = _robots.get(key)
        key_lock = _robots_locks.setdefault(key, threading.Lock())
    if parser is None:
        with deadline.active() if current() is not deadline else contextlib.nullcontext():
            while not key_lock.acquire(timeout=0.1):  # one fetch per key at a time
                deadline.check()
            try:
                with _robots_lock:
                    parser = _robots.get(key)
                if parser is None:
                    if before_fetch is not None:
                        before_fetch()
                    parser = _fetch_robots_once(key, limits, deadline)
            finally:
                key_lock.release()
    return parser.can_fetch(url, limits.user_agent)


def _fetch_robots_once(key: tuple[int, str], limits: CrawlerConfig, deadline: Deadline) -> Protego:
    """Read robots.txt for `key` into the bounded cache; forget the key's lock on failure."""
    try:
        parser = _read_robots(key[1], limits, deadline)
    except Exception:
        with _robots_lock:
            _robots_locks.pop(key, None)
        raise
    with _robots_lock:
        _robots[key] = parser
        while len(_robots) > ROBOTS_CACHE_SIZE:
            old, _ = _robots.popitem(last=False)
            _robots_locks.pop(old, None)
    return parser


def _read_robots(site: str, limits: CrawlerConfig, deadline: Deadline) -> Protego:
    """Fetch and parse `site`/robots.txt: 401/403 forbid all, other 4xx allow all, 5xx retry."""
    try:
        page = fetch(
            site + "/robots.txt", limits, min(limits.max_bytes, ROBOTS_MAX_BYTES), deadline
        )
    except DeadlineExceeded as exc:
        raise DeadlineExceeded(f"{exc} (stuck reading {site}/robots.txt)") from None
    logger.debug("robots.txt of %s: HTTP %s", site, page.status_code)
    if page.status_code >= 500:
        raise requests.HTTPError(f"HTTP {page.status_code} for {site}/robots.txt")
    if page.status_code in (401, 403):
        return _DISALLOW_ALL
    if page.status_code >= 300:  # a missing robots.txt (or a dangling redirect)
        return _ALLOW_ALL
    return Protego.parse(page.body.decode("utf-8", errors="replace"))


def wait_for_host(host: str, delay: float, ctx: JobContext) -> None:
    """Sleep until this page's request slot for `host`: at least `delay` seconds after
    the previous request to it by any worker of this crawl (slots taken in the database,
    by this attempt only while it holds its job)."""
    if delay <= 0:
        return
    root_id = ctx.job.root_id
    slot = ctx.write(
        lambda db: crawlstate.take_host_slot(db, _inside, root_id, host, delay, ctx.now())
    )
    while (remaining := slot - ctx.now()) > 0:
        ctx.raise_if_cancelled()
        time.sleep(min(remaining, 0.25))
