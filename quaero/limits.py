"""Per-type limits, `[types.<name>] max_running = N` and `rate = "M/s"` (or "M/min"),
held across every worker process by the metadata database.

A claim of a limited type, in the claim's own transaction, locks the type's row of
`type_limits` (an upsert: PostgreSQL's row lock; SQLite's BEGIN IMMEDIATE already
serialises writers), counts the type's running jobs and takes a token of the type's
bucket. Over a limit, the claim is rolled back (`OverLimit`), and the job waits as
pending with `waiting_reason` and `run_after` set, its message back on Huey's schedule
for a moment later: it never holds a worker thread while it waits, and other types go
on. A job of an unlimited type costs one dict lookup.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from quaero.config import TypeLimit
from quaero.models import Job

if TYPE_CHECKING:
    from quaero.store import Store

#: A job over its type's max_running looks again after this long (plus jitter up to as
#: much again, so that waiting jobs do not all come back at once).
RUNNING_RETRY_SECONDS = 0.2

LOCK_TYPE = """
INSERT INTO type_limits (type, tokens, refilled_at) VALUES (:type, :tokens, :now)
ON CONFLICT (type) DO UPDATE SET type = excluded.type
RETURNING tokens, refilled_at
"""
# Jobs of a type running their own work (a parent waiting for its children holds no
# worker); `jobs_status (status, type)` serves it.
COUNT_RUNNING = """
SELECT COUNT(*) FROM jobs
WHERE status = 'running' AND type = :type AND outcome IS NULL AND id <> :id
"""
TAKE_TOKEN = "UPDATE type_limits SET tokens = :tokens, refilled_at = :now WHERE type = :type"
WAIT = """
UPDATE jobs SET waiting_reason = :reason, run_after = :run_after, updated_at = :now
WHERE id = :id AND status = 'pending'
"""


class OverLimit(Exception):
    """A claim over its type's limit: rolls the claim back; the job waits."""

    def __init__(self, job: Job, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.job = job
        self.reason = reason
        self.delay = delay


class TypeLimits:
    """The `[types.<name>]` limits, checked in claims."""

    def __init__(self, store: Store, types: dict[str, TypeLimit]) -> None:
        self.store = store
        self.types = types
        self._lock_sql = store.sql(LOCK_TYPE)
        self._count_sql = store.sql(COUNT_RUNNING)
        self._take_sql = store.sql(TAKE_TOKEN)
        self._wait_sql = store.sql(WAIT)

    def check(self, job: Job, now: float) -> None:
        """In the claim's transaction, after the claim: raise OverLimit if this job may
        not start now; else take a token of its type's rate."""
        limit = self.types.get(job.type)
        if limit is None:
            return
        db = self.store.db
        name = job.type
        lock = {"type": name, "tokens": limit.burst, "now": now}
        tokens, refilled_at = db.execute_sql(self._lock_sql, lock).fetchone()
        if limit.max_running is not None:
            running = db.execute_sql(self._count_sql, {"type": name, "id": job.id}).fetchone()[0]
            if running >= limit.max_running:
                reason = f"max_running {limit.max_running} of type {name} reached ([types.{name}])"
                delay = RUNNING_RETRY_SECONDS * (1 + random.random())
                raise OverLimit(job, reason, delay)
        per_second = limit.per_second
        if per_second is not None:
            tokens = min(limit.burst, tokens + max(0.0, now - refilled_at) * per_second)
            if tokens < 1:
                reason = f"rate {limit.rate} of type {name} reached ([types.{name}])"
                raise OverLimit(job, reason, (1 - tokens) / per_second)
            db.execute_sql(self._take_sql, {"type": name, "tokens": tokens - 1, "now": now})

    def wait(self, over: OverLimit, now: float) -> None:
        """The job waits: pending with its reason, back on the queue after the delay."""
        job = over.job
        params = {
            "id": job.id,
            "reason": over.reason,
            "run_after": now + over.delay,
            "now": now,
        }
        self.store.transaction(lambda: self.store.db.execute_sql(self._wait_sql, params))
        self.store.enqueue_or_sweep([(job.id, job.priority)], over.delay)
