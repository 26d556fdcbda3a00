"""P11: a crawl of a link-heavy documentation-like site against Scrapy and wget (issue 17).

The site (bench/linksite.py) has ~500 pages within depth 2, ~95 KB a page on average
(one of ~2.4 MB), ~330 links a page, index pages of 11,000+ links, ~170,000 links within
depth 2. Two settings, in one run:

- no delay: quaero (`run.py serve`, `p11_workers` thread workers, robots.txt respected)
  and Scrapy (bench/scrapy_crawl.py in its own process: CONCURRENT_REQUESTS = the same
  workers, DEPTH_LIMIT, BFS order, no robots.txt) alternate `p11_reps` times; the figure
  is the ratio of their median pages/s. wget runs once for context.
- `p11_delay` s per response: quaero and `wget -r -l 2` alternate `p11_reps` times; the
  ratio of their medians.

Pages/s counts the pages the site served (robots.txt aside) over quaero's POST → root's
`finished_at`, Scrapy's engine start → stop, wget's run time. Every crawl's set of
requested paths must equal the others' and the graph's.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.common import REPO_ROOT, BenchError, child_env, median
from bench.crawl import crawl_with_quaero, crawl_with_wget, duplicate_fetches, fetched_paths
from bench.harness import Context
from bench.linksite import LinkSite


def crawl_with_scrapy(ctx: Context, site: LinkSite, depth: int, workers: int) -> dict:
    """One Scrapy crawl of `site` (bench/scrapy_crawl.py); the pages it fetched and how fast."""
    site.reset_hits()
    cmd = [
        sys.executable,
        "-m",
        "bench.scrapy_crawl",
        site.url("/"),
        "--depth",
        str(depth),
        "--concurrency",
        str(workers),
    ]
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BenchError(
            f"Scrapy exited with {proc.returncode} (`make bench` installs it from "
            f"requirements-bench.txt): {proc.stderr[-800:]}"
        )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    pages = fetched_paths(site)
    return {
        "pages": len(pages),
        "duplicate_fetches": duplicate_fetches(site),
        "seconds": report["seconds"],
        "rate": round(len(pages) / report["seconds"], 2),
        "scrapy": report,
        "paths": pages,
    }


def run(ctx: Context) -> None:
    """P11."""
    s = ctx.sizes
    depth, workers, reps, delay = s["p11_depth"], s["p11_workers"], s["p11_reps"], s["p11_delay"]
    site = LinkSite(sections=s["p11_sections"], pages=s["p11_sections"]).start()
    expected = site.expected_paths(depth)
    shape = site.shape(depth)
    print(
        f"  site: {shape['pages']} pages within depth {depth}, {shape['mean_kb']} KB and "
        f"{shape['mean_links']} links a page on average, {shape['links']:,} links",
        flush=True,
    )
    runs: dict[str, list[dict]] = {"quaero": [], "scrapy": [], "quaero_delay": [], "wget_delay": []}
    sets: dict[str, frozenset[str]] = {}

    def keep(name: str, result: dict) -> None:
        paths = result.pop("paths")
        sets.setdefault(name, frozenset(paths))
        if paths != sets[name]:
            sets[name + f"#{len(runs[name])}"] = frozenset(paths)
        runs[name].append(result)
        print(f"    {name}: {result['pages']} pages, {result['rate']:.1f} pages/s", flush=True)

    try:
        site.delay = 0.0
        wget = crawl_with_wget(ctx, site, depth, "p11-wget")
        wget_paths = wget.pop("paths")
        print(f"    wget (no delay): {wget['pages']} pages, {wget['rate']:.1f} pages/s")
        for n in range(reps):
            keep("quaero", crawl_with_quaero(ctx, site, depth, workers, f"p11-quaero-{n}"))
            keep("scrapy", crawl_with_scrapy(ctx, site, depth, workers))
        site.delay = delay
        for n in range(reps):
            keep("wget_delay", crawl_with_wget(ctx, site, depth, f"p11-wget-delay-{n}"))
            keep(
                "quaero_delay",
                crawl_with_quaero(ctx, site, depth, workers, f"p11-quaero-delay-{n}"),
            )
    finally:
        site.stop()
    rate = {name: median(r["rate"] for r in results) for name, results in runs.items()}
    ctx.record("P11.quaero_rate", round(rate["quaero"], 1))
    ctx.record("P11.scrapy_rate", round(rate["scrapy"], 1))
    ctx.record("P11.scrapy_ratio", round(rate["quaero"] / rate["scrapy"], 2))
    ctx.record("P11.quaero_delay_rate", round(rate["quaero_delay"], 1))
    ctx.record("P11.wget_delay_rate", round(rate["wget_delay"], 1))
    ctx.record("P11.wget_ratio", round(rate["quaero_delay"] / rate["wget_delay"], 2))
    all_sets = {*sets.values(), frozenset(wget_paths)}
    ctx.record("P11.same_pages", all_sets == {frozenset(expected)})
    ctx.detail(
        "P11",
        site=shape,
        depth=depth,
        workers=workers,
        delay_seconds=delay,
        wget_no_delay=wget,
        runs=runs,
        medians=rate,
        page_sets_equal=len(all_sets) == 1,
        matches_graph={name: paths == expected for name, paths in sets.items()},
        missing_from={name: sorted(expected - paths)[:10] for name, paths in sets.items()},
        extra_in={name: sorted(paths - expected)[:10] for name, paths in sets.items()},
    )
