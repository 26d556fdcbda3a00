"""P4: a crawl of a generated local site against `wget -r -l 2` on the same site.

The site (bench/site.py) answers every request after `p4_delay` seconds. quaero runs as
`run.py serve` with `p4_workers` thread workers and `[crawler] allow_private_networks =
true` (robots.txt respected, the default), and a `crawler` job to `p4_depth` is POSTed;
its pages/s is the pages the site served (robots.txt aside) over the time from the POST
to the root's `finished_at`. wget (Debian's) runs `wget -r -l <depth> -nd --delete-after`
on the same site; its pages/s is the pages served over its run time. The page sets are
the paths each one requested, robots.txt aside, compared with each other and with what
the graph says a depth-limited crawl must fetch.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import requests

from bench.common import BenchError, Quaero, parse_iso, sqlite_config, submit, wait_finished
from bench.harness import Context
from bench.site import make_site


def fetched_paths(site) -> set[str]:
    """Paths the site served so far, robots.txt aside."""
    with site._lock:
        return {path for path in site.hits if path != "/robots.txt"}


def duplicate_fetches(site) -> int:
    """Requests beyond the first for any path (robots.txt aside)."""
    with site._lock:
        return sum(n - 1 for path, n in site.hits.items() if path != "/robots.txt")


def crawl_with_quaero(
    ctx: Context, site, depth: int, workers: int, folder_name: str = "p4-quaero"
) -> dict:
    """One quaero crawl of `site`; the pages it fetched and how fast."""
    folder = ctx.folder(folder_name)
    config = sqlite_config(
        folder,
        num_workers=workers,
        crawler={"allow_private_networks": True, "max_pages": 100_000},
    )
    server = Quaero(ctx.procs, "serve", config)
    try:
        base = server.wait_ready()
        site.reset_hits()
        session = requests.Session()
        body = {
            "type": "crawler",
            "payload": {"url": site.url("/"), "depth": depth, "max_pages": 100_000},
        }
        job, sent = submit(session, base, body)
        done = wait_finished(session, base, job["id"], timeout=600, alive=server.proc)
        seconds = parse_iso(done["finished_at"]) - sent
        pages = fetched_paths(site)
        return {
            "status": done["status"],
            "counts": done["counts"],
            "pages": len(pages),
            "duplicate_fetches": duplicate_fetches(site),
            "seconds": round(seconds, 3),
            "rate": round(len(pages) / seconds, 2),
            "paths": pages,
        }
    finally:
        server.stop()


def crawl_with_wget(ctx: Context, site, depth: int, folder_name: str = "p4-wget") -> dict:
    """One `wget -r -l depth` of `site`; the pages it fetched and how fast."""
    wget = shutil.which("wget")
    if wget is None:
        raise BenchError("wget is not installed (`make bench` installs Debian's wget)")
    folder = ctx.folder(folder_name)
    site.reset_hits()
    cmd = [
        wget,
        "-r",
        "-l",
        str(depth),
        "-nd",
        "--delete-after",
        "-q",
        "-P",
        str(folder),
        site.url("/"),
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    # wget exits 8 when some response was an error (the site's deliberate 404)
    if proc.returncode not in (0, 8):
        raise BenchError(f"wget exited with {proc.returncode}: {proc.stderr[-500:]}")
    pages = fetched_paths(site)
    return {
        "pages": len(pages),
        "duplicate_fetches": duplicate_fetches(site),
        "seconds": round(seconds, 3),
        "rate": round(len(pages) / seconds, 2),
        "exit_code": proc.returncode,
        "paths": pages,
    }


def run(ctx: Context) -> None:
    """P4."""
    s = ctx.sizes
    depth = s["p4_depth"]
    site = make_site(s["p4_branching"], s["p4_delay"]).start()
    try:
        expected = site.expected_paths(depth)
        print(
            f"  site: {len(expected)} pages within depth {depth}, "
            f"{s['p4_delay'] * 1000:.0f} ms per response",
            flush=True,
        )
        quaero = crawl_with_quaero(ctx, site, depth, s["p4_workers"])
        print(f"    quaero: {quaero['pages']} pages, {quaero['rate']:.1f} pages/s", flush=True)
        ctx.record("P4.quaero_rate", round(quaero["rate"], 1))
        wget = crawl_with_wget(ctx, site, depth)
        print(f"    wget: {wget['pages']} pages, {wget['rate']:.1f} pages/s", flush=True)
    finally:
        site.stop()
    ctx.record("P4.wget_rate", round(wget["rate"], 1))
    ctx.record("P4.ratio", round(quaero["rate"] / wget["rate"], 2))
    q_paths, w_paths = quaero.pop("paths"), wget.pop("paths")
    ctx.record("P4.same_pages", q_paths == w_paths)
    ctx.detail(
        "P4",
        site_pages_within_depth=len(expected),
        depth=depth,
        delay_seconds=s["p4_delay"],
        workers=s["p4_workers"],
        quaero=quaero,
        wget=wget,
        only_quaero=sorted(q_paths - w_paths)[:20],
        only_wget=sorted(w_paths - q_paths)[:20],
        quaero_matches_graph=q_paths == expected,
        wget_matches_graph=w_paths == expected,
    )
