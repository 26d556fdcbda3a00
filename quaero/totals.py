"""Monotonic totals of finished jobs (`job_totals`), the source of /metrics' counters
and duration histogram.

The JobManager adds to them in the same transaction that finishes jobs, so they count
every finish exactly once, whichever process (or machine) finished it; deleting jobs
never lowers them. A row per (type, status, histogram bucket, shard): one upsert per
finish, and a scrape reads a few dozen rows however many jobs were ever run. The shard
is the writing thread's (its system-wide id), so concurrent finishes seldom wait for
one another's row; rows are upserted in key order, so they never deadlock.
"""

from __future__ import annotations

import bisect
import functools
import threading
from collections.abc import Iterable

import peewee

#: Upper bounds (seconds) of the run-time histogram's buckets, then +Inf.
BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
INF = "+Inf"
NEVER_RAN = ""  # a job cancelled while pending: counted, not in the histogram
SHARDS = 16

UPSERT_SQL = (
    "INSERT INTO job_totals (type, status, bucket, shard, jobs, seconds) VALUES {values}"
    " ON CONFLICT (type, status, bucket, shard) DO UPDATE SET"
    " jobs = job_totals.jobs + excluded.jobs, seconds = job_totals.seconds + excluded.seconds"
)


def bucket_of(seconds: float | None) -> str:
    """The label of the smallest bucket that holds `seconds` (NEVER_RAN for None)."""
    if seconds is None:
        return NEVER_RAN
    index = bisect.bisect_left(BUCKETS, seconds)
    return INF if index == len(BUCKETS) else repr(BUCKETS[index])


def record_finished(
    db: peewee.Database, finishes: Iterable[tuple[str, str, float | None, float]]
) -> None:
    """Add finished jobs, given as (type, status, started_at or None, finished_at), to
    the totals; call inside the transaction that finishes them, after its writes to
    `jobs` (the lock order of quaero.store's writers)."""
    statement = upsert(db, finishes)
    if statement is not None:
        db.execute_sql(*statement)


def upsert(
    db: peewee.Database, finishes: Iterable[tuple[str, str, float | None, float]]
) -> tuple[str, list] | None:
    """The statement (SQL, positional parameters) that `record_finished` runs; None
    when there is nothing to add."""
    rows: dict[tuple[str, str, str], list] = {}  # key -> [jobs, seconds]
    for type_, status, started_at, finished_at in finishes:
        ran = None if started_at is None else max(0.0, finished_at - started_at)
        key = (type_, status, bucket_of(ran))
        row = rows.get(key)
        if row is None:
            rows[key] = [1, ran or 0.0]
        else:
            row[0] += 1
            row[1] += ran or 0.0
    if not rows:
        return None
    shard = threading.get_native_id() % SHARDS
    params = [v for key, (n, sec) in sorted(rows.items()) for v in (*key, shard, n, sec)]
    return upsert_sql(len(rows), db.param), params


@functools.lru_cache(maxsize=64)
def upsert_sql(rows: int, param: str) -> str:
    """UPSERT_SQL for `rows` rows of values (one finish is one row: the hot path)."""
    p = param
    return UPSERT_SQL.format(values=", ".join([f"({p}, {p}, {p}, {p}, {p}, {p})"] * rows))


def read_totals(db: peewee.Database) -> list[tuple[str, str, str, int, float]]:
    """(type, status, bucket, jobs, seconds) summed over shards."""
    sql = (
        "SELECT type, status, bucket, SUM(jobs), SUM(seconds) FROM job_totals"
        " GROUP BY type, status, bucket"
    )
    return [(t, s, b, int(n), float(sec)) for t, s, b, n, sec in db.execute_sql(sql).fetchall()]
