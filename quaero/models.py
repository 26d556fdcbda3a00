"""peewee models of the metadata store: `jobs`, `job_logs`, `workers` and `sessions`.

The schema itself lives in `migrations/`; these models only map it. Nothing here knows
Flask or Huey.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

import peewee

from quaero.db import database_proxy


class JobStatus(enum.StrEnum):
    """A job's status; the last three are final."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True for completed, failed and cancelled."""
        return self in FINAL_STATUSES


STATUSES = [s.value for s in JobStatus]
FINAL_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


def literal(status: str) -> peewee.SQL:
    """A status as SQL text ('running'), not a bound parameter, for the partial indexes
    on a status (migrations/017): PostgreSQL's generic plan of a prepared statement
    (psycopg prepares one run 5 times) cannot use them for `status = $1`; SQLite plans
    with the bound value either way."""
    if status not in STATUSES:
        raise ValueError(f"not a job status: {status!r}")
    return peewee.SQL(f"'{status}'")


UNFINISHED = (JobStatus.PENDING.value, JobStatus.RUNNING.value)
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_ID = 2**63 - 1  # ids and offsets are 64-bit integers in SQLite and PostgreSQL
#: Tables of per-tree executor state (`root_id` column), deleted with their tree.
TREE_STATE_TABLES = ("crawl_pages", "crawl_hosts")


@dataclass(frozen=True)
class ChildSpec:
    """A child job to create: its type, payload and optional de-duplication key.

    Within one tree (one root), two children with the same `dedup_key` are never both
    created: the database enforces it with a unique index. A spec without one gets a key
    from its parent and its position among the parent's spawns (`#<parent id>.<n>`), so
    a new attempt of the parent creates only the children that are missing.
    """

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    dedup_key: str | None = None
    priority: int | None = None
    max_attempts: int | None = None


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy


class Job(BaseModel):
    """One job: a node of a tree whose root is the job a user submitted."""

    id = peewee.AutoField()
    parent_id = peewee.BigIntegerField(null=True)
    root_id = peewee.BigIntegerField()
    path = peewee.TextField()
    depth = peewee.IntegerField(default=0)
    type = peewee.TextField()
    name = peewee.TextField(default="")
    status = peewee.TextField()
    outcome = peewee.TextField(null=True)
    paused = peewee.BooleanField(default=False)
    payload = peewee.TextField(default="{}")
    result = peewee.TextField(null=True)
    error = peewee.TextField(null=True)
    traceback = peewee.TextField(null=True)
    error_group = peewee.TextField(null=True)  # quaero.triage.group_key of a final failure
    dedup_key = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField(default=3)
    priority = peewee.IntegerField(default=0)
    timeout = peewee.DoubleField(null=True)
    progress = peewee.DoubleField(default=0.0)
    n_open = peewee.IntegerField(default=0)  # descendants pending or running
    n_completed = peewee.IntegerField(default=0)
    n_failed = peewee.IntegerField(default=0)
    n_cancelled = peewee.IntegerField(default=0)
    created_at = peewee.DoubleField()
    updated_at = peewee.DoubleField()
    run_after = peewee.DoubleField(null=True)
    started_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)
    worker_id = peewee.TextField(null=True)
    lease_expires_at = peewee.DoubleField(null=True)
    lease_epoch = peewee.IntegerField(default=0)  # bumped by every claim: fences stale attempts
    on_child_failure = peewee.TextField(default="ignore")  # or "fail" (quaero.policies)
    waiting_reason = peewee.TextField(null=True)  # why a pending job waits (quaero.limits)

    class Meta:
        table_name = "jobs"

    @classmethod
    def from_row(cls, names: list[str], row: tuple) -> Job:
        """A job built from a row read as it is, in one step (peewee's per-column
        conversions and attribute sets cost more than reading the row): columns of
        `jobs` as its fields, any other (`summary_url`, ...) as an attribute."""
        job = cls(__no_default__=True)
        fields = cls._meta.fields
        for name, value in zip(names, row, strict=True):
            if name in fields:
                job.__data__[name] = value
            else:
                job.__dict__[name] = value
        return job

    @property
    def payload_data(self) -> dict[str, Any]:
        """The payload, decoded (cached on the instance)."""
        cached = self.__dict__.get("_payload_cache")
        if cached is None:
            cached = json.loads(self.payload or "{}")
            self.__dict__["_payload_cache"] = cached
        return cached

    @property
    def result_data(self) -> Any:
        """The result, decoded (None when there is none)."""
        return json.loads(self.result) if self.result is not None else None

    @property
    def running_descendants(self) -> int:
        """Descendants running now: attached by a listing, else read with one query."""
        running = self.__dict__.get("_running")
        if running is None:
            running = (
                Job.select()
                .where(
                    Job.root_id == self.root_id,
                    Job.status == literal(JobStatus.RUNNING),
                    Job.path.startswith(self.descendant_prefix),
                )
                .count()
            )
            self.__dict__["_running"] = running
        return running

    @property
    def counts(self) -> dict[str, int]:
        """Descendants by status, plus their total."""
        running = min(self.running_descendants, self.n_open)
        counts = {
            JobStatus.PENDING: self.n_open - running,
            JobStatus.RUNNING: running,
            JobStatus.COMPLETED: self.n_completed,
            JobStatus.FAILED: self.n_failed,
            JobStatus.CANCELLED: self.n_cancelled,
        }
        counts["total"] = self.n_open + self.n_completed + self.n_failed + self.n_cancelled
        return counts

    @property
    def ancestor_ids(self) -> list[int]:
        """Ids of the ancestors, root first."""
        return [int(part) for part in self.path.strip("/").split("/") if part]

    @property
    def descendant_prefix(self) -> str:
        """The `path` prefix shared by every descendant."""
        return f"{self.path}{self.id}/"

    @property
    def total_progress(self) -> float:
        """Share of finished descendants; for a job without any, its own progress (1 once
        it completed: a failed or cancelled leaf shows how far it got, not a full bar)."""
        finished = self.n_completed + self.n_failed + self.n_cancelled
        if finished + self.n_open:
            return finished / (finished + self.n_open)
        if self.status == JobStatus.COMPLETED:
            return 1.0
        return max(0.0, min(1.0, self.progress))


class JobLog(BaseModel):
    """One line of a job's log."""

    id = peewee.AutoField()
    job_id = peewee.BigIntegerField()
    level = peewee.TextField()
    message = peewee.TextField()
    created_at = peewee.DoubleField()

    class Meta:
        table_name = "job_logs"


class Worker(BaseModel):
    """A worker process that heartbeats while it runs jobs."""

    id = peewee.TextField(primary_key=True)
    hostname = peewee.TextField()
    pid = peewee.IntegerField()
    threads = peewee.IntegerField()
    started_at = peewee.DoubleField()
    last_heartbeat = peewee.DoubleField()
    jobs_done = peewee.IntegerField(default=0)
    stopped_at = peewee.DoubleField(null=True)
    #: seconds this worker's host clock is ahead of the database's (see quaero.clock)
    clock_skew = peewee.DoubleField(null=True)
    #: the ids of the jobs it executed at its last heartbeat, comma-separated
    executing = peewee.TextField(null=True)

    class Meta:
        table_name = "workers"


class Session(BaseModel):
    """A page sign-in: the hash of the id its cookie carries, until it expires."""

    id = peewee.TextField(primary_key=True)
    created_at = peewee.DoubleField()
    expires_at = peewee.DoubleField()

    class Meta:
        table_name = "sessions"
