"""The crawl-wide state of the crawler, in the metadata database (`crawl_pages`,
`crawl_hosts`), so that every worker of every process agrees on it.

Depth: a page's depth is its shortest link distance from the start page. Pages are
fetched in whatever order the workers take them, so a page may first be found through
a long path and later through a shorter one. Each row holds a page's best known depth,
its followable links once fetched, and the depth they were followed from. Every change
is one atomic statement on the row, so whichever of "the page stores its links" and
"another page finds it nearer" comes second sees the other: the page expands itself at
the depth it reads back, and a finder that lowers the depth of an already-fetched page
claims (`expanded > depth`) and follows its stored links again, once per improvement.
The page itself is never fetched again: its job is de-duplicated by URL in `jobs`.

Fencing: these functions run inside a transaction the caller opens through its job's
context (`JobContext.spawn(prepare=…)`, `JobContext.write`), which first proves that the
attempt still holds the job; their `transaction` argument then just calls the write.

Politeness: `crawl_hosts` holds, per crawl and host, the last request slot taken; one
upsert takes the next slot `delay` seconds later, so concurrent workers queue up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import peewee

T = TypeVar("T")
Transaction = Callable[[Callable[[], T]], T]
CHUNK = 400
#: Added to the spacing of a host's slots: a request leaves a few ms after its slot
#: (waking up, connecting), and those ms differ between requests; without it two
#: requests could arrive a little under `delay` apart.
SLOT_MARGIN = 0.025

RECORD_SQL = (
    "INSERT INTO crawl_pages (root_id, url, depth, links, expanded)"
    " VALUES ({p}, {p}, {p}, {p}, {p})"
    " ON CONFLICT (root_id, url) DO UPDATE SET links = excluded.links,"
    " expanded = crawl_pages.depth RETURNING depth"
)
IMPROVE_SQL = (
    "INSERT INTO crawl_pages (root_id, url, depth) VALUES {values}"
    " ON CONFLICT (root_id, url) DO UPDATE SET depth = excluded.depth"
    " WHERE crawl_pages.depth > excluded.depth"
)
CLAIM_SQL = (
    "UPDATE crawl_pages SET expanded = depth, expanded_by = {p}"
    " WHERE root_id = {p} AND url IN ({urls}) AND links IS NOT NULL"
    " AND (expanded > depth OR (expanded = depth AND expanded_by = {p}))"
    " RETURNING url, depth, links"
)
SLOT_SQL = (
    "INSERT INTO crawl_hosts (root_id, host, slot_at) VALUES ({p}, {p}, {p})"
    " ON CONFLICT (root_id, host) DO UPDATE SET slot_at = CASE"
    " WHEN crawl_hosts.slot_at + {p} > excluded.slot_at THEN crawl_hosts.slot_at + {p}"
    " ELSE excluded.slot_at END RETURNING slot_at"
)


def record_fetched(
    db: peewee.Database, transaction: Transaction, root_id: int, url: str, depth: int,
    links: list[str],
) -> int:  # fmt: skip
    """Store a fetched page's followable links and claim their expansion; returns the
    page's best known depth (≤ `depth`, the one it was spawned with)."""
    sql = RECORD_SQL.format(p=db.param)
    params = (root_id, url, depth, json.dumps(links), depth)
    return int(transaction(lambda: db.execute_sql(sql, params).fetchone()[0]))


def found_at(
    db: peewee.Database,
    transaction: Transaction,
    root_id: int,
    urls: list[str],
    depth: int,
    finder: int,
) -> list[tuple[str, int, list[str]]]:
    """Record that `urls` are `depth` links from the start page (a row is only ever
    lowered); returns the already-fetched ones whose depth this lowered, as (url, new
    depth, stored links), each claimed by job `finder` alone for re-expansion. A new
    attempt of the same finder gets its claims back: the claim may have committed
    while the spawns that follow it were lost, and spawning them again is harmless."""
    p = db.param
    claimed: list[tuple[str, int, list[str]]] = []
    for start in range(0, len(urls), CHUNK):
        chunk = urls[start : start + CHUNK]
        values = ", ".join([f"({p}, {p}, {p})"] * len(chunk))
        improve = IMPROVE_SQL.format(values=values)
        claim = CLAIM_SQL.format(p=p, urls=", ".join([p] * len(chunk)))

        def write(chunk: list[str] = chunk, improve: str = improve, claim: str = claim) -> list:
            db.execute_sql(improve, [v for url in chunk for v in (root_id, url, depth)])
            return db.execute_sql(claim, [finder, root_id, *chunk, finder]).fetchall()

        for url, best, links in transaction(write):
            claimed.append((url, int(best), json.loads(links)))
    return claimed


def take_host_slot(
    db: peewee.Database,
    transaction: Transaction,
    root_id: int,
    host: str,
    delay: float,
    now: float,
) -> float:
    """Reserve the next request slot for `host` in this crawl: `now` (the database's
    clock, which every worker shares), or `delay` seconds after the last slot taken by
    any worker; returns its time (epoch seconds)."""
    sql = SLOT_SQL.format(p=db.param)
    delay += SLOT_MARGIN
    return float(
        transaction(lambda: db.execute_sql(sql, (root_id, host, now, delay, delay)).fetchone()[0])
    )
