"""The one JSON shape of each resource, used by the API, the page and the CLI."""

from __future__ import annotations

import datetime as dt
from typing import Any

from quaero import clock
from quaero.models import Job, JobLog


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds, or None."""
    if ts is None:
        return None
    return (
        dt.datetime.fromtimestamp(ts, tz=dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def job_to_dict(job: Job) -> dict[str, Any]:
    """A job as the API and the page show it: every field."""
    data = _job_fields(job)
    data["payload"] = job.payload_data
    data["result"] = job.result_data
    data["traceback"] = job.traceback
    return data


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def job_summary_to_dict(job: Job) -> dict[str, Any]:
    """A job as listings show it (from `queries.list_jobs`): no payload, result or
    traceback, but `summary` with the payload's `url` and the result's `title`, cut short."""
    data = _job_fields(job)
    data["summary"] = {
        "url": _text(getattr(job, "summary_url", None)),
        "title": _text(getattr(job, "summary_title", None)),
    }
    return data


def _job_fields(job: Job) -> dict[str, Any]:
    """The fields a job's details and its listing share."""
    end = job.finished_at
    duration = None
    if job.started_at is not None:
        duration = round((end if end is not None else clock.now()) - job.started_at, 3)
    return {
        "id": job.id,
        "parent_id": job.parent_id,
        "root_id": job.root_id,
        "depth": job.depth,
        "type": job.type,
        "name": job.name,
        "status": job.status,
        "paused": bool(job.paused),
        "error": job.error,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "timeout": job.timeout,
        "run_after": iso(job.run_after) if job.status == "pending" else None,
        "waiting_reason": job.waiting_reason if job.status == "pending" else None,
        "on_child_failure": job.on_child_failure,
        "progress": round(job.total_progress, 4),
        "own_progress": round(job.progress, 4),
        "counts": job.counts,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "duration": duration,
        "worker_id": job.worker_id,
        "lease_expires_at": iso(job.lease_expires_at),
        "error_group": job.error_group,
    }


def log_to_dict(line: JobLog) -> dict[str, Any]:
    """A log line as the API shows it."""
    return {
        "id": line.id,
        "job_id": line.job_id,
        "level": line.level,
        "message": line.message,
        "created_at": iso(line.created_at),
    }
