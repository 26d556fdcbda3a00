"""P11's Scrapy baseline: a breadth-first crawl of one 127.0.0.1 site, run as its own process.

    python -m bench.scrapy_crawl URL --depth 2 --concurrency 5

The spider follows every <a href> of each HTML page, on the start URL's host and port
only (checked before any request is made, so nothing but the local site is ever
contacted), to `DEPTH_LIMIT`, in breadth-first order (DEPTH_PRIORITY = 1 and FIFO
queues, as Scrapy's documentation says for BFS), with CONCURRENT_REQUESTS = quaero's
workers, no robots.txt, no delay, no telnet console, no retries. It prints one JSON line:
pages fetched and seconds from the engine's start to its stop.
"""

from __future__ import annotations

import argparse
import json
import time
from urllib.parse import urldefrag, urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.linkextractors import LinkExtractor


class SiteSpider(scrapy.Spider):
    """Follows the links of every page on the start URL's host and port."""

    name = "bench"

    def __init__(self, start: str, extractor: str = "plain", **kwargs) -> None:
        super().__init__(**kwargs)
        self.extractor = extractor
        self.start_urls = [start]
        self.netloc = urlsplit(start).netloc
        # LinkExtractor's allow_domains and OffsiteMiddleware's allowed_domains compare
        # the host with its port ("127.0.0.1:8000") and would drop every link: the
        # netloc check below keeps the crawl on the site instead.
        self.links = LinkExtractor()
        self.pages = 0

    def parse(self, response):
        self.pages += 1
        if not hasattr(response, "text"):  # not HTML
            return
        if self.extractor == "linkextractor":
            urls = [link.url for link in self.links.extract_links(response)]
        else:  # the page's distinct hrefs, resolved, without fragments
            hrefs = response.xpath("//a/@href | //area/@href").getall()
            urls = list(dict.fromkeys(urldefrag(response.urljoin(h))[0] for h in hrefs))
        for url in urls:
            if urlsplit(url).netloc == self.netloc:  # loopback site only, port included
                yield scrapy.Request(url, callback=self.parse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument(
        "--extractor",
        choices=("plain", "linkextractor"),
        default="plain",
        help="plain: each page's distinct hrefs (the faster); linkextractor: Scrapy's own",
    )
    args = parser.parse_args()
    if urlsplit(args.url).hostname != "127.0.0.1":
        raise SystemExit("the benchmark's Scrapy crawls 127.0.0.1 only")
    settings = {
        "CONCURRENT_REQUESTS": args.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
        "DEPTH_LIMIT": args.depth,
        "DEPTH_PRIORITY": 1,
        "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
        "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
        "ROBOTSTXT_OBEY": False,
        "DOWNLOAD_DELAY": 0,
        "RETRY_ENABLED": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "HTTPERROR_ALLOW_ALL": True,  # count a 404 as fetched, like the others
        "LOG_LEVEL": "WARNING",
        "USER_AGENT": "scrapy-bench",
        "EXTENSIONS": {"scrapy.extensions.telnet.TelnetConsole": None},
    }
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(SiteSpider)
    started = time.monotonic()
    process.crawl(crawler, start=args.url, extractor=args.extractor)
    process.start()
    seconds = time.monotonic() - started
    stats = crawler.stats.get_stats()
    print(
        json.dumps(
            {
                "pages": crawler.spider.pages,
                "seconds": round(seconds, 3),
                "requests": stats.get("downloader/request_count", 0),
                "dupes_filtered": stats.get("dupefilter/filtered", 0),
            }
        )
    )


if __name__ == "__main__":
    main()
