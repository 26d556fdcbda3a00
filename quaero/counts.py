"""Jobs stored by type and status, kept without counting the jobs table.

`job_totals` (quaero/totals.py) already records every move of a job from pending or
running to a final status, as the job finishes. `job_counts` is the ledger of every
other move, all off the hot path: jobs created (+ open), retried (- their final status,
+ open) and deleted (- their status). So jobs stored = ledger + finishes, per type:
open = ledger open - every finish; a final status = ledger + its finishes. Running jobs
are counted on their index (few: the ones workers hold and parents waiting for
children); pending = open - running. A claim and a finish write nothing more than they
did; quaero.queries.stored_counts reads it all in one statement.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

import peewee

from quaero.models import JobStatus

OPEN = "open"  # pending or running
SHARDS = 16

UPSERT_SQL = (
    "INSERT INTO job_counts (type, state, shard, jobs) VALUES {values}"
    " ON CONFLICT (type, state, shard) DO UPDATE SET jobs = job_counts.jobs + excluded.jobs"
)
#: The ledger from scratch (as migrations/015 builds it): what is stored, less what
#: job_totals counts. For tools that insert jobs rows directly (bench seeds).
RECOUNT_SQL = """
INSERT INTO job_counts (type, state, shard, jobs)
SELECT type, state, 0, SUM(n) FROM (
    SELECT type, CASE WHEN status IN ('pending', 'running') THEN 'open' ELSE status END AS state,
        COUNT(*) AS n
    FROM jobs GROUP BY type, status
    UNION ALL SELECT type, 'open', SUM(jobs) FROM job_totals GROUP BY type
    UNION ALL SELECT type, status, -SUM(jobs) FROM job_totals GROUP BY type, status
) AS moves GROUP BY type, state
"""


def state_of(status: str) -> str:
    """The ledger's state of a job status: open for pending and running."""
    return OPEN if status in (JobStatus.PENDING, JobStatus.RUNNING) else str(status)


def record(db: peewee.Database, moves: Iterable[tuple[str, str, int]]) -> None:
    """Add (type, status, delta) moves to the ledger; call inside the transaction that
    creates, retries or deletes the jobs (never for a finish: job_totals has those)."""
    deltas: Counter[tuple[str, str]] = Counter()
    for type_, status, delta in moves:
        deltas[(type_, state_of(status))] += delta
    rows = sorted((key, n) for key, n in deltas.items() if n)  # one lock order: no deadlock
    if not rows:
        return
    shard = os.getpid() % SHARDS
    p = db.param
    values = ", ".join([f"({p}, {p}, {p}, {p})"] * len(rows))
    params = [v for (type_, state), n in rows for v in (type_, state, shard, n)]
    db.execute_sql(UPSERT_SQL.format(values=values), params)


def recount(db: peewee.Database) -> None:
    """Rebuild the ledger from the jobs table (after rows were inserted behind quaero's
    back, e.g. by a benchmark's seed)."""
    with db.atomic():
        db.execute_sql("DELETE FROM job_counts")
        db.execute_sql(RECOUNT_SQL)
