"""pydantic models of the JSON the API answers with: the OpenAPI document's response
schemas are generated from them (quaero/web/openapi.py), and the tests validate real
answers against them. The request bodies have their models where they are validated:
`quaero.validation.CreateJob` and `quaero.bulk.BulkRequest`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from quaero.models import LOG_LEVELS, STATUSES
from quaero.policies import POLICIES

Status = Literal[tuple(STATUSES)]  # type: ignore[valid-type]
Policy = Literal[POLICIES]  # type: ignore[valid-type]
Stamp = dt.datetime | None  # ISO 8601 UTC (quaero.serialize.iso), or null


class Answer(BaseModel):
    """A response body: only what the API sends is declared; more keys may come."""

    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    """The one error shape of every 4xx and 5xx answer."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(examples=["validation_error"])
    message: str
    fields: dict[str, str] = Field(
        None, description="each bad field (dotted, e.g. payload.url) → why"
    )


class Error(BaseModel):
    """`{"error": {"code", "message", "fields"?}}`."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


Counts = create_model(
    "Counts",
    __base__=Answer,
    __doc__="Descendants by status, plus their total.",
    **{name: (int, ...) for name in (*STATUSES, "total")},  # type: ignore[call-overload]
)


class JobFields(Answer):
    """The fields of a job that its details and a listing share (quaero.serialize)."""

    id: int
    parent_id: int | None
    root_id: int
    depth: int
    type: str
    name: str
    status: Status
    paused: bool
    error: str | None
    attempts: int
    max_attempts: int
    priority: int
    timeout: float | None
    progress: float = Field(ge=0, le=1)
    own_progress: float = Field(ge=0, le=1)
    counts: Counts  # type: ignore[valid-type]
    created_at: dt.datetime
    started_at: Stamp
    finished_at: Stamp
    duration: float | None
    worker_id: str | None
    lease_expires_at: Stamp
    error_group: str | None = Field(
        description="the cause of a final failure (GET /api/jobs/{job_id}/failures)"
    )
    run_after: Stamp = Field(
        description="a pending job starts no earlier (run_at, delay, a retry's back-off, "
        "a type's limit)"
    )
    waiting_reason: str | None = Field(
        description="why a pending job waits: its type's [types.<name>] max_running or rate"
    )
    on_child_failure: Policy = Field(
        description="ignore: the job completes and counts failed descendants; fail: it "
        "fails once a descendant failed for good, and its unfinished descendants are cancelled"
    )


class Job(JobFields):
    """A job with everything: its payload, result and traceback."""

    payload: dict[str, Any]
    result: Any = Field(json_schema_extra={"nullable": True})
    traceback: str | None


class Summary(Answer):
    """A listed job's payload URL and result title, cut short."""

    url: str | None = Field(description="payload.url, 200 characters at most")
    title: str | None = Field(description="result.title, 200 at most")


class JobSummary(JobFields):
    """A job in a listing: no payload, result or traceback (its details have them), the
    error cut to 1000 characters, and a summary."""

    summary: Summary


class JobList(Answer):
    """A page of jobs and how many there are in all."""

    jobs: list[JobSummary]
    total: int
    limit: int
    offset: int


class LogLine(Answer):
    """One line of a job's log."""

    id: int
    job_id: int
    level: Literal[LOG_LEVELS]  # type: ignore[valid-type]
    message: str
    created_at: dt.datetime


class LogLines(Answer):
    """Log lines, oldest first."""

    logs: list[LogLine]


class Worker(Answer):
    """A live worker process."""

    id: str
    hostname: str
    pid: int
    threads: int
    running: int
    running_jobs: list[int] = Field(description="ids of the jobs it runs (the oldest 200 in all)")
    jobs_done: int
    started_at: float
    last_heartbeat: float
    clock_skew: float | None = Field(None, description="its clock minus the database's, s")


class Stats(Answer):
    """Counts by status, queue depth, live workers."""

    counts: dict[str, int] = Field(description="every job by status")
    root_counts: dict[str, int] = Field(
        None, description="root jobs by status: what GET /api/jobs?status= lists"
    )
    roots_with_failures: int = Field(
        None, description="roots with failed descendants: what has_failures=true lists"
    )
    queue_depth: int
    scheduled: int = None  # type: ignore[assignment]
    oldest_pending_age: float | None = None
    workers_alive: int
    workers: list[Worker] = Field(None, description="live workers (a heartbeat in the last 60 s)")


class FailureGroup(Answer):
    """Failed jobs with one cause."""

    key: str = Field(description="error_group= of listings")
    message: str = Field(
        description="the error with numbers, URLs, ids, quoted values and addresses "
        "replaced by <n>, <url>, <id>, <str>, <addr>"
    )
    count: int
    example_job_id: int
    first_at: Stamp
    last_at: Stamp


class FailureGroups(Answer):
    """Failure groups."""

    groups: list[FailureGroup] = Field(
        description="newest group (latest failure) first, 200 groups at most"
    )


class BulkResult(Answer):
    """What a bulk action matched, touched, did and skipped."""

    action: str
    matched: int = Field(description="roots (or trees) the filter matched")
    jobs: int = Field(
        description="jobs the action touches (an estimate from the trees' counters when dry_run)"
    )
    done: int = Field(None, description="trees acted on")
    skipped: int = Field(None, description="trees in the wrong state for it")
    job_id: int = Field(None, description="202: the bulk job doing it")
    dry_run: bool = None  # type: ignore[assignment]


class Schedule(Answer):
    """A `[[schedules]]` table with its next run and the last root it made."""

    name: str
    cron: str = Field(description="five-field cron expression, or @every <n>s (every = ...)")
    type: str
    next_run_at: dt.datetime
    last_root_id: int | None


class Schedules(Answer):
    """The schedules of config.toml."""

    schedules: list[Schedule]


class Deleted(Answer):
    """How many jobs a delete removed."""

    deleted: int


class Types(Answer):
    """The job types that can be submitted."""

    types: list[str]


class Health(Answer):
    """Each check's verdict."""

    status: Literal["ok", "error"]
    checks: dict[str, str]


#: Every component of the document's `components.schemas` that a model describes.
RESPONSES: tuple[type[BaseModel], ...] = (
    Error,
    Job,
    JobSummary,
    JobList,
    LogLines,
    Stats,
    FailureGroups,
    BulkResult,
    Schedules,
    Deleted,
    Types,
    Health,
)
