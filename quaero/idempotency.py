"""`Idempotency-Key` on `POST /api/jobs`: the same key within 24 hours gives the same job.

The key is recorded in `idempotency_keys` inside the transaction that creates the job, so
two requests with one key, even at the same moment on two web processes, create one job:
the second one's insert meets the first one's key (PostgreSQL waits for it to commit),
rolls its own job back and answers with the first one's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import peewee

from quaero import clock
from quaero.errors import Conflict, QuaeroError, ValidationFailed
from quaero.models import Job

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 200
KEY_TTL_SECONDS = 86_400.0

RECORD_SQL = (
    "INSERT INTO idempotency_keys (key, fingerprint, job_id, created_at)"
    " VALUES ({p}, {p}, {p}, {p})"
    " ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,"
    " job_id = excluded.job_id, created_at = excluded.created_at"
    " WHERE idempotency_keys.created_at < {p} RETURNING key"
)


class KeyReused(QuaeroError):
    """The key was used for a different request body (IETF idempotency-key draft: 422)."""

    status = 422
    code = "idempotency_key_reused"


class _KeyTaken(Exception):
    """Raised inside the creating transaction to roll it back: the key is already used."""


def parse_key(raw: str | None) -> str | None:
    """The header's value, or None when absent; a 400 naming the header when invalid."""
    if raw is None:
        return None
    problem = None
    if not raw:
        problem = "must not be empty"
    elif len(raw) > MAX_KEY_CHARS:
        problem = f"at most {MAX_KEY_CHARS} characters"
    elif not all(" " <= ch <= "~" for ch in raw):
        problem = "printable ASCII characters only"
    if problem:
        raise ValidationFailed(f"{HEADER} header: {problem}", {HEADER: problem})
    return raw


def fingerprint(body: dict[str, Any]) -> str:
    """A digest of the validated request, to tell a retry from a reuse of the key."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_once(
    db: peewee.Database,
    key: str,
    digest: str,
    create: Callable[[Callable[[Job], None]], Job],
) -> tuple[Job, bool]:
    """The job of `key`: (the existing job, False), or (a new one from `create`, True).

    `create(hook)` must call `hook(job)` inside the transaction that inserts the job.
    """
    existing = _existing_job(db, key, digest)
    if existing is not None:
        return existing, False
    record_sql = RECORD_SQL.format(p=db.param)

    def record(job: Job) -> None:
        now = clock.now()
        cutoff = now - KEY_TTL_SECONDS
        row = db.execute_sql(record_sql, (key, digest, job.id, now, cutoff)).fetchone()
        if row is None:
            raise _KeyTaken(key)
        db.execute_sql(
            f"DELETE FROM idempotency_keys WHERE created_at < {db.param}", (cutoff,)
        )  # forget expired keys as new ones come

    try:
        return create(record), True
    except _KeyTaken:
        existing = _existing_job(db, key, digest)
        if existing is None:  # expired or deleted in between: vanishingly rare
            raise Conflict(f"{HEADER} {key!r} is in use; retry the request") from None
        return existing, False


def _existing_job(db: peewee.Database, key: str, digest: str) -> Job | None:
    cutoff = clock.now() - KEY_TTL_SECONDS
    row = db.execute_sql(
        "SELECT job_id, fingerprint FROM idempotency_keys"
        f" WHERE key = {db.param} AND created_at >= {db.param}",
        (key, cutoff),
    ).fetchone()
    if row is None:
        return None
    job_id, stored = row
    if stored != digest:
        raise KeyReused(
            f"{HEADER} {key!r} was used for a different request; use a new key",
            {HEADER: "used for a different request"},
        )
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        raise Conflict(f"job {job_id}, created with {HEADER} {key!r}, was deleted")
    return job
